"""Installs what the benchmark needs beyond the project's own environment, once.

- ``node/``: Node 22 (the ``node`` npm package ships the binary), fauxqs (the SQS emulator)
  and the sqs-consumer peer with the AWS SDK for JavaScript, pinned by ``package-lock.json``.
- ``.venvs/plot``: matplotlib, kept out of the project's virtualenv.
- ``.venvs/localstack``: LocalStack's SQS (no Docker), for the SQS fair-queue scenarios only;
  its code needs Python 3.13 or newer, so it is found beside the project's own.

Both live in gitignored folders under ``tests/bench`` and are reinstalled when their pins
change, so a fresh checkout needs nothing but the registries.
"""

from __future__ import annotations

import os
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
LOCALSTACK_VENV = BENCH_DIR / ".venvs" / "localstack"
# localstack-core with what its runtime needs for SQS; the pins keep its TLS stack importable.
LOCALSTACK_REQUIREMENTS = (
    "localstack-core[base-runtime]==2026.3.0",
    "cbor2<6",
    "pyopenssl<24.3",
    "cryptography<44",
    "service_identity",
)
LOCALSTACK_PYTHONS = ("python3.13", "python3.14")
LOCALSTACK_MIN_PYTHON = (3, 13)
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


def _stale_venv(where: Path, requirements: tuple[str, ...]) -> bool:
    stamp = where / "requirements.txt"
    wanted = "\n".join(requirements) + "\n"
    fresh = (where / "bin" / "python").exists() and stamp.exists() and stamp.read_text() == wanted
    return not fresh


def _ensure_venv(
    where: Path, requirements: tuple[str, ...], base_python: str | None = None
) -> Path:
    """A virtualenv at `where` holding `requirements`, made anew when they change."""
    python = where / "bin" / "python"
    stamp = where / "requirements.txt"
    wanted = "\n".join(requirements) + "\n"
    if not _stale_venv(where, requirements):
        return python
    print(f"bench: installing {requirements[0]} into {where} ...", file=sys.stderr, flush=True)
    if base_python is None:
        venv.create(where, with_pip=True, clear=True)
    else:
        shutil.rmtree(where, ignore_errors=True)
        subprocess.run([base_python, "-m", "venv", str(where)], check=True)
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *requirements],
        check=True,
        timeout=PIP_TIMEOUT_S,
    )
    stamp.write_text(wanted)
    return python


def ensure_plot_python() -> Path:
    """A Python with matplotlib, in a virtualenv of the benchmark's own."""
    return _ensure_venv(PLOT_VENV, PLOT_REQUIREMENTS)


def _python_candidates() -> list[str]:
    """Interpreters that may be Python 3.13+: on the PATH, and pyenv's installed versions (its
    shims answer only for the selected version)."""
    found = [path for name in LOCALSTACK_PYTHONS if (path := shutil.which(name))]
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    found += sorted(str(p) for p in pyenv_root.glob("versions/3.*/bin/python3"))
    return found


def _recent_enough(python: str) -> bool:
    check = f"import sys; sys.exit(sys.version_info < {LOCALSTACK_MIN_PYTHON!r})"
    try:
        return (
            subprocess.run([python, "-c", check], capture_output=True, timeout=30).returncode == 0
        )
    except (OSError, subprocess.SubprocessError):
        return False


def ensure_localstack_python() -> Path:
    """A Python with LocalStack installed; RuntimeError if no Python 3.13+ can be found."""
    if not _stale_venv(LOCALSTACK_VENV, LOCALSTACK_REQUIREMENTS):
        return LOCALSTACK_VENV / "bin" / "python"
    base = next((p for p in _python_candidates() if _recent_enough(p)), None)
    if base is None:
        raise RuntimeError(
            "LocalStack, for the fair-queue scenarios, needs Python 3.13 or newer (python3.13 "
            "on the PATH or under pyenv); run the other scenarios with --only"
        )
    return _ensure_venv(LOCALSTACK_VENV, LOCALSTACK_REQUIREMENTS, base)


def ensure_all() -> Toolchain:
    return Toolchain(node=ensure_node_tools(), node_dir=NODE_DIR, plot_python=ensure_plot_python())
