"""`make image-test`: build deploy/Dockerfile with podman and run the image for real.

1. podman (with buildah and runc) is installed if missing, and run with a containers.conf of
   this test's own (runc, ulimits within the host's).
2. The base: the official image by its pinned digest if it can be pulled, else a stand-in made
   from Debian packages (tests/image/base.py), said plainly here and in the summary.
3. The image is built from the repository root, in docker format (which keeps HEALTHCHECK).
4. It runs against the local stack on this host, with the host's network: health, readiness,
   the healthcheck command, the user, the read-only root, a drained demo workload, SIGTERM, and
   the spans it exports over OTLP to a collector on loopback (tests/image/container.py).
5. deploy/kubernetes/deployment.yaml runs with ``podman kube play``; its probes are checked
   (tests/image/kube.py).

Not part of ``make test``: it needs root, podman and a few minutes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from feedback_local.stack import LocalStack
from tests.image.base import resolve
from tests.image.container import run_container
from tests.image.kube import run_kube
from tests.image.podman import Podman, PodmanError
from tests.image.report import Report
from tests.support.otlp import otlp_collector
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
IMAGE = "localhost/cognito-feedback-worker:image-test"
BUILD_TIMEOUT_S = 1200.0
# This machine's CA bundle, lent to the build's RUN steps (pip) only: a host behind a TLS
# proxy needs it to reach PyPI. A bind mount over the base's own bundle leaves no trace in
# the image.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
MB = 1000 * 1000


def build(podman: Podman, build_arg: str, report: Report) -> None:
    argv = ["build", "--format", "docker", "--pull=never", "--file", str(DOCKERFILE)]
    argv += ["--build-arg", f"BASE_IMAGE={build_arg}", "--tag", IMAGE]
    if HOST_CA_BUNDLE.exists():
        argv += ["--volume", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"]
        report.note(f"the build's RUN steps see this host's CA bundle ({HOST_CA_BUNDLE}, not kept)")
    before = set(podman.run("images", "--quiet", "--no-trunc").stdout.split())
    previous = podman.run("image", "inspect", "--format", "{{.Id}}", IMAGE, check=False)
    started = time.monotonic()
    podman.run(*argv, str(ROOT), timeout=BUILD_TIMEOUT_S)
    _remove_leftovers(podman, before, f"sha256:{previous.stdout.strip()}")
    report.fact("build time", f"{time.monotonic() - started:.0f} s")
    size = int(podman.run("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout.strip())
    report.fact("image size", f"{size / MB:.0f} MB ({IMAGE}, uncompressed)")
    base_size = int(
        podman.run("image", "inspect", "--format", "{{.Size}}", build_arg).stdout.strip()
    )
    report.fact("of which the base", f"{base_size / MB:.0f} MB")


def _remove_leftovers(podman: Podman, before: set[str], previous: str) -> None:
    """Untagged images this build left: its build stage, and the test image it replaced."""
    dangling = set(
        podman.run("images", "--quiet", "--no-trunc", "--filter", "dangling=true").stdout.split()
    )
    for image in (dangling - before) | ({previous} & dangling):
        podman.run("rmi", image, check=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make image-test", description=__doc__)
    parser.add_argument("--messages", type=int, default=150, help="valid verdicts in the workload")
    parser.add_argument(
        "--no-stand-in",
        action="store_true",
        help="fail if the official base cannot be pulled instead of building a stand-in",
    )
    args = parser.parse_args(argv)
    report = Report()
    if os.geteuid() != 0:
        print("make image-test runs rootful podman: run it as root", file=sys.stderr)
        return 2
    try:
        with tempfile.TemporaryDirectory(prefix="image-test-") as tmp:
            workdir = Path(tmp)
            report.section("podman")
            podman = Podman.prepare(workdir)
            report.fact("podman", f"{podman.version()} (runtime runc, {podman.conf.name})")
            report.section("base image")
            base = resolve(podman, DOCKERFILE, allow_stand_in=not args.no_stand_in)
            report.note(base.note)
            report.fact("base image", "official, by digest" if base.official else "STAND-IN")
            report.section("build")
            build(podman, base.build_arg, report)
            with LocalStack() as stack, otlp_collector() as collector:
                report.section("container (host network, read-only, no capabilities)")
                run_container(
                    podman,
                    IMAGE,
                    stack,
                    collector,
                    report,
                    port=free_port(),
                    messages=args.messages,
                )
                report.section("Kubernetes Deployment (podman kube play)")
                run_kube(podman, IMAGE, stack, report, port=free_port(), workdir=workdir)
    except PodmanError as exc:
        report.check("podman", False, str(exc))
    if "base" in locals() and not base.official:
        print(f"\nNOTE: {base.note}")
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
