"""What a run achieved, computed from the raw measurements of tests.bench.runner."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from feedback_local.emulator_config import DEFAULT_PER_USER_LIMIT
from tests.bench import figures
from tests.bench.runner import CaseData
from tests.bench.scenarios import Scenario
from tests.bench.workload import FLOOD, OTHER, TRICKLE, Verdict

MIB = 1024 * 1024
# The steady-state rate is taken between these fractions of the applied verdicts, so neither
# the quota's initial burst nor the last stragglers count.
STEADY_FROM, STEADY_TO = 0.1, 0.9
MIN_STEADY_SAMPLE = 20


@dataclass(frozen=True)
class Summary:
    """One row of the results table (all rates in calls or messages per second)."""

    scenario: str
    group: str
    consumer: str
    rate_limit: float | None
    replicas: int
    messages: int
    applied: int
    measured: int  # verdicts whose pace is measured (not in a failing scope)
    measured_applied: int
    duplicate_writes: int
    dead_lettered: int
    left_in_queue: int
    rate: float
    capacity: float | None
    drain_s: float
    ideal_s: float | None
    time_boxed: bool
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
    figures: dict[str, float | None]
    timeline: dict[str, Any]

    @property
    def drained(self) -> bool:
        """Every message was applied or dead-lettered before the run's limits."""
        done = self.applied + self.dead_lettered >= self.messages
        return done and not (self.timed_out or self.stalled)

    @property
    def share(self) -> float | None:
        """Steady rate over the capacity left for this consumer."""
        return None if not self.capacity else self.rate / self.capacity

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "share": self.share, "drained": self.drained}


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


def _rate(case: CaseData, dates: list[float]) -> float:
    """The steady rate; for a run stopped before its measured verdicts were all applied (its
    cap, a stall), what it applied over the whole run instead."""
    if case.scenario.duration_s is None and len(dates) < len(case.goal):
        return len(dates) / max(case.ended_at - case.started_at, 1e-9)
    return steady_rate(dates)


def _consumer_calls(case: CaseData) -> tuple[int, int, dict[str, int]]:
    """Calls, throttles and errors by code of the consumer alone (less the neighbour's)."""
    calls, throttles = int(case.stats["calls"]), int(case.stats["throttles"])
    errors = Counter({k: int(v) for k, v in case.stats.get("errors", {}).items()})
    if case.neighbour is not None:
        calls -= int(case.neighbour["calls"])
        throttles -= int(case.neighbour["throttles"])
        for code, count in case.neighbour["outcomes"].items():
            if code != "success":
                errors[code] -= int(count)
    return calls, throttles, {k: v for k, v in errors.items() if v > 0}


def summarize(case: CaseData) -> Summary:
    scenario = case.scenario
    applied_at = {
        str(r["event_id"]): float(r["feedback_date"])
        for r in case.writes
        if r["writes"] and r["event_id"] in case.sent_at
    }
    backlog = [e for e in applied_at if case.verdicts[e].role != TRICKLE]
    dates = sorted(applied_at[e] for e in backlog if e in case.goal)
    latencies = sorted(applied_at[e] - case.sent_at[e] for e in backlog)
    calls, throttles, errors = _consumer_calls(case)
    cpu_total = sum(u.cpu_s for u in case.usages)
    steady_msgs = case.applied_at_end - case.watch.applied_at_base
    cpu_steady = None
    if case.watch.cpu_base_s is not None and steady_msgs > 0:
        cpu_steady = (cpu_total - case.watch.cpu_base_s) * 1000 / steady_msgs
    requests = sum(case.sqs_requests.values())
    return Summary(
        scenario=scenario.key,
        group=scenario.group,
        consumer=case.consumer,
        rate_limit=case.rate_limit,
        replicas=len(case.usages),
        messages=case.messages,
        applied=len(backlog),
        measured=len(case.goal),
        measured_applied=len(dates),
        duplicate_writes=sum(int(r["writes"]) - 1 for r in case.writes if r["writes"]),
        dead_lettered=case.dead_lettered,
        left_in_queue=case.left_in_queue,
        rate=_rate(case, dates),
        capacity=scenario.capacity,
        drain_s=(dates[-1] - case.started_at) if dates else case.ended_at - case.started_at,
        ideal_s=scenario.ideal_s(len(case.goal)),
        time_boxed=scenario.duration_s is not None,
        calls=calls,
        throttles=throttles,
        throttled_fraction=throttles / calls if calls else 0.0,
        errors=errors,
        latency_p50_s=statistics.median(latencies) if latencies else None,
        latency_p99_s=figures.percentile(latencies, 0.99) if latencies else None,
        cpu_ms_per_msg=cpu_steady,
        cpu_ms_per_msg_with_startup=cpu_total * 1000 / len(backlog) if backlog else None,
        sqs_requests=dict(case.sqs_requests),
        sqs_per_msg=requests / case.messages if case.messages else 0.0,
        peak_rss_mib=max((u.peak_rss_bytes for u in case.usages), default=0) / MIB,
        exit_codes=[u.exit_code for u in case.usages],
        exited_by_itself=case.watch.exited_by_itself,
        timed_out=case.watch.timed_out,
        stalled=case.watch.stalled,
        neighbour=case.neighbour,
        figures=_figures(case, applied_at, dates),
        timeline=_timeline(case, applied_at),
    )


def _run_end(case: CaseData, dates: Sequence[float]) -> float:
    """The end of the measured part of a run: the last measured verdict if all were applied,
    else when the run was stopped (a time-boxed run: its set duration)."""
    scenario = case.scenario
    if scenario.duration_s is not None:
        return min(case.ended_at, case.started_at + scenario.duration_s)
    if dates and len(dates) >= len(case.goal):
        return dates[-1]
    return case.ended_at


def _figures(
    case: CaseData, applied_at: dict[str, float], dates: list[float]
) -> dict[str, float | None]:
    scenario = case.scenario
    out: dict[str, float | None] = {}
    if dates:
        out |= _pace(case, applied_at, dates)
    elif scenario.capacity:  # nothing measured was applied at all
        out |= {"rate_after_first_s": 0.0, "share_after_first_s": 0.0}
    if scenario.trickle_rate:
        sent = case.marks.trickle_sent
        out |= figures.latency(
            [case.sent_at[e] for e in sent], [applied_at.get(e) for e in sent], case.ended_at
        )
    return out


def _pace(
    case: CaseData, applied_at: dict[str, float], dates: list[float]
) -> dict[str, float | None]:
    """The figures of the measured verdicts' pace (see tests.bench.figures)."""
    scenario = case.scenario
    t0, t_end = dates[0], _run_end(case, dates)
    out = figures.backlog(dates, t0, t_end)
    rate = out["rate_after_first_s"]
    plain = not (scenario.quota_steps or scenario.neighbour_window)
    if scenario.capacity and rate is not None and plain:
        out["share_after_first_s"] = rate / scenario.capacity
    if scenario.quota:
        for name in ("third_second", "lowest_1s"):
            value = out[f"{name}_rate"]
            out[f"{name}_share"] = None if value is None else value / scenario.quota
    if scenario.neighbour_window and case.neighbour and scenario.quota:
        out |= figures.spike(dates, scenario.quota, case.neighbour, t_end)
    if scenario.quota_steps:
        per_second = [
            (int(b["second"]), int(b["calls"]), int(b["throttles"]))
            for b in case.stats.get("per_second", [])
        ]
        out |= figures.steps(dates, case.marks.quota_steps, t_end, per_second)
    if scenario.flood:
        others = sorted(t for e, t in applied_at.items() if case.verdicts[e].role == OTHER)
        expected = sum(1 for v in case.verdicts.values() if v.role == OTHER)
        fair = figures.fair_share_s(scenario, expected, DEFAULT_PER_USER_LIMIT)
        out |= figures.finish(others, t0, expected, fair)
    return out


def _series(scenario: Scenario, verdict: Verdict, measured: bool) -> str:
    """The line a verdict's applies are counted in, in the plot."""
    if scenario.faults:
        return "healthy scopes" if measured else "failing scope"
    if scenario.flood:
        return "flood user" if verdict.role == FLOOD else "other users"
    if scenario.tenants and verdict.group:
        return verdict.group
    if len(scenario.regions) > 1:
        return verdict.region
    return "all"


def _timeline(case: CaseData, applied_at: dict[str, float]) -> dict[str, Any]:
    """Per second since the start: verdicts applied (measured, and by series), throttles and
    successes of all callers, the neighbour's successes, and the scenario's marks."""
    start = int(case.started_at)
    measured: Counter[int] = Counter()
    series: dict[str, Counter[int]] = {}
    for event_id, at in applied_at.items():
        second = int(at) - start
        in_goal = event_id in case.goal
        measured[second] += in_goal
        name = _series(case.scenario, case.verdicts[event_id], in_goal)
        series.setdefault(name, Counter())[second] += 1
    throttles: Counter[int] = Counter()
    successes: Counter[int] = Counter()
    for bucket in case.stats.get("per_second", []):
        second = int(bucket["second"]) - start
        if second >= 0:
            throttles[second] += int(bucket["throttles"])
            successes[second] += int(bucket["successes"])
    neighbour: Counter[int] = Counter()
    for second, counts in (case.neighbour or {}).get("per_second", {}).items():
        neighbour[int(second) - start] += int(counts.get("success", 0))
        throttles[int(second) - start] -= int(counts.get("TooManyRequestsException", 0))
    last = max([*successes, *measured, int(case.ended_at) - start - 1, 0])
    span = range(last + 1)
    return {
        "seconds": last + 1,
        "measured": [measured[s] for s in span],
        "applied": {name: [c[s] for s in span] for name, c in sorted(series.items())},
        "throttles": [max(0, throttles[s]) for s in span],
        "all_successes": [successes[s] for s in span],
        "neighbour_successes": [neighbour[s] for s in span] if case.neighbour else [],
        "marks": _marks(case, start),
    }


def _marks(case: CaseData, start: int) -> dict[str, Any]:
    scenario = case.scenario
    marks: dict[str, Any] = {}
    if scenario.quota is not None:
        changes = [(at - start, quota) for at, quota in case.marks.quota_steps]
        marks["capacity"] = [(0.0, scenario.capacity), *changes]
    if case.neighbour and scenario.neighbour_window:
        n = case.neighbour
        marks["spike"] = (float(n["started_at"]) - start, float(n["stopped_at"]) - start)
    if scenario.duration_s is not None:
        marks["end"] = case.started_at + scenario.duration_s - start
    return marks
