"""The three parts stay apart: the runtime package `worker`, its operator tools `worker.ops`,
and the local stack `feedback_local` (deploy/local), which the runtime never imports or ships."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = ROOT / "worker"
LOCAL_PACKAGE = "feedback_local"
# Rooms small enough to read in one sitting (the house style).
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _runtime_modules() -> list[Path]:
    return sorted(RUNTIME.rglob("*.py"))


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", _runtime_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_runtime_package_never_imports_the_local_stack_or_the_tests(path: Path) -> None:
    imported = _imported_modules(path)
    forbidden = {
        name for name in imported if name.split(".")[0] in (LOCAL_PACKAGE, "tests", "moto")
    }
    assert not forbidden, f"{path.relative_to(ROOT)} imports {sorted(forbidden)}"


def test_the_message_path_does_not_import_the_operator_tools() -> None:
    """worker.ops uses the runtime; the runtime path never needs an operator command."""
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            name for name in _imported_modules(path) if name.startswith("worker.ops")
        )
        for path in _runtime_modules()
        if "ops" not in path.relative_to(RUNTIME).parts and path.name != "cli.py"
    }
    assert not {path: names for path, names in offenders.items() if names}


@pytest.mark.parametrize("path", _runtime_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_runtime_module_and_function_stays_small_enough_to_read(path: Path) -> None:
    source = path.read_text()
    assert source.count("\n") <= MAX_MODULE_LINES, f"{path.name} has grown past the limit"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{path.name}: {long}"


@pytest.mark.slow
def test_the_runtime_wheel_holds_the_worker_and_nothing_of_the_local_stack(
    tmp_path: Path,
) -> None:
    # Given the wheel pip builds from the repository root
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("cognito_feedback_worker-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    # Then it holds the runtime and its operator tools, and nothing of the local stack
    assert "worker/handler.py" in names
    assert "worker/ops/dlq_redrive.py" in names
    outside = [n for n in names if not n.startswith(("worker/", "cognito_feedback_worker-"))]
    assert not outside
    local = [n for n in names if any(part in n for part in ("emulator", "stack", "demo"))]
    assert not local
