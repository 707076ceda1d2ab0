"""Pacing: the region pacer and the per-user spacing.

Time is virtual: a fake clock, and an `anyio.sleep` that records the delay asked for and moves
the clock by exactly that much, so schedules are checked as numbers, never against a wall clock.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import anyio
import anyio.lowlevel
import pytest

from worker.pacing import USER_IDLE_FORGET_S, USER_PRUNE_EVERY, KeyedSpacing, Pacer

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


class SettableRate:
    """A rate source the test sets by hand (the worker's is worker.rate_control)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate


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
    pacer = Pacer(SettableRate(4.0), clock=clock)
    times = await grants(pacer, clock, 6)
    assert times[0] == START
    assert gaps(times) == pytest.approx([1 / 4.0] * 5)
    assert pacer.waiting == 0


async def test_an_idle_pacer_does_not_bank_slots_for_a_burst(
    clock: FakeClock, sleep: VirtualSleep
) -> None:
    pacer = Pacer(SettableRate(4.0), clock=clock)
    await grants(pacer, clock, 2)
    clock.advance(60.0)
    resumed_at = clock()
    times = await grants(pacer, clock, 4)
    assert times[0] == resumed_at
    assert gaps(times) == pytest.approx([1 / 4.0] * 3)


async def test_a_slowdown_spaces_the_waiters_that_reach_the_head_after_it(
    clock: FakeClock, sleep: VirtualSleep
) -> None:
    rate = SettableRate(10.0)
    pacer = Pacer(rate, clock=clock)
    slowed = 7.0

    def slow_down_once() -> None:
        sleep.on_sleep = None
        rate.rate = slowed

    # The slowdown lands while the second waiter sleeps towards the slot it already holds.
    sleep.on_sleep = slow_down_once
    times = await grants(pacer, clock, 4)
    assert gaps(times) == pytest.approx([1 / 10.0, 1 / slowed, 1 / slowed])


async def test_a_faster_rate_shortens_the_gap_after_the_next_call(
    clock: FakeClock, sleep: VirtualSleep
) -> None:
    slow = 3.0
    rate = SettableRate(slow)
    pacer = Pacer(rate, clock=clock)
    first = await grants(pacer, clock, 2)
    rate.rate = 10.0
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
