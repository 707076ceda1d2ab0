"""``make bench``: drain backlogs through the worker and its peers, print and plot the results.

    .venv/bin/python -m tests.bench [--quick] [--only s1,spike,bulkheads] [--peers | --no-peers]
        [--out DIR]

Installs what it needs on first use (Node tools, matplotlib and, for the fair-queue scenarios,
LocalStack, in gitignored folders under tests/bench), starts fauxqs and the Cognito emulator
on loopback, runs the scenarios of tests.bench.scenarios and writes ``results.md``,
``results.json`` and one plot per group of scenarios to the output folder. ``--only`` takes
scenario keys and group names (classic, rate, bulkheads). ``BENCH_QUICK=1`` is the same as
``--quick``: smaller sizes, the worker at one ceiling, and no peers unless ``--peers``. Exits 1
when a target is missed and ``--strict`` is given, 2 when the benchmark itself fails.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import hashlib
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.bench import report, targets, toolchain
from tests.bench.metrics import Summary, summarize
from tests.bench.runner import REPO, Bench
from tests.bench.scenarios import (
    COGNITO_JITTER_S,
    COGNITO_LATENCY_S,
    WORKER,
    Scenario,
    scenarios,
    select,
)
from tests.bench.sqs_server import LatencyProbe
from worker import __version__

DEFAULT_OUT = toolchain.BENCH_DIR / "out"
WORKER_BIN = Path(sys.executable).with_name("feedback-worker")
PLOT_TIMEOUT_S = 120.0
EXIT_OK, EXIT_TARGET_MISSED, EXIT_BENCH_FAILED = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", default=bool(os.environ.get("BENCH_QUICK")))
    parser.add_argument(
        "--only", help="comma-separated scenario keys or groups, e.g. s1,spike,bulkheads"
    )
    peers = parser.add_mutually_exclusive_group()
    peers.add_argument("--peers", action="store_true", help="run the peers in quick runs too")
    peers.add_argument("--no-peers", action="store_true", help="run the worker only")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--worker-cmd",
        help="command that drains the queue and exits (default: feedback-worker run --until-empty)",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    return parser


def _say(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def _source_digest() -> str:
    """A digest of the worker's source, to tell results of different builds apart."""
    digest = hashlib.sha256()
    for path in sorted((REPO / "worker").rglob("*.py")):
        digest.update(path.relative_to(REPO).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _meta(args: argparse.Namespace, selected: list[Scenario], node: Path) -> dict[str, Any]:
    node_version = subprocess.run(
        [str(node), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "groups": {s.key: s.group for s in selected},
        "uname": " ".join(platform.uname()),
        "nproc": os.cpu_count(),
        "python": sys.version.split()[0],
        "node": node_version,
        "worker_version": __version__,
        "worker_source": _source_digest(),
        "worker_cmd": args.worker_cmd,
        "quick": args.quick,
        "cognito_latency_s": COGNITO_LATENCY_S,
        "cognito_jitter_s": COGNITO_JITTER_S,
        "scenarios": {s.key: s.title for s in selected},
    }


def _line(summary: Summary, elapsed_s: float) -> str:
    share = f", {summary.share:.2f} of capacity" if summary.share is not None else ""
    return (
        f"{summary.scenario} {report.consumer_label(summary)}: "
        f"{summary.applied}/{summary.messages} applied, "
        f"{summary.rate:.1f}/s{share}, {summary.throttled_fraction:.1%} throttled, "
        f"{summary.dead_lettered} dead-lettered ({elapsed_s:.0f} s)"
    )


def _runs(scenario: Scenario, with_peers: bool) -> list[tuple[str, float | None]]:
    """(consumer, FEEDBACK_RATE_LIMIT) of every run of a scenario, the worker's first."""
    runs: list[tuple[str, float | None]] = []
    for consumer in scenario.consumers(with_peers):
        limits = scenario.worker_rate_limits() if consumer == WORKER else (None,)
        runs += [(consumer, limit) for limit in limits]
    return runs


async def _measure(
    args: argparse.Namespace, selected: list[Scenario], tools: toolchain.Toolchain, out: Path
) -> tuple[list[Summary], dict[str, list[LatencyProbe]], dict[str, Any] | None]:
    worker_argv = [str(WORKER_BIN), "run", "--until-empty"]
    if args.worker_cmd:
        worker_argv = shlex.split(args.worker_cmd)
    elif not WORKER_BIN.exists():
        raise RuntimeError(f"{WORKER_BIN} is missing: run make install first")
    summaries: list[Summary] = []
    bare: dict[str, Any] | None = None
    with Bench(tools, out, worker_argv) as bench:
        _say("measuring fauxqs at queue depths 100 and 5,000 ...")
        probes = await bench.probe_sqs()
        for scenario in selected:
            if scenario.bare_calls:
                bare = await bench.bare_call(scenario)
                _say(f"{scenario.key} bare aiobotocore call: {bare['cpu_ms_per_call']:.2f} ms CPU")
            for consumer, rate_limit in _runs(scenario, _with_peers(args)):
                ceiling = "" if rate_limit is None else f", ceiling {rate_limit:g}/s"
                size = scenario.size_for(consumer)
                _say(f"{scenario.key} {consumer}{ceiling}: {size} messages ...")
                started = time.monotonic()
                summary = summarize(await bench.run_case(scenario, consumer, rate_limit))
                summaries.append(summary)
                _say(_line(summary, time.monotonic() - started))
    return summaries, probes, bare


def _with_peers(args: argparse.Namespace) -> bool:
    return not args.no_peers and (args.peers or not args.quick)


def _run(args: argparse.Namespace) -> int:
    try:
        selected = select(scenarios(args.quick), args.only)
    except ValueError as exc:
        _say(str(exc))
        return EXIT_BENCH_FAILED
    tools = toolchain.ensure_all()
    out: Path = args.out
    (out / "logs").mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    summaries, probes, bare = asyncio.run(_measure(args, selected, tools, out))
    meta = _meta(args, selected, tools.node)
    meta["bench_s"] = round(time.monotonic() - started)
    text = report.render(summaries, probes, bare, meta)
    (out / "results.md").write_text(text + "\n")
    report.write_json(out / "results.json", summaries, probes, bare, meta)
    plot = [str(toolchain.BENCH_DIR / "plot.py"), str(out / "results.json"), str(out)]
    subprocess.run([str(tools.plot_python), *plot], check=True, timeout=PLOT_TIMEOUT_S)
    print(text)
    print(f"\nWritten: {out / 'results.md'}, {out / 'results.json'} and the plots in {out}")
    missed = [c for c in targets.checks(summaries, bare) if not c.met]
    return EXIT_TARGET_MISSED if missed and args.strict else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        _say(f"failed: {exc}")
        return EXIT_BENCH_FAILED


if __name__ == "__main__":
    sys.exit(main())
