"""Pacing: the adaptive region rate (AIMD), the region pacer and the per-user spacing.

Time is virtual: a fake clock, and an `anyio.sleep` that records the delay asked for and moves
the clock by exactly that much, so schedules are checked as numbers, never against a wall clock.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import anyio
import anyio.lowlevel
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from worker.pacing import (
    DECREASE_FACTOR,
    INCREASE_PER_S,
    MIN_RATE,
    USER_IDLE_FORGET_S,
    USER_PRUNE_EVERY,
    AdaptiveRate,
    KeyedSpacing,
    Pacer,
)

START = 1_000.0


class FakeClock:
    def __init__(self, start: float = START) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class VirtualSleep:
    """Stands in for anyio.sleep: records each delay and wakes exactly on time."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.delays: list[float] = []
        self.on_sleep: Callable[[], None] | None = None

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if self.on_sleep is not None:
            self.on_sleep()
        self.clock.advance(delay)
        await anyio.lowlevel.checkpoint()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleep(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> VirtualSleep:
    virtual = VirtualSleep(clock)
    monkeypatch.setattr(anyio, "sleep", virtual)
    return virtual


# Time between two calls in these tests; any positive step will do.
STEP_S = 0.01


def throttle_fresh(rate: AdaptiveRate, clock: FakeClock) -> None:
    """A throttle of a call started after the last decrease: news, so it must cut the rate."""
    clock.advance(STEP_S)
    started = clock()
    clock.advance(STEP_S)
    assert rate.on_throttle(started)


# -- AdaptiveRate ----------------------------------------------------------------------------


def test_the_allowed_rate_starts_at_the_cap(clock: FakeClock) -> None:
    assert AdaptiveRate(20.0, clock=clock).rate == 20.0


def test_a_throttle_cuts_the_rate_multiplicatively(clock: FakeClock) -> None:
    rate = AdaptiveRate(20.0, clock=clock)
    assert rate.on_throttle(clock())
    assert rate.rate == pytest.approx(20.0 * DECREASE_FACTOR)
    throttle_fresh(rate, clock)
    assert rate.rate == pytest.approx(20.0 * DECREASE_FACTOR**2)


def test_throttles_of_calls_sent_before_the_last_cut_do_not_cut_again(clock: FakeClock) -> None:
    # Given calls in flight at the old rate when the first throttle arrives
    rate = AdaptiveRate(20.0, clock=clock)
    in_flight = [clock() + i * STEP_S for i in range(5)]
    clock.advance(10 * STEP_S)
    assert rate.on_throttle(in_flight[0])
    after_first = rate.rate
    # When their throttles arrive later, they say nothing new
    for started in in_flight[1:]:
        clock.advance(STEP_S)
        assert not rate.on_throttle(started)
        assert rate.rate == after_first
    # Then a call sent after the cut and still throttled cuts again
    throttle_fresh(rate, clock)
    assert rate.rate < after_first


def test_the_rate_never_falls_below_the_floor(clock: FakeClock) -> None:
    rate = AdaptiveRate(20.0, clock=clock)
    for _ in range(100):
        throttle_fresh(rate, clock)
    assert rate.rate == MIN_RATE


def test_successes_grow_the_rate_back_to_the_cap_and_no_further(clock: FakeClock) -> None:
    rate = AdaptiveRate(20.0, clock=clock)
    for _ in range(30):
        throttle_fresh(rate, clock)
    previous = rate.rate
    for _ in range(10_000):
        rate.on_success()
        assert previous <= rate.rate <= 20.0
        previous = rate.rate
    assert rate.rate == 20.0


@given(max_rate=st.floats(min_value=10.0, max_value=1_000.0), throttles=st.integers(1, 40))
def test_one_seconds_worth_of_successes_adds_about_the_additive_step(
    max_rate: float, throttles: int
) -> None:
    clock = FakeClock()
    rate = AdaptiveRate(max_rate, clock=clock)
    for _ in range(throttles):
        throttle_fresh(rate, clock)
    before = rate.rate
    assume(before >= 3 and before + INCREASE_PER_S <= max_rate)
    # At `before` calls per second, one second brings floor(before) successes.
    for _ in range(math.floor(before)):
        rate.on_success()
    growth = rate.rate - before
    # Additive: about the same step whatever the rate (a multiplicative rule would scale it).
    assert INCREASE_PER_S / 2 <= growth <= INCREASE_PER_S * (1 + 1e-9)


_OPS = st.lists(
    st.one_of(
        st.just(("success", 0.0)),
        st.tuples(st.just("throttle"), st.floats(min_value=0.0, max_value=5.0)),
        st.tuples(st.just("wait"), st.floats(min_value=0.0, max_value=5.0)),
    ),
    max_size=200,
)


@given(max_rate=st.floats(min_value=MIN_RATE, max_value=10_000.0), ops=_OPS)
def test_aimd_stays_between_the_floor_and_the_cap_whatever_happens(
    max_rate: float, ops: list[tuple[str, float]]
) -> None:
    clock = FakeClock()
    rate = AdaptiveRate(max_rate, clock=clock)
    accepted: list[float] = []
    for op, seconds in ops:
        before = rate.rate
        if op == "success":
            rate.on_success()
            assert rate.rate >= before
        elif op == "throttle":
            # A call that started `seconds` ago.
            started = clock() - seconds
            if rate.on_throttle(started):
                assert not accepted or started > accepted[-1]
                accepted.append(clock())
            else:
                assert accepted
                assert started <= accepted[-1]
                assert rate.rate == before
            assert rate.rate <= before
        else:
            clock.advance(seconds)
        assert MIN_RATE <= rate.rate <= max_rate
    assert all(a <= b for a, b in itertools.pairwise(accepted))


def test_a_throttle_never_raises_the_rate_above_a_cap_below_the_floor(clock: FakeClock) -> None:
    cap = MIN_RATE / 5  # --rate-limit accepts any rate above 0
    rate = AdaptiveRate(cap, clock=clock)
    rate.on_throttle(clock())
    assert rate.rate <= cap


def test_take_report_is_silent_until_the_rate_moves_materially(clock: FakeClock) -> None:
    rate = AdaptiveRate(20.0, clock=clock)
    assert rate.take_report() is None
    rate.on_throttle(clock())
    throttle_fresh(rate, clock)
    reported = rate.take_report()
    assert reported == rate.rate
    assert reported < 20.0
    # Reported once; a small recovery is not news.
    assert rate.take_report() is None
    rate.on_success()
    assert rate.take_report() is None


def test_take_report_announces_the_recovery_to_the_cap(clock: FakeClock) -> None:
    rate = AdaptiveRate(20.0, clock=clock)
    for _ in range(3):
        throttle_fresh(rate, clock)
    assert rate.take_report() is not None
    while rate.rate < 20.0:
        rate.on_success()
    assert rate.take_report() == 20.0
    assert rate.take_report() is None


# -- Pacer -----------------------------------------------------------------------------------


async def grants(pacer: Pacer, clock: FakeClock, count: int) -> list[float]:
    """Start `count` acquirers together; return the (virtual) times they were let through."""
    times: list[float] = []

    async def one() -> None:
        await pacer.acquire()
        times.append(clock())

    async with anyio.create_task_group() as tg:
        for _ in range(count):
            tg.start_soon(one)
    return times


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


async def test_the_pacer_lets_the_first_call_through_at_once_and_spaces_the_rest(
    clock: FakeClock, sleep: VirtualSleep
) -> None:
    pacer = Pacer(AdaptiveRate(4.0, clock=clock), clock=clock)
    times = await grants(pacer, clock, 6)
    assert times[0] == START
    assert gaps(times) == pytest.approx([1 / 4.0] * 5)
    assert pacer.waiting == 0


async def test_an_idle_pacer_does_not_bank_slots_for_a_burst(
    clock: FakeClock, sleep: VirtualSleep
) -> None:
    pacer = Pacer(AdaptiveRate(4.0, clock=clock), clock=clock)
    await grants(pacer, clock, 2)
    clock.advance(60.0)
    resumed_at = clock()
    times = await grants(pacer, clock, 4)
    assert times[0] == resumed_at
    assert gaps(times) == pytest.approx([1 / 4.0] * 3)


async def test_a_slowdown_spaces_the_waiters_that_reach_the_head_after_it(
    clock: FakeClock, sleep: VirtualSleep
) -> None:
    rate = AdaptiveRate(10.0, clock=clock)
    pacer = Pacer(rate, clock=clock)

    def throttle_once() -> None:
        sleep.on_sleep = None
        rate.on_throttle(clock())

    # The throttle lands while the second waiter sleeps towards the slot it already holds.
    sleep.on_sleep = throttle_once
    times = await grants(pacer, clock, 4)
    slowed = 10.0 * DECREASE_FACTOR
    assert gaps(times) == pytest.approx([1 / 10.0, 1 / slowed, 1 / slowed])


async def test_a_faster_rate_shortens_the_gap_after_the_next_call(
    clock: FakeClock, sleep: VirtualSleep
) -> None:
    rate = AdaptiveRate(10.0, clock=clock)
    for _ in range(3):
        throttle_fresh(rate, clock)
    pacer = Pacer(rate, clock=clock)
    slow = rate.rate
    first = await grants(pacer, clock, 2)
    while rate.rate < 10.0:
        rate.on_success()
    later = await grants(pacer, clock, 3)
    assert gaps(first) == pytest.approx([1 / slow])
    # The slot of the first of these was reserved at the slow rate; the rest use the new one.
    assert later[0] - first[-1] == pytest.approx(1 / slow)
    assert gaps(later) == pytest.approx([1 / 10.0] * 2)


# -- KeyedSpacing ----------------------------------------------------------------------------


async def test_a_call_to_one_user_does_not_delay_another(
    clock: FakeClock, sleep: VirtualSleep
) -> None:
    spacing = KeyedSpacing(5.0, clock=clock)
    spacing.mark("alice")
    await spacing.wait("bob")
    assert sleep.delays == []


async def test_a_first_call_to_a_user_does_not_wait(clock: FakeClock, sleep: VirtualSleep) -> None:
    spacing = KeyedSpacing(5.0, clock=clock)
    await spacing.wait("alice")
    assert sleep.delays == []


async def test_calls_to_one_user_are_spaced_by_the_interval(
    clock: FakeClock, sleep: VirtualSleep
) -> None:
    spacing = KeyedSpacing(5.0, clock=clock)
    called: list[float] = []
    for _ in range(4):
        await spacing.wait("alice")
        called.append(clock())
        spacing.mark("alice")
    assert called[0] == START
    assert gaps(called) == pytest.approx([1 / 5.0] * 3)


async def test_calls_marked_meanwhile_push_the_next_one_back(
    clock: FakeClock, sleep: VirtualSleep
) -> None:
    spacing = KeyedSpacing(5.0, clock=clock)
    # Two calls went out together (released close together by the region pacer).
    spacing.mark("alice")
    spacing.mark("alice")
    await spacing.wait("alice")
    assert clock() - START == pytest.approx(2 / 5.0)


async def test_a_user_who_waited_long_enough_goes_at_once(
    clock: FakeClock, sleep: VirtualSleep
) -> None:
    spacing = KeyedSpacing(5.0, clock=clock)
    spacing.mark("alice")
    clock.advance(1 / 5.0)
    await spacing.wait("alice")
    assert sleep.delays == []


def test_idle_users_are_forgotten_so_memory_stays_bounded(clock: FakeClock) -> None:
    spacing = KeyedSpacing(5.0, clock=clock)
    idle = USER_PRUNE_EVERY // 2
    for n in range(idle):
        spacing.mark(("idle", n))
    assert len(spacing) == idle
    clock.advance(USER_IDLE_FORGET_S + 1.0)
    active = USER_PRUNE_EVERY - idle
    for n in range(active):
        spacing.mark(("active", n))
    # The prune ran on the last mark: only the recently active users are left.
    assert len(spacing) == active


def test_recently_active_users_are_not_forgotten(clock: FakeClock) -> None:
    spacing = KeyedSpacing(5.0, clock=clock)
    for n in range(USER_PRUNE_EVERY):
        spacing.mark(n)
    assert len(spacing) == USER_PRUNE_EVERY
