"""Pacing: the per-user spacing of calls.

Time is virtual: a fake clock, and an `anyio.sleep` that records the delay asked for and moves
the clock by exactly that much, so schedules are checked as numbers, never against a wall clock.
"""

from __future__ import annotations

import pytest

from tests.support.virtual_time import START, FakeClock, VirtualSleep, gaps
from worker.pacing import USER_IDLE_FORGET_S, USER_PRUNE_EVERY, KeyedSpacing


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
