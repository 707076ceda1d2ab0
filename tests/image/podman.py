"""podman for the image test: installed if missing, configured for this machine, run quietly.

The configuration is a containers.conf of the test's own (``CONTAINERS_CONF``), so nothing in
/etc changes: runc as the runtime, and default ulimits (open files, processes) no higher than
the host's, since podman's defaults exceed what a container on this host may set.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("podman", "buildah", "runc")
APT_TIMEOUT_S = 900.0
DEFAULT_TIMEOUT_S = 120.0
# podman's own defaults for a rootful container (over a million open files and processes) are
# more than runc may set here; these are enough for the worker and no more than this host allows.
NOFILE_CAP = 20000
NPROC_CAP = 32768
CONTAINERS_CONF = """\
# Written by make image-test; used through CONTAINERS_CONF only.
[containers]
default_ulimits = ["nofile={nofile}", "nproc={nproc}"]

[engine]
runtime = "runc"
"""


class PodmanError(RuntimeError):
    """A podman command failed; the message holds its output."""


def apt_install(packages: Sequence[str]) -> None:
    """Install Debian packages (as root), saying so."""
    if os.geteuid() != 0:
        raise PodmanError(
            f"{', '.join(packages)} missing and this is not root: "
            f"sudo apt-get install -y {' '.join(packages)}"
        )
    print(f"installing {' '.join(packages)} with apt-get (missing)...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
    ):
        result = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_S, check=False
        )
        if result.returncode != 0:
            raise PodmanError(f"{' '.join(argv)} failed:\n{result.stdout[-2000:]}{result.stderr}")


def ensure_installed() -> None:
    missing = [name for name in PACKAGES if shutil.which(name) is None]
    if missing:
        apt_install(list(PACKAGES))


@dataclass
class Podman:
    """Runs podman with the test's containers.conf."""

    conf: Path

    @classmethod
    def prepare(cls, workdir: Path) -> Podman:
        ensure_installed()
        conf = workdir / "containers.conf"
        conf.write_text(
            CONTAINERS_CONF.format(
                nofile=_limit(resource.RLIMIT_NOFILE, NOFILE_CAP),
                nproc=_limit(resource.RLIMIT_NPROC, NPROC_CAP),
            )
        )
        return cls(conf)

    def run(
        self,
        *args: str,
        check: bool = True,
        timeout: float = DEFAULT_TIMEOUT_S,
        input_bytes: bytes | None = None,
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "CONTAINERS_CONF": str(self.conf)}
        result = subprocess.run(
            ["podman", *args],
            env=env,
            capture_output=True,
            text=input_bytes is None,
            input=input_bytes,
            timeout=timeout,
            check=False,
        )
        if input_bytes is not None:  # binary input: decode the output for the caller
            result = subprocess.CompletedProcess(
                result.args,
                result.returncode,
                result.stdout.decode(errors="replace"),
                result.stderr.decode(errors="replace"),
            )
        if check and result.returncode != 0:
            raise PodmanError(
                f"podman {' '.join(args[:3])} ... exited {result.returncode}:\n"
                f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
            )
        return result

    def version(self) -> str:
        return self.run("version", "--format", "{{.Client.Version}}").stdout.strip()

    def image_exists(self, name: str) -> bool:
        return self.run("image", "exists", name, check=False).returncode == 0

    def label(self, image: str, name: str) -> str:
        out = self.run(
            "image", "inspect", "--format", f'{{{{index .Labels "{name}"}}}}', image
        ).stdout.strip()
        return "" if out == "<no value>" else out

    def remove_container(self, name: str) -> None:
        self.run("rm", "--force", "--time", "0", name, check=False)


def _limit(which: int, cap: int) -> str:
    """A container's default for a limit: the host's soft limit, at most `cap`."""
    soft, _hard = resource.getrlimit(which)
    value = cap if soft == resource.RLIM_INFINITY else min(soft, cap)
    return f"{value}:{value}"


def wait_for(predicate: object, timeout_s: float, poll_s: float = 0.1) -> float | None:
    """Seconds until `predicate()` is true, or None after `timeout_s`."""
    assert callable(predicate)
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if predicate():
            return time.monotonic() - started
        time.sleep(poll_s)
    return None
