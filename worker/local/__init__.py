"""Local stand-ins for AWS: moto's SQS server and a Cognito threat-protection emulator."""
