"""The results as a markdown table, the targets checked, and the JSON record."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.bench.metrics import Summary
from tests.bench.scenarios import PEERS, QUOTA, RSS_LIMIT_MIB, WORKER
from tests.bench.sqs_server import LatencyProbe

REGIONS_SCALE_TARGET = 2.8
CPU_OVER_BARE_TARGET = 1.3
SQS_PER_MSG_TARGET = 0.25


@dataclass(frozen=True)
class Check:
    scenario: str
    what: str
    measured: float | None
    limit: float
    at_least: bool

    @property
    def met(self) -> bool:
        if self.measured is None:
            return False
        return self.measured >= self.limit if self.at_least else self.measured <= self.limit

    def line(self) -> str:
        sign = "≥" if self.at_least else "≤"
        shown = "n/a" if self.measured is None else f"{self.measured:.3g}"
        verdict = "MET" if self.met else "MISSED"
        return f"| {self.scenario} | {self.what} | {shown} | {sign} {self.limit:.3g} | {verdict} |"


def _yes(scenario: str, what: str, holds: bool) -> Check:
    """A yes/no target, shown as 1 (yes) against ≥ 1."""
    return Check(scenario, what, float(holds), 1, at_least=True)


def _fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _worker(summaries: Sequence[Summary], scenario: str) -> Summary | None:
    return next((s for s in summaries if s.scenario == scenario and s.consumer == WORKER), None)


def checks(summaries: Sequence[Summary], bare: dict[str, Any] | None) -> list[Check]:
    out: list[Check] = [
        _yes(
            s.scenario,
            "drained, exited 0 by itself",
            s.drained and s.exited_by_itself and not any(s.exit_codes),
        )
        for s in summaries
        if s.consumer == WORKER
    ]
    if s1 := _worker(summaries, "s1"):
        out += [
            Check("s1", "rate ÷ quota", s1.share, 0.97, at_least=True),
            Check("s1", "throttled fraction", s1.throttled_fraction, 0.01, at_least=False),
            Check("s1", "dead-lettered", float(s1.dead_lettered), 0, at_least=False),
        ]
    if s2 := _worker(summaries, "s2"):
        out += [
            Check("s2", "rate ÷ (quota − neighbour)", s2.share, 0.85, at_least=True),
            Check("s2", "throttled fraction", s2.throttled_fraction, 0.05, at_least=False),
        ]
    if s3 := _worker(summaries, "s3"):
        out += [
            Check("s3", "rate (all replicas) ÷ quota", s3.share, 0.9, at_least=True),
            Check("s3", "throttled fraction", s3.throttled_fraction, 0.05, at_least=False),
        ]
    if s4 := _worker(summaries, "s4"):
        one_region = s1.rate if s1 else QUOTA
        basis = "s1 rate" if s1 else "quota"
        out.append(
            Check(
                "s4",
                f"rate ÷ one region ({basis})",
                s4.rate / one_region,
                REGIONS_SCALE_TARGET,
                True,
            )
        )
    if s5 := _worker(summaries, "s5"):
        ratio = None
        if bare and s5.cpu_ms_per_msg is not None:
            ratio = s5.cpu_ms_per_msg / float(bare["cpu_ms_per_call"])
        out += [
            Check("s5", "CPU per message ÷ bare call", ratio, CPU_OVER_BARE_TARGET, at_least=False),
            Check("s5", "SQS requests per message", s5.sqs_per_msg, SQS_PER_MSG_TARGET, False),
        ]
    out += [
        Check(s.scenario, "peak RSS MiB (each replica)", s.peak_rss_mib, RSS_LIMIT_MIB, False)
        for s in summaries
        if s.consumer == WORKER
    ]
    return out


def table(summaries: Sequence[Summary]) -> str:
    head = (
        "| scenario | consumer | N | applied | DLQ | rate/s | ÷ capacity | throttled "
        "| drain s (ideal) | latency p50 / p99 s | CPU ms/msg | SQS req/msg | peak RSS MiB "
        "| exit |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    )
    rows = []
    for s in summaries:
        name = s.consumer if s.replicas == 1 else f"{s.consumer} ×{s.replicas}"
        ending = ",".join(map(str, s.exit_codes))
        if s.stalled:
            ending += " (stalled)"
        elif s.timed_out:
            ending += " (timed out)"
        elif not s.exited_by_itself:
            ending += " (stopped)" if s.consumer == WORKER else " (stopped when done)"
        ideal = f" ({s.ideal_s:.0f})" if s.ideal_s else ""
        rows.append(
            f"| {s.scenario} | {name} | {s.messages} | {s.applied} | {s.dead_lettered} "
            f"| {s.rate:.1f} | {_fmt(s.share)} | {_pct(s.throttled_fraction)} "
            f"| {s.drain_s:.0f}{ideal} | {_fmt(s.latency_p50_s, 1)} / {_fmt(s.latency_p99_s, 1)} "
            f"| {_fmt(s.cpu_ms_per_msg)} | {s.sqs_per_msg:.3f} | {s.peak_rss_mib:.0f} | {ending} |"
        )
    return "\n".join([head, *rows])


def ratios(summaries: Sequence[Summary]) -> str:
    lines = [
        "| scenario | peer | throughput (worker ÷ peer) | throttled (worker ÷ peer) "
        "| CPU/msg (worker ÷ peer) |",
        "|---|---|---:|---:|---:|",
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
                f"| {worker.scenario} | {peer.consumer} | {throughput} | {throttled} | {cpu} |"
            )
    return "\n".join(lines)


def neighbours(summaries: Sequence[Summary]) -> str:
    lines = []
    for s in summaries:
        if s.neighbour and s.neighbour["elapsed_s"] > 0:
            n = s.neighbour
            calls = int(n["calls"]) or 1
            lines.append(
                f"- {s.scenario} neighbour: {n['rate']:g}/s attempted, "
                f"{n['successes'] / n['elapsed_s']:.1f}/s succeeded, "
                f"{int(n['throttles']) / calls:.1%} of its calls throttled."
            )
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
        lines.append(f"| {s.scenario} | {s.consumer} | {ops} |")
    return "\n".join(lines)


def sqs_latency(probes: dict[str, list[LatencyProbe]]) -> str:
    lines = [
        "| SQS (fauxqs) path | queue depth | receive(10)+delete_batch(10) p50 ms | p99 ms |",
        "|---|---:|---:|---:|",
    ]
    for path, results in probes.items():
        lines += [f"| {path} | {p.depth} | {p.p50_ms:.2f} | {p.p99_ms:.2f} |" for p in results]
    return "\n".join(lines)


def render(
    summaries: Sequence[Summary],
    probes: dict[str, list[LatencyProbe]],
    bare: dict[str, Any] | None,
    meta: dict[str, Any],
) -> str:
    found = checks(summaries, bare)
    scenario_titles: dict[str, str] = meta["scenarios"]
    parts = [
        f"Machine: {meta['uname']}; {meta['nproc']} CPUs; Python {meta['python']}; "
        f"Node {meta['node']}; {meta['date']}; worker {meta['worker_version']} "
        f"(source digest {meta['worker_source']})"
        f"{' (quick sizes)' if meta['quick'] else ''}; whole run {meta['bench_s']} s.",
        f"Cognito emulator: {meta['cognito_latency_s'] * 1000:.0f} ± "
        f"{meta['cognito_jitter_s'] * 1000:.0f} ms per call in s1-s4; the worker runs with "
        "FEEDBACK_RATE_LIMIT set to the quota (25) there, 10000 in s5.",
        *([f"Consumer 'worker' ran as: {meta['worker_cmd']}."] if meta["worker_cmd"] else []),
        "",
        "### SQS emulator latency\n",
        sqs_latency(probes),
        "\n### Scenarios\n",
        "\n".join(f"- {key}: {title}" for key, title in scenario_titles.items()),
        "",
        table(summaries),
        "",
        "rate: steady state, verdicts applied per second between the 10th and 90th percentile "
        "of apply times. drain: consumer start to last verdict applied (ideal: N ÷ capacity). "
        "latency: enqueue to applied (a backlog's is mostly its wait in the queue). "
        "CPU: user+sys of the consumer's processes after their first receive, per verdict "
        "applied. throttled: the consumer's own calls refused for the quota.",
    ]
    if notes := neighbours(summaries):
        parts += ["", notes]
    if bare:
        parts.append(
            f"\nBare aiobotocore AdminUpdateAuthEventFeedback loop (s5 set-up): "
            f"{bare['cpu_ms_per_call']:.2f} ms CPU and {bare['wall_ms_per_call']:.2f} ms wall "
            f"per call over {bare['calls']} calls."
        )
    if any(s.consumer in PEERS for s in summaries):
        parts += ["\n### Worker against peers\n", ratios(summaries)]
    parts += ["\n### SQS requests\n", sqs_operations(summaries)]
    parts += [
        "\n### Targets\n",
        "| scenario | what | measured | target | |\n|---|---|---:|---:|---|",
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
        "targets": [{**vars(c), "met": c.met} for c in checks(summaries, bare)],
    }
    path.write_text(json.dumps(record, indent=2))
