"""The region rate controller, with simulated time: a table of its rules, properties that hold
for any sequence of answers, and a simulated token bucket (Cognito's quota) it must find."""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.rate_control import (
    BETA,
    DECREASE_INTERVAL_S,
    EARLY_PROBE_AFTER_S,
    MAX_DECREASE,
    MIN_ESTIMATE_SPAN_S,
    MIN_RATE,
    PROBE_AFTER_S,
    RECOVERY_HALF_LIFE_S,
    SLOW_START_AFTER_S,
    SLOW_START_GROWTH,
    START_RATE,
    RateController,
)

T0 = 1_000.0


def successes(control: RateController, start: float, rate: float, seconds: float) -> float:
    """Feed `rate` successes per second for `seconds` from `start`; returns the end time."""
    count = round(rate * seconds)
    for i in range(count):
        control.on_success(start + (i + 1) / rate)
    return start + seconds


# -- the rules, one by one --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ceiling", "expected"), [(1000.0, START_RATE), (100.0, START_RATE), (7.0, 7.0)]
)
def test_the_rate_starts_at_the_documented_quota_or_the_ceiling_if_lower(
    ceiling: float, expected: float
) -> None:
    assert RateController(ceiling, now=T0).rate == expected


def test_a_throttle_sets_the_rate_to_beta_times_the_success_rate_since_the_last_decrease() -> None:
    control = RateController(1000.0, now=T0)
    # 20 successes a second for two seconds: the bucket refills at 20/s.
    now = successes(control, T0, 20.0, 2.0)
    assert control.on_throttle(now, sent_at=now - 0.05)
    assert control.known_good == pytest.approx(20.0, rel=0.05)
    assert control.rate == pytest.approx(BETA * 20.0, rel=0.05)


def test_a_throttle_of_a_call_sent_before_the_last_decrease_changes_nothing() -> None:
    control = RateController(1000.0, now=T0)
    now = successes(control, T0, 20.0, 2.0)
    assert control.on_throttle(now, sent_at=now - 0.05)
    after = control.rate
    later = now + 2 * DECREASE_INTERVAL_S
    assert not control.on_throttle(later, sent_at=now - 0.01)
    assert control.rate == after


def test_decreases_are_at_least_the_decrease_interval_apart() -> None:
    control = RateController(1000.0, now=T0)
    now = successes(control, T0, 20.0, 2.0)
    assert control.on_throttle(now, sent_at=now - 0.05)
    soon = now + DECREASE_INTERVAL_S / 2
    assert not control.on_throttle(soon, sent_at=now + 0.01)
    assert control.on_throttle(now + DECREASE_INTERVAL_S, sent_at=now + 0.01)


def test_every_call_in_flight_throttled_at_once_costs_one_decrease_not_a_collapse() -> None:
    # Given 25 successes a second, then 100 calls in flight all answered with throttles within
    # 120 ms (millisecond round trips): the collapse the previous controller suffered.
    control = RateController(1000.0, now=T0)
    now = successes(control, T0, 25.0, 2.0)
    sent = now - 0.001
    for i in range(100):
        control.on_throttle(now + i * 0.0012, sent_at=sent + i * 0.0012)
    # Then the rate sits at BETA times the share, not a trickle
    assert control.rate >= BETA * 25.0 * 0.9


def test_a_decrease_never_takes_away_more_than_its_share_of_the_rate() -> None:
    control = RateController(1000.0, now=T0)
    now = successes(control, T0, 25.0, 2.0)
    before = control.rate
    # Nothing succeeded for a while (another caller drained the bucket): the estimate is ~0.
    now += 3.0
    control.on_throttle(now, sent_at=now - 0.05)
    assert control.rate == pytest.approx(max(MAX_DECREASE * before, MIN_RATE))


def test_after_a_decrease_the_rate_recovers_halfway_to_the_known_good_rate_per_half_life() -> None:
    control = RateController(1000.0, now=T0)
    now = successes(control, T0, 20.0, 2.0)
    control.on_throttle(now, sent_at=now - 0.05)
    good, low = control.known_good, control.rate
    control.on_success(now + RECOVERY_HALF_LIFE_S)
    assert control.rate == pytest.approx(good - (good - low) / 2, rel=0.01)
    control.on_success(now + 3 * RECOVERY_HALF_LIFE_S)
    assert control.rate == pytest.approx(good - (good - low) / 8, rel=0.01)
    assert control.rate < good


def test_probing_above_the_known_good_rate_starts_only_after_the_hold() -> None:
    control = RateController(1000.0, now=T0)
    now = successes(control, T0, 20.0, 2.0)
    control.on_throttle(now, sent_at=now - 0.05)
    good = control.known_good
    end = successes(control, now, good, PROBE_AFTER_S - 0.1)
    assert control.rate <= good
    successes(control, end, good, 1.5)
    assert control.rate > good


def test_before_the_first_throttle_probing_multiplies_the_rate_every_second() -> None:
    control = RateController(10_000.0, now=T0)
    now = successes(control, T0, START_RATE, SLOW_START_AFTER_S)
    assert control.rate == pytest.approx(START_RATE, rel=0.05)
    # With work enough to follow (successes at the rate allowed), one second doubles it.
    for _ in range(3):
        rate = control.rate
        now = successes(control, now, rate * SLOW_START_GROWTH, 1.0)
    assert control.rate == pytest.approx(START_RATE * SLOW_START_GROWTH**3, rel=0.1)


def test_a_share_lost_to_a_neighbour_is_taken_back_multiplicatively_once_it_ends() -> None:
    # Given a share of 25/s, then a neighbour's spike that leaves 10/s
    control = RateController(1000.0, now=T0)
    now = successes(control, T0, 25.0, 3.0)
    control.on_throttle(now, sent_at=now - 0.05)
    now = successes(control, now, 10.0, 2.0)
    control.on_throttle(now, sent_at=now - 0.05)
    assert control.known_good == pytest.approx(10.0, rel=0.1)
    # When the spike ends, probing starts early and grows the rate by doubling back toward
    # 25/s, which a purely additive probe from 10/s would take far longer to reach
    now = successes(control, now, 10.0, EARLY_PROBE_AFTER_S)
    now = successes(control, now, 20.0, 1.0)
    assert control.rate >= 18.0
    assert EARLY_PROBE_AFTER_S + 1.0 < PROBE_AFTER_S


def test_quick_cuts_at_the_start_do_not_count_as_a_best_share_to_probe_back_to() -> None:
    # Given a burst at the start that looked like 60/s, cut within the second to the share
    control = RateController(1000.0, now=T0)
    now = successes(control, T0, 60.0, 0.5)
    control.on_throttle(now, sent_at=now - 0.01)
    now = successes(control, now, 10.0, 1.5)
    control.on_throttle(now, sent_at=now - 0.01)
    assert control.known_good == pytest.approx(10.0, rel=0.1)
    # Then the steady hold applies: no early probe toward the burst's rate
    good = control.known_good
    successes(control, now, good, EARLY_PROBE_AFTER_S + 0.5)
    assert control.rate <= good


def test_without_work_enough_the_rate_grows_to_at_most_twice_what_it_achieves() -> None:
    control = RateController(10_000.0, now=T0)
    now = successes(control, T0, 5.0, 30.0)
    assert control.rate == START_RATE  # 2 x 5/s is below the known good rate: no growth
    successes(control, now, 30.0, 1.0)
    assert control.rate <= 2 * 30.0 + 1


def test_take_report_announces_material_changes_only() -> None:
    control = RateController(1000.0, now=T0)
    assert control.take_report() is None
    now = successes(control, T0, 20.0, 2.0)
    control.on_throttle(now, sent_at=now - 0.05)
    assert control.take_report() == control.rate
    assert control.take_report() is None


# -- properties ---------------------------------------------------------------------------


@st.composite
def answers(draw: st.DrawFn) -> list[tuple[float, bool, float]]:
    """(time, throttled, sent_at) answers at non-decreasing times."""
    steps = draw(st.lists(st.floats(0.0, 0.5), min_size=1, max_size=300))
    out: list[tuple[float, bool, float]] = []
    now = T0
    for step in steps:
        now += step
        throttled = draw(st.booleans())
        latency = draw(st.floats(0.0, 2.0))
        out.append((now, throttled, now - latency))
    return out


@given(ceiling=st.floats(0.5, 10_000.0), events=answers())
def test_the_rate_stays_between_the_floor_and_the_ceiling_whatever_happens(
    ceiling: float, events: list[tuple[float, bool, float]]
) -> None:
    control = RateController(ceiling, now=T0)
    for now, throttled, sent_at in events:
        before = control.rate
        if throttled:
            decreased = control.on_throttle(now, sent_at)
            assert control.rate <= before
            if decreased:
                assert control.rate >= min(before, max(MAX_DECREASE * before, MIN_RATE)) - 1e-9
            else:
                assert control.rate == before
        else:
            control.on_success(now)
            assert control.rate >= before
        assert min(MIN_RATE, ceiling) <= control.rate <= ceiling


@given(events=answers(), stale=st.integers(1, 200))
def test_throttles_of_calls_sent_before_the_last_decrease_never_move_the_rate(
    events: list[tuple[float, bool, float]], stale: int
) -> None:
    control = RateController(1000.0, now=T0)
    now = T0
    for now, throttled, sent_at in events:
        if throttled:
            control.on_throttle(now, sent_at)
        else:
            control.on_success(now)
    decreased_at = now + MIN_ESTIMATE_SPAN_S
    control.on_throttle(decreased_at, sent_at=decreased_at - 0.01)
    rate = control.rate
    for i in range(stale):
        later = decreased_at + i * 0.01
        assert not control.on_throttle(later, sent_at=decreased_at - 0.001)
    assert control.rate == rate


# -- against a simulated token bucket -------------------------------------------------------


@dataclass
class Bucket:
    """Cognito's quota as a token bucket holding one second's worth."""

    rate: float
    tokens: float
    stamp: float

    def take(self, now: float) -> bool:
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass
class Run:
    applied_per_s: list[int]
    throttled: int
    applied: int


def drain(quota: float, ceiling: float, backlog: int, latency_s: float = 0.03) -> Run:
    """A backlog drained through one controller against a bucket; calls spaced at the rate."""
    control = RateController(ceiling, now=T0)
    bucket = Bucket(quota, quota, T0)
    pending: list[tuple[float, int, bool, float]] = []
    order = itertools.count()
    now, next_send, left, applied, throttled = T0, T0, backlog, 0, 0
    per_second: list[int] = []
    while left or pending:
        if left and (not pending or next_send <= pending[0][0]):
            now = next_send
            heapq.heappush(pending, (now + latency_s, next(order), bucket.take(now), now))
            left -= 1
            next_send = now + 1.0 / control.rate
            continue
        now, _, ok, sent = heapq.heappop(pending)
        if ok:
            control.on_success(now)
            applied += 1
            second = int(now - T0)
            per_second += [0] * (second + 1 - len(per_second))
            per_second[second] += 1
        else:
            control.on_throttle(now, sent)
            throttled += 1
            left += 1
            next_send = max(next_send, now)
    return Run(per_second, throttled, applied)


@pytest.mark.parametrize("ceiling", [80.0, 800.0])
def test_a_backlog_drains_at_the_quota_with_few_throttles_whatever_the_ceiling(
    ceiling: float,
) -> None:
    # Given a quota of 20/s (below the documented 25) and a ceiling 4x and 40x above it
    quota = 20.0
    run = drain(quota, ceiling, backlog=1200)
    seconds = len(run.applied_per_s)
    # Then the whole run goes at the quota: a far too high ceiling costs no throughput
    assert run.applied / seconds >= 0.95 * quota
    # And the quota is reached from the first seconds and never lost for long
    assert min(run.applied_per_s[:3]) >= 0.9 * quota
    assert min(run.applied_per_s[1:-1]) >= 0.5 * quota
    # And throttles stay rare
    assert run.throttled <= 0.02 * (run.applied + run.throttled)
