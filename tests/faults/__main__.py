"""Run the fault suite against the real worker and print a table per fault.

    python -m tests.faults --short            # the CI-sized form (a few minutes)
    python -m tests.faults --full             # longer outages, more messages, plus a soak
    python -m tests.faults --full --soak-minutes 45
    python -m tests.faults --only sigkill --only fuzzed-bodies

Exits 1 if any run lost a message, dead-lettered one wrongly, left a stale verdict or failed
one of its checks. Worker logs land under --workdir, one folder per run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import anyio

from feedback_local.stack import LocalStack
from tests.faults.base import FULL, SHORT, ScenarioResult
from tests.faults.checker import Tally
from tests.faults.harness import Harness
from tests.faults.report import render
from tests.faults.scenarios import SCENARIOS
from tests.faults.soak import DEFAULT_SOAK_MINUTES, soak

EXIT_OK, EXIT_FAILED = 0, 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__)
    form = parser.add_mutually_exclusive_group()
    form.add_argument("--short", action="store_true", help="the CI-sized form (default)")
    form.add_argument("--full", action="store_true", help="full-size runs plus the soak")
    parser.add_argument(
        "--soak-minutes",
        type=float,
        default=None,
        help=f"soak length (full form default {DEFAULT_SOAK_MINUTES:g}; 0 skips it)",
    )
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS), default=None)
    parser.add_argument("--workdir", type=Path, default=None, help="where worker logs go")
    parser.add_argument("--report", type=Path, default=None, help="also write the report here")
    return parser


async def _main(args: argparse.Namespace) -> int:
    profile = FULL if args.full else SHORT
    soak_minutes = args.soak_minutes
    if soak_minutes is None:
        soak_minutes = DEFAULT_SOAK_MINUTES if args.full else 0.0
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="faults-"))
    names = args.only or list(SCENARIOS)
    print(f"fault suite ({profile.name}); worker logs in {workdir}", flush=True)
    results: list[ScenarioResult] = []
    stack = await anyio.to_thread.run_sync(LocalStack().start)
    try:
        async with Harness(stack, workdir) as harness:
            for name in names:
                try:
                    result = await SCENARIOS[name](harness, profile)
                except Exception as exc:  # one broken run must not hide the others' results
                    result = ScenarioResult(name, Tally(), checks={"ran to the end": False})
                    result.notes.append(f"the run itself failed: {exc!r}")
                print(f"{name}: {'PASS' if result.ok else 'FAIL'} ({result.elapsed_s:.0f}s)")
                results.append(result)
            if soak_minutes > 0:
                try:
                    results.append(await soak(harness, soak_minutes, workdir))
                except Exception as exc:
                    result = ScenarioResult("soak", Tally(), checks={"ran to the end": False})
                    result.notes.append(f"the soak itself failed: {exc!r}")
                    results.append(result)
    finally:
        await anyio.to_thread.run_sync(stack.stop)
    report = render(results)
    print("\n" + report)
    if args.report is not None:
        args.report.write_text(f"Generated {time.strftime('%Y-%m-%d %H:%M')}\n\n{report}\n")
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    return anyio.run(_main, _parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
