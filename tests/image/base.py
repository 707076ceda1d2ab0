"""The Dockerfile's base image: the pinned official one if it can be pulled, else a stand-in.

The official ``python:3.11.x-slim-bookworm`` image is pulled by the digest the Dockerfile pins.
Where Docker Hub cannot be reached, a stand-in is made from Debian bookworm's own packages with
debootstrap (Debian's python3.11, which is 3.11.2, not the official image's own build), tagged
with the Dockerfile's base name and tag, and labelled as a stand-in. podman cannot resolve the
pinned ``@sha256`` reference to a local image of another digest, so the build then names the
stand-in through the Dockerfile's BASE_IMAGE build argument. Every line of output says which.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.image.podman import Podman, PodmanError, apt_install

PULL_TIMEOUT_S = 60.0
DEBOOTSTRAP_TIMEOUT_S = 1200.0
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# What the Dockerfile relies on in its base: python (with venv and pip) on PATH, groupadd and
# useradd (passwd, in every Debian base), CA certificates for pip. debootstrap does not resolve
# virtual packages, so python3.11-venv's python3.11-distutils is named by its provider.
STANDIN_PACKAGES = ("python3.11", "python3.11-venv", "python3-distutils", "ca-certificates")
STANDIN_LABEL = "org.cognito-feedback.base-stand-in"
# Trimmed from the stand-in, as the official slim image leaves them out too.
TRIM = ("usr/share/doc", "usr/share/man", "usr/share/info", "var/cache/apt", "var/lib/apt/lists")
_ARG = re.compile(r"^ARG\s+BASE_IMAGE=(\S+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Base:
    """What the build's BASE_IMAGE argument names, and what it is."""

    pinned: str  # the Dockerfile's default: name:tag@sha256:digest
    build_arg: str  # what the build uses
    official: bool
    note: str

    @property
    def name_and_tag(self) -> str:
        return self.pinned.split("@", 1)[0]


def pinned_base(dockerfile: Path) -> str:
    match = _ARG.search(dockerfile.read_text())
    if match is None:
        raise PodmanError(f"{dockerfile} declares no ARG BASE_IMAGE=...")
    return match.group(1)


def qualified(reference: str) -> str:
    """docker.io/library/... for an official image's short name, as podman stores it."""
    first = reference.split("/", 1)[0]
    if "/" not in reference:
        return f"docker.io/library/{reference}"
    if "." not in first and ":" not in first and first != "localhost":
        return f"docker.io/{reference}"
    return reference


def resolve(podman: Podman, dockerfile: Path, *, allow_stand_in: bool = True) -> Base:
    pinned = pinned_base(dockerfile)
    reference = qualified(pinned)
    if podman.image_exists(reference):
        return Base(pinned, reference, True, f"official base {pinned} (already pulled)")
    pulled = podman.run("pull", "--quiet", reference, check=False, timeout=PULL_TIMEOUT_S)
    if pulled.returncode == 0:
        return Base(pinned, reference, True, f"official base {pinned} (pulled by digest)")
    if not allow_stand_in:
        raise PodmanError(f"cannot pull {reference}:\n{pulled.stderr[-1500:]}")
    reason = (pulled.stderr.strip().splitlines() or ["no answer"])[-1].removeprefix("Error: ")
    reason = re.sub(r"^initializing source \S+: ", "", reason)
    tag = qualified(pinned.split("@", 1)[0])
    if podman.image_exists(tag) and podman.label(tag, STANDIN_LABEL):
        made = "reused from an earlier run"
    else:
        build_stand_in(podman, tag)
        made = "built now"
    note = (
        f"STAND-IN BASE: the official {pinned.split('@', 1)[0]} could not be pulled "
        f"({reason[-200:]}); built from Debian {SUITE} packages with debootstrap ({made}) and "
        f"tagged {tag}. Its Python is Debian's ({podman.label(tag, STANDIN_LABEL)}), not the "
        "official image's own build. This run tests the Dockerfile, the worker and the "
        "deployment files, NOT the official base; the pinned digest was not verified."
    )
    return Base(pinned, tag, False, note)


def build_stand_in(podman: Podman, tag: str) -> None:
    if shutil.which("debootstrap") is None:
        apt_install(["debootstrap"])
    print(f"building a stand-in base with debootstrap ({SUITE}, {', '.join(STANDIN_PACKAGES)})...")
    with tempfile.TemporaryDirectory(prefix="image-test-rootfs-", dir="/var/tmp") as tmp:
        root = Path(tmp) / "rootfs"
        result = subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(STANDIN_PACKAGES)}",
                SUITE,
                str(root),
                MIRROR,
            ],
            capture_output=True,
            text=True,
            timeout=DEBOOTSTRAP_TIMEOUT_S,
            check=False,
        )
        if result.returncode != 0:
            raise PodmanError(f"debootstrap failed:\n{result.stdout[-2000:]}{result.stderr}")
        for relative in TRIM:
            shutil.rmtree(root / relative, ignore_errors=True)
        (root / "usr/local/bin/python").symlink_to("/usr/bin/python3.11")
        version = subprocess.run(
            [
                "chroot",
                str(root),
                "python",
                "-c",
                "import platform; print(platform.python_version())",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        tar = subprocess.run(
            ["tar", "--numeric-owner", "-C", str(root), "-c", "."],
            capture_output=True,
            check=True,
        ).stdout
    podman.run(
        "import",
        "--change",
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "--change",
        "ENV LANG=C.UTF-8",
        "--change",
        f"LABEL {STANDIN_LABEL}=debian-{SUITE}-python-{version}",
        "--change",
        'CMD ["python3"]',
        "-",
        tag,
        input_bytes=tar,
        timeout=600,
    )
