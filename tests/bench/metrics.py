"""What a run achieved, computed from the raw measurements of tests.bench.runner."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from tests.bench.runner import CaseData
from tests.bench.workload import POOL_SUFFIX

MIB = 1024 * 1024
# The steady-state rate is taken between these fractions of the applied verdicts, so neither
# the quota's initial burst nor the last stragglers count.
STEADY_FROM, STEADY_TO = 0.1, 0.9
MIN_STEADY_SAMPLE = 20


@dataclass(frozen=True)
class Summary:
    """One row of the results table (all rates in calls or messages per second)."""

    scenario: str
    consumer: str
    replicas: int
    messages: int
    applied: int
    duplicate_writes: int
    dead_lettered: int
    left_in_queue: int
    rate: float
    capacity: float | None
    drain_s: float
    ideal_s: float | None
    calls: int
    throttles: int
    throttled_fraction: float
    errors: dict[str, int]
    latency_p50_s: float | None
    latency_p99_s: float | None
    cpu_ms_per_msg: float | None
    cpu_ms_per_msg_with_startup: float | None
    sqs_requests: dict[str, int]
    sqs_per_msg: float
    peak_rss_mib: float
    exit_codes: list[int]
    exited_by_itself: bool
    timed_out: bool
    stalled: bool
    neighbour: dict[str, Any] | None
    timeline: dict[str, Any]

    @property
    def drained(self) -> bool:
        """Every message was applied or dead-lettered before the run's limits."""
        done = self.applied + self.dead_lettered >= self.messages
        return done and not (self.timed_out or self.stalled)

    @property
    def share(self) -> float | None:
        """Achieved rate over the capacity left for this consumer."""
        return None if not self.capacity else self.rate / self.capacity

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "share": self.share, "drained": self.drained}


def _percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def steady_rate(sorted_dates: list[float]) -> float:
    """Verdicts per second over the middle of the drain (all of it for small samples)."""
    count = len(sorted_dates)
    if count < 2:
        return 0.0
    low, high = 0, count - 1
    if count >= MIN_STEADY_SAMPLE:
        low, high = round(STEADY_FROM * (count - 1)), round(STEADY_TO * (count - 1))
    span = sorted_dates[high] - sorted_dates[low]
    return (high - low) / span if span > 0 else 0.0


def _region(pool_id: str) -> str:
    return pool_id.removesuffix(f"_{POOL_SUFFIX}")


def summarize(case: CaseData) -> Summary:
    scenario = case.scenario
    applied_rows = [r for r in case.writes if r["writes"] and r["event_id"] in case.sent_at]
    applied = len(applied_rows)
    dates = sorted(float(r["feedback_date"]) for r in applied_rows)
    latencies = sorted(
        float(r["feedback_date"]) - case.sent_at[r["event_id"]] for r in applied_rows
    )

    calls, throttles = int(case.stats["calls"]), int(case.stats["throttles"])
    errors = Counter({k: int(v) for k, v in case.stats.get("errors", {}).items()})
    if case.neighbour is not None:  # the neighbour reports its own calls: leave the consumer's
        calls -= int(case.neighbour["calls"])
        throttles -= int(case.neighbour["throttles"])
        for code, count in case.neighbour["outcomes"].items():
            if code != "success":
                errors[code] -= int(count)
    cpu_total = sum(u.cpu_s for u in case.usages)
    steady_msgs = case.applied_at_end - case.applied_at_base
    cpu_steady = None
    if case.cpu_base_s is not None and steady_msgs > 0:
        cpu_steady = (cpu_total - case.cpu_base_s) * 1000 / steady_msgs
    requests = sum(case.sqs_requests.values())
    return Summary(
        scenario=scenario.key,
        consumer=case.consumer,
        replicas=len(case.usages),
        messages=case.messages,
        applied=applied,
        duplicate_writes=sum(int(r["writes"]) - 1 for r in applied_rows),
        dead_lettered=case.dead_lettered,
        left_in_queue=case.left_in_queue,
        rate=steady_rate(dates),
        capacity=scenario.capacity,
        drain_s=(dates[-1] - case.started_at) if dates else case.ended_at - case.started_at,
        ideal_s=scenario.ideal_s(case.messages),
        calls=calls,
        throttles=throttles,
        throttled_fraction=throttles / calls if calls else 0.0,
        errors={k: v for k, v in errors.items() if v > 0},
        latency_p50_s=statistics.median(latencies) if latencies else None,
        latency_p99_s=_percentile(latencies, 0.99) if latencies else None,
        cpu_ms_per_msg=cpu_steady,
        cpu_ms_per_msg_with_startup=cpu_total * 1000 / applied if applied else None,
        sqs_requests=dict(case.sqs_requests),
        sqs_per_msg=requests / case.messages if case.messages else 0.0,
        peak_rss_mib=max((u.peak_rss_bytes for u in case.usages), default=0) / MIB,
        exit_codes=[u.exit_code for u in case.usages],
        exited_by_itself=case.exited_by_itself,
        timed_out=case.timed_out,
        stalled=case.stalled,
        neighbour=case.neighbour,
        timeline=_timeline(case, applied_rows),
    )


def _timeline(case: CaseData, applied_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per second since the start: verdicts applied (by region) and throttles (all callers)."""
    start = int(case.started_at)
    applied: dict[str, Counter[int]] = {}
    for row in applied_rows:
        second = int(float(row["feedback_date"])) - start
        applied.setdefault(_region(str(row["pool_id"])), Counter())[second] += 1
    throttles: Counter[int] = Counter()
    successes: Counter[int] = Counter()
    for bucket in case.stats.get("per_second", []):
        second = int(bucket["second"]) - start
        if second >= 0:
            throttles[second] += int(bucket["throttles"])
            successes[second] += int(bucket["successes"])
    last = max([*successes, *throttles, *(s for c in applied.values() for s in c)], default=0)
    return {
        "seconds": last + 1,
        "applied": {region: [c[s] for s in range(last + 1)] for region, c in applied.items()},
        "throttles": [throttles[s] for s in range(last + 1)],
        "all_successes": [successes[s] for s in range(last + 1)],
    }
