"""`make image-test`: build deploy/Dockerfile with podman and run the image for real."""
