"""Installs what the benchmark needs beyond the project's own environment, once.

- ``node/``: Node 22 (the ``node`` npm package ships the binary), fauxqs (the SQS emulator)
  and the sqs-consumer peer with the AWS SDK for JavaScript, pinned by ``package-lock.json``.
- ``.venvs/plot``: matplotlib, kept out of the project's virtualenv.

Both live in gitignored folders under ``tests/bench`` and are reinstalled when their pins
change, so a fresh checkout needs nothing but the registries.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
NODE_DIR = BENCH_DIR / "node"
PLOT_VENV = BENCH_DIR / ".venvs" / "plot"
PLOT_REQUIREMENTS = ("matplotlib==3.10.7",)
NPM_TIMEOUT_S = 600.0
PIP_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class Toolchain:
    """Paths of the installed tools."""

    node: Path
    node_dir: Path
    plot_python: Path


def _stale(stamp: Path, *inputs: Path) -> bool:
    return not stamp.exists() or any(p.stat().st_mtime > stamp.stat().st_mtime for p in inputs)


def ensure_node_tools() -> Path:
    """The Node 22 binary, after ``npm ci`` if the lock file changed since the last install."""
    lock = NODE_DIR / "package-lock.json"
    stamp = NODE_DIR / "node_modules" / ".package-lock.json"
    node = NODE_DIR / "node_modules" / "node" / "bin" / "node"
    if _stale(stamp, lock) or not node.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is needed to install the benchmark's Node tools")
        print("bench: installing Node tools with npm ci ...", file=sys.stderr, flush=True)
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=NODE_DIR,
            check=True,
            timeout=NPM_TIMEOUT_S,
        )
    return node


def ensure_plot_python() -> Path:
    """A Python with matplotlib, in a virtualenv of the benchmark's own."""
    python = PLOT_VENV / "bin" / "python"
    stamp = PLOT_VENV / "requirements.txt"
    wanted = "\n".join(PLOT_REQUIREMENTS) + "\n"
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print("bench: installing matplotlib into tests/bench/.venvs/plot ...", file=sys.stderr)
    venv.create(PLOT_VENV, with_pip=True, clear=True)
    subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            *PLOT_REQUIREMENTS,
        ],
        check=True,
        timeout=PIP_TIMEOUT_S,
    )
    stamp.write_text(wanted)
    return python


def ensure_all() -> Toolchain:
    return Toolchain(node=ensure_node_tools(), node_dir=NODE_DIR, plot_python=ensure_plot_python())
