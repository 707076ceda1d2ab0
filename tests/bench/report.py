"""The results as markdown tables, the targets checked, and the JSON record."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.bench import targets
from tests.bench.metrics import Summary
from tests.bench.scenarios import PEERS, WORKER
from tests.bench.sqs_server import LatencyProbe
from tests.support.worker_process import KILL_GRACE_S

KILLED = -9  # what the kernel reports for SIGKILL

# The figures shown for each scenario of the rate and bulkhead groups: (header, name, digits).
_BACKLOG_COLUMNS = (
    ("3rd-second rate /s", "third_second_rate", 0),
    ("lowest 1-s rate /s", "lowest_1s_rate", 0),
    ("rate after 1st s /s", "rate_after_first_s", 1),
    ("÷ quota", "share_after_first_s", 2),
)
FIGURE_COLUMNS: dict[str, tuple[tuple[str, str, int], ...]] = {
    "backlog": _BACKLOG_COLUMNS,
    "untyped": _BACKLOG_COLUMNS,
    "spike": (
        ("rate during spike /s", "spike_rate", 1),
        ("neighbour's /s", "neighbour_rate", 1),
        ("÷ what it leaves", "spike_share", 2),
        ("rate 3-5 s after ÷ quota", "recovered_share", 2),
        ("first 1-s window ≥ 0.95 quota, s", "recovery_s", 2),
    ),
    "replicas": (
        ("3rd-second rate /s", "third_second_rate", 0),
        ("rate after 1st s /s", "rate_after_first_s", 1),
        ("÷ quota", "share_after_first_s", 2),
        ("steady rate ÷ quota", "share", 2),
    ),
    "step": (
        ("follows drop to 10/s, s", "step1_follow_s", 2),
        ("level from +5 s ÷ 10/s", "step1_level_share", 2),
        ("throttled at 10/s", "step1_throttled", 3),
        ("follows rise to 25/s, s", "step2_follow_s", 2),
        ("level from +5 s ÷ 25/s", "step2_level_share", 2),
    ),
    "denied": (
        ("other pools' rate after 1st s /s", "rate_after_first_s", 1),
        ("÷ their quota", "share_after_first_s", 2),
    ),
    "outage": (
        ("healthy regions' rate after 1st s /s", "rate_after_first_s", 1),
        ("÷ their quota", "share_after_first_s", 2),
    ),
    "flood": (
        ("other users finished after, s", "finish_s", 1),
        ("fair-share time, s", "fair_s", 2),
        ("÷ fair share", "finish_vs_fair", 2),
    ),
    "fair": (
        ("rate after 1st s /s", "rate_after_first_s", 1),
        ("÷ quota", "share_after_first_s", 2),
    ),
    "trickle": (
        ("trickle p50 latency, s", "latency_p50_s", 2),
        ("trickle p99 latency, s", "latency_p99_s", 2),
        ("trickle messages never applied", "not_applied", 0),
    ),
}


def _fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _figure(s: Summary, name: str) -> float | None:
    return s.share if name == "share" else s.figures.get(name)


def consumer_label(s: Summary) -> str:
    name = s.consumer if s.replicas == 1 else f"{s.consumer} ×{s.replicas}"
    if s.consumer == WORKER and s.group == "rate" and s.rate_limit is not None:
        name += f", ceiling {s.rate_limit:g}/s"
    return name


def _ending(s: Summary) -> str:
    ending = ",".join(map(str, s.exit_codes))
    if any(code == KILLED for code in s.exit_codes):
        ending += f" (killed {KILL_GRACE_S:g} s after SIGTERM)"
    if s.stalled:
        return ending + " (stalled)"
    if s.timed_out:
        return ending + " (capped)"
    if s.time_boxed:
        return ending + " (stopped at the set time)"
    if not s.exited_by_itself:
        done = s.measured_applied >= s.measured
        return ending + (" (stopped when done)" if done or s.consumer != WORKER else " (stopped)")
    return ending


def table(summaries: Sequence[Summary]) -> str:
    head = (
        "| scenario | consumer | N | applied | DLQ | rate/s | ÷ capacity | throttled "
        "| drain s (ideal) | latency p50 / p99 s | CPU ms/msg | SQS req/msg | peak RSS MiB "
        "| exit |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    )
    rows = []
    for s in summaries:
        ideal = f" ({s.ideal_s:.0f})" if s.ideal_s else ""
        drain = "—" if s.time_boxed else f"{s.drain_s:.0f}{ideal}"
        rows.append(
            f"| {s.scenario} | {consumer_label(s)} | {s.messages} | {s.applied} "
            f"| {s.dead_lettered} | {s.rate:.1f} | {_fmt(s.share)} | {_pct(s.throttled_fraction)} "
            f"| {drain} | {_fmt(s.latency_p50_s, 1)} / {_fmt(s.latency_p99_s, 1)} "
            f"| {_fmt(s.cpu_ms_per_msg)} | {s.sqs_per_msg:.3f} | {s.peak_rss_mib:.0f} "
            f"| {_ending(s)} |"
        )
    return "\n".join([head, *rows])


def figure_tables(summaries: Sequence[Summary], titles: dict[str, str]) -> str:
    """One small table per rate or bulkhead scenario: its own figures, for every consumer."""
    parts = []
    for key, columns in FIGURE_COLUMNS.items():
        runs = [s for s in summaries if s.scenario == key]
        if not runs:
            continue
        head = "| consumer | " + " | ".join(c[0] for c in columns) + " | throttled |"
        rule = "|---|" + "---:|" * (len(columns) + 1)
        rows = [
            f"| {consumer_label(s)} | "
            + " | ".join(_fmt(_figure(s, name), digits) for _, name, digits in columns)
            + f" | {_pct(s.throttled_fraction)} |"
            for s in runs
        ]
        parts.append("\n".join([f"**{key}**: {titles.get(key, '')}\n", head, rule, *rows]))
    return "\n\n".join(parts)


def ratios(summaries: Sequence[Summary]) -> str:
    lines = [
        "| scenario | worker | peer | throughput (worker ÷ peer) | throttled (worker ÷ peer) "
        "| CPU/msg (worker ÷ peer) |",
        "|---|---|---|---:|---:|---:|",
    ]
    for worker in (s for s in summaries if s.consumer == WORKER):
        for peer in (s for s in summaries if s.scenario == worker.scenario and s.consumer in PEERS):
            throttled = (
                _fmt(worker.throttled_fraction / peer.throttled_fraction)
                if peer.throttled_fraction
                else ("1.00" if not worker.throttled_fraction else "∞")
            )
            cpu = (
                _fmt(worker.cpu_ms_per_msg / peer.cpu_ms_per_msg)
                if worker.cpu_ms_per_msg and peer.cpu_ms_per_msg
                else "—"
            )
            throughput = _fmt(worker.rate / peer.rate) if peer.rate else "∞"
            lines.append(
                f"| {worker.scenario} | {consumer_label(worker)} | {peer.consumer} "
                f"| {throughput} | {throttled} | {cpu} |"
            )
    return "\n".join(lines)


def neighbours(summaries: Sequence[Summary]) -> str:
    lines = []
    for s in summaries:
        if s.neighbour and s.neighbour["elapsed_s"] > 0:
            n = s.neighbour
            calls = int(n["calls"]) or 1
            lines.append(
                f"- {s.scenario} neighbour beside {consumer_label(s)}: {n['rate']:g}/s attempted "
                f"for {n['elapsed_s']:.0f} s, {n['successes'] / n['elapsed_s']:.1f}/s succeeded, "
                f"{int(n['throttles']) / calls:.1%} of its calls throttled."
            )
    return "\n".join(lines)


def errors(summaries: Sequence[Summary]) -> str:
    lines = [
        f"- {s.scenario} {consumer_label(s)}: "
        + ", ".join(f"{code} {count}" for code, count in sorted(s.errors.items()))
        for s in summaries
        if s.errors
    ]
    return "\n".join(lines)


def sqs_operations(summaries: Sequence[Summary]) -> str:
    lines = [
        "| scenario | consumer | SQS requests by operation, per 100 messages |",
        "|---|---|---|",
    ]
    for s in summaries:
        ops = ", ".join(
            f"{op} {count * 100 / s.messages:.1f}" for op, count in sorted(s.sqs_requests.items())
        )
        lines.append(f"| {s.scenario} | {consumer_label(s)} | {ops} |")
    return "\n".join(lines)


def sqs_latency(probes: dict[str, list[LatencyProbe]]) -> str:
    lines = [
        "| SQS (fauxqs) path | queue depth | receive(10)+delete_batch(10) p50 ms | p99 ms |",
        "|---|---:|---:|---:|",
    ]
    for path, results in probes.items():
        lines += [f"| {path} | {p.depth} | {p.p50_ms:.2f} | {p.p99_ms:.2f} |" for p in results]
    return "\n".join(lines)


def _header(meta: dict[str, Any]) -> list[str]:
    return [
        f"Machine: {meta['uname']}; {meta['nproc']} CPUs; Python {meta['python']}; "
        f"Node {meta['node']}; {meta['date']}; worker {meta['worker_version']} "
        f"(source digest {meta['worker_source']})"
        f"{' (quick sizes)' if meta['quick'] else ''}; whole run {meta['bench_s']} s.",
        f"Cognito emulator: {meta['cognito_latency_s'] * 1000:.0f} ± "
        f"{meta['cognito_jitter_s'] * 1000:.0f} ms per call but in s5, quota 25/s per region. "
        "The worker's FEEDBACK_RATE_LIMIT: the quota in s1-s4, 10000 in s5, 4x and 40x the "
        "quota in the rate scenarios, its default (25) in the bulkhead scenarios.",
        *([f"Consumer 'worker' ran as: {meta['worker_cmd']}."] if meta["worker_cmd"] else []),
    ]


NOTES = (
    "rate: steady state, measured verdicts applied per second between the 10th and 90th "
    "percentile of apply times (for a run capped before they were all applied: those applied "
    "÷ the run's length). drain: consumer start to last measured verdict applied "
    "(ideal: N ÷ capacity). latency: enqueue to applied (a backlog's is mostly its wait in the "
    "queue). CPU: user+sys of the consumer's processes after their first receive, per verdict "
    "applied. throttled: the consumer's own calls refused for the quota. Measured verdicts: "
    "all but those of a pool or region that fails by design (denied, outage)."
)


def render(
    summaries: Sequence[Summary],
    probes: dict[str, list[LatencyProbe]],
    bare: dict[str, Any] | None,
    meta: dict[str, Any],
) -> str:
    found = targets.checks(summaries, bare)
    titles: dict[str, str] = meta["scenarios"]
    parts = [
        *_header(meta),
        "\n### SQS emulator latency\n",
        sqs_latency(probes),
        "\n### Scenarios\n",
        "\n".join(f"- {key}: {title}" for key, title in titles.items()),
        "",
        table(summaries),
        "",
        NOTES,
    ]
    if notes := neighbours(summaries):
        parts += ["", notes]
    if bare:
        parts.append(
            f"\nBare aiobotocore AdminUpdateAuthEventFeedback loop (s5 set-up): "
            f"{bare['cpu_ms_per_call']:.2f} ms CPU and {bare['wall_ms_per_call']:.2f} ms wall "
            f"per call over {bare['calls']} calls."
        )
    if figures := figure_tables(summaries, titles):
        parts += ["\n### Rate control and bulkheads, figure by figure\n", figures]
    if any(s.consumer in PEERS for s in summaries):
        parts += ["\n### Worker against peers\n", ratios(summaries)]
    if errs := errors(summaries):
        parts += ["\n### Errors answered, by code (the consumer's calls)\n", errs]
    parts += ["\n### SQS requests\n", sqs_operations(summaries)]
    parts += [
        "\n### Targets\n",
        "| run | what | measured | target | |\n|---|---|---:|---:|---|",
        "\n".join(c.line() for c in found),
        f"\n{sum(c.met for c in found)} of {len(found)} targets met.",
    ]
    return "\n".join(parts)


def write_json(
    path: Path,
    summaries: Sequence[Summary],
    probes: dict[str, list[LatencyProbe]],
    bare: dict[str, Any] | None,
    meta: dict[str, Any],
) -> None:
    record = {
        "meta": meta,
        "sqs_latency": {k: [vars(p) for p in v] for k, v in probes.items()},
        "bare_call": bare,
        "runs": [s.to_json() for s in summaries],
        "targets": [{**vars(c), "met": c.met} for c in targets.checks(summaries, bare)],
    }
    path.write_text(json.dumps(record, indent=2))
