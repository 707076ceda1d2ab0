"""The figures of a run taken from when each verdict was applied: rates in windows of time
around the scenario's events (a spike, a step), finish and latency of one group of verdicts.

Every time is an epoch second (the emulator's FeedbackDate of a write). ``t0`` is the first
measured verdict applied: the consumer's own start-up (imports, client set-up) is not the
rate control's doing. The definitions, as the report states them:

- rate after the first second: measured verdicts applied after t0 + 1 s, per second, until the
  last of them (or the run's end). The first second holds the quota's burst (a full bucket).
- third-second rate: verdicts applied in [t0 + 2, t0 + 3).
- lowest 1-s rate: the fewest verdicts in any whole second [t0 + k, t0 + k + 1), k ≥ 1, before
  the last measured verdict.
- spike share: the consumer's rate during the neighbour's spike ÷ (quota − the neighbour's
  success rate during it); recovered: its rate in the 4th and 5th second after the spike ÷
  quota; recovery: the end of the first 1-s window after the spike (starts every 0.25 s) at
  ≥ 0.95 of the quota.
- step follow time: after a change of capacity C at T, the end of the first 1-s window
  [T + k, T + k + 1) (k in 0.25 s steps) whose rate is at least 0.9 C while the mean rate from
  T + k to the next change is too. No upper bound: the emulator's bucket is what caps the
  rate at C, and what passes above C is the burst of a bucket restarted full by the change;
  calls sent above C show as throttles (step throttled: the consumer's throttled fraction from
  T to the next change).
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Sequence
from typing import Any

from tests.bench.scenarios import Scenario

RECOVERED_AT_LEAST = 0.95  # of the quota, after a spike
STEP_TOLERANCE = 0.1  # of the new capacity
WINDOW_STEP_S = 0.25
P99 = 0.99

Figures = dict[str, float | None]


def count_in(times: Sequence[float], start: float, end: float) -> int:
    """How many of the sorted `times` fall in [start, end)."""
    return bisect.bisect_left(times, end) - bisect.bisect_left(times, start)


def rate_in(times: Sequence[float], start: float, end: float) -> float | None:
    return count_in(times, start, end) / (end - start) if end > start else None


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def backlog(times: Sequence[float], t0: float, t_end: float) -> Figures:
    """Ramp, sustained and lowest rate of a backlog drained from t0 to t_end."""
    whole = math.floor(t_end - t0)
    lowest = min((count_in(times, t0 + k, t0 + k + 1) for k in range(1, whole)), default=None)
    return {
        "rate_after_first_s": rate_in(times, t0 + 1, t_end),
        "third_second_rate": float(count_in(times, t0 + 2, t0 + 3)) if whole >= 3 else None,
        "lowest_1s_rate": None if lowest is None else float(lowest),
    }


def first_window_at(times: Sequence[float], start: float, end: float, low: float) -> float | None:
    """Seconds from `start` to the end of the first 1-s window (starting every 0.25 s, ending
    by `end`) with a count of at least `low`, and a mean rate of at least `low` from there to
    `end`."""
    offset = 0.0
    while start + offset + 1 <= end:
        count = count_in(times, start + offset, start + offset + 1)
        mean = rate_in(times, start + offset, end) or 0.0
        if count >= low and mean >= low:
            return offset + 1
        offset += WINDOW_STEP_S
    return None


def spike(times: Sequence[float], quota: float, neighbour: dict[str, Any], t_end: float) -> Figures:
    start, stop = float(neighbour["started_at"]), float(neighbour["stopped_at"])
    during = rate_in(times, start, stop)
    neighbour_rate = neighbour["successes"] / neighbour["elapsed_s"] if stop > start else 0.0
    left = quota - neighbour_rate
    after = rate_in(times, stop + 3, stop + 5)
    recovery = None
    offset = 0.0
    while stop + offset + 1 <= t_end and recovery is None:
        if count_in(times, stop + offset, stop + offset + 1) >= RECOVERED_AT_LEAST * quota:
            recovery = offset + 1
        offset += WINDOW_STEP_S
    return {
        "spike_rate": during,
        "neighbour_rate": neighbour_rate,
        "spike_share": None if during is None or left <= 0 else during / left,
        "recovered_share": None if after is None else after / quota,
        "recovery_s": recovery,
    }


def steps(
    times: Sequence[float],
    changes: Sequence[tuple[float, float]],
    t_end: float,
    per_second: Sequence[tuple[int, int, int]],
) -> Figures:
    """Follow time, level share and throttled fraction after each change of capacity (time,
    new capacity); `per_second` holds the consumer's (epoch second, calls, throttles)."""
    out: Figures = {}
    for n, (at, capacity) in enumerate(changes, start=1):
        until = changes[n][0] if n < len(changes) else t_end
        low = capacity * (1 - STEP_TOLERANCE)
        out[f"step{n}_follow_s"] = first_window_at(times, at, until, low)
        level = rate_in(times, at + 5, until)
        out[f"step{n}_level_share"] = None if level is None else level / capacity
        out[f"step{n}_capacity"] = capacity
        inside = [(c, t) for second, c, t in per_second if at <= second < until]
        calls = sum(c for c, _ in inside)
        out[f"step{n}_throttled"] = sum(t for _, t in inside) / calls if calls else None
    return out


def finish(times: Sequence[float], t0: float, expected: int, fair_s: float) -> Figures:
    """When the last of a group of verdicts was applied, against its fair-share time."""
    if len(times) < expected or not times:
        return {"finish_s": None, "fair_s": fair_s, "finish_vs_fair": None}
    done = times[-1] - t0
    return {"finish_s": done, "fair_s": fair_s, "finish_vs_fair": done / fair_s}


def latency(sent: Sequence[float], applied: Sequence[float | None], t_end: float) -> Figures:
    """Enqueue-to-applied latency of a group; a verdict never applied counts as waiting until
    the run's end (a lower bound), so a missing one can only raise the percentiles."""
    waits = sorted((a if a is not None else t_end) - s for s, a in zip(sent, applied, strict=True))
    if not waits:
        return {"latency_p50_s": None, "latency_p99_s": None, "not_applied": None}
    return {
        "latency_p50_s": statistics.median(waits),
        "latency_p99_s": percentile(waits, P99),
        "not_applied": float(sum(1 for a in applied if a is None)),
    }


def fair_share_s(scenario: Scenario, others: int, per_user_limit: float) -> float:
    """The others' fair-share time during a flood: their verdicts at the quota the flood user
    leaves (the quota less the per-user limit)."""
    assert scenario.quota is not None
    return others / (scenario.quota - per_user_limit)
