"""A region's call slots: granted at its rate, round-robin across tenants and users, and
never to a user faster than the per-user limit. Time is virtual (tests/support/virtual_time)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence

import anyio
import anyio.lowlevel
import pytest

from tests.support.virtual_time import START, FakeClock, VirtualSleep, gaps
from worker.scheduler import RegionScheduler

USER_INTERVAL_S = 0.1  # Cognito's ~10 writes per second to one user


class SettableRate:
    """A rate source the test sets by hand (the worker's is worker.rate_control)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate


def scheduler(clock: FakeClock, rate: float = 4.0, **kwargs: float) -> RegionScheduler:
    interval = kwargs.get("user_interval_s", USER_INTERVAL_S)
    return RegionScheduler(SettableRate(rate), user_interval_s=interval, clock=clock)


async def grants(
    slots: RegionScheduler,
    clock: FakeClock,
    sleep: VirtualSleep,
    who: Sequence[tuple[Hashable, Hashable]],
) -> list[tuple[float, Hashable, Hashable]]:
    """Queue every (tenant, user) of `who` in order, all before time moves; return
    (time, tenant, user) in the order they were granted."""
    granted: list[tuple[float, Hashable, Hashable]] = []

    async def one(tenant: Hashable, user: Hashable) -> None:
        await slots.turn(tenant, user)
        granted.append((clock(), tenant, user))

    sleep.hold = anyio.Event()
    async with anyio.create_task_group() as tg:
        for tenant, user in who:
            tg.start_soon(one, tenant, user)
            # Let it queue before the next one, so arrival order is the list's order.
            await anyio.lowlevel.checkpoint()
        sleep.hold.set()
    sleep.hold = None
    return granted


def distinct_users(count: int, tenant: str = "pool-a") -> list[tuple[Hashable, Hashable]]:
    return [(tenant, f"user-{i}") for i in range(count)]


async def test_the_first_call_goes_at_once_and_the_rest_at_the_rate(
    clock: FakeClock, sleep: VirtualSleep
) -> None:
    slots = scheduler(clock, rate=4.0)
    times = [t for t, _, _ in await grants(slots, clock, sleep, distinct_users(6))]
    assert times[0] == START
    assert gaps(times) == pytest.approx([1 / 4.0] * 5)
    assert slots.waiting == 0


async def test_an_idle_region_does_not_bank_slots_for_a_burst(
    clock: FakeClock, sleep: VirtualSleep
) -> None:
    slots = scheduler(clock, rate=4.0)
    await grants(slots, clock, sleep, distinct_users(2))
    clock.advance(60.0)
    resumed_at = clock()
    times = [t for t, _, _ in await grants(slots, clock, sleep, distinct_users(4))]
    assert times[0] == resumed_at
    assert gaps(times) == pytest.approx([1 / 4.0] * 3)


async def test_a_late_wake_up_does_not_lower_the_rate(
    clock: FakeClock, sleep: VirtualSleep
) -> None:
    slots = scheduler(clock, rate=4.0)
    sleep.late_s = 0.01  # every wake-up 10 ms late, as on a busy event loop

    times = [t for t, _, _ in await grants(slots, clock, sleep, distinct_users(9))]

    # Eight intervals at the rate: the lag of each wake-up is not added to the next slot.
    assert times[-1] - times[0] == pytest.approx(8 / 4.0, abs=0.011)


async def test_a_slowdown_spaces_the_slots_after_the_one_already_scheduled(
    clock: FakeClock, sleep: VirtualSleep
) -> None:
    rate = SettableRate(10.0)
    slots = RegionScheduler(rate, user_interval_s=USER_INTERVAL_S, clock=clock)

    def slow_down_once() -> None:
        sleep.on_sleep = None
        rate.rate = 7.0

    sleep.on_sleep = slow_down_once
    times = [t for t, _, _ in await grants(slots, clock, sleep, distinct_users(4))]
    assert gaps(times) == pytest.approx([1 / 10.0, 1 / 7.0, 1 / 7.0])


async def test_slots_go_round_robin_across_tenants_whatever_their_backlog(
    clock: FakeClock, sleep: VirtualSleep
) -> None:
    # Given a busy region, and a pool's backlog of ten queued before another pool's two
    slots = scheduler(clock)
    await grants(slots, clock, sleep, [("earlier", "call")])
    queued = distinct_users(10, "backlog") + distinct_users(2, "trickle")
    order = [tenant for _, tenant, _ in await grants(slots, clock, sleep, queued)]
    # Then the trickle's calls alternate with the backlog's, not left until after its ten
    assert order[:4] == ["backlog", "trickle", "backlog", "trickle"]
    assert Counter(order) == {"backlog": 10, "trickle": 2}


async def test_slots_go_round_robin_across_the_users_of_a_tenant(
    clock: FakeClock, sleep: VirtualSleep
) -> None:
    slots = scheduler(clock, rate=100.0, user_interval_s=0.0)
    await grants(slots, clock, sleep, [("pool", "earlier")])
    queued = [("pool", "alice")] * 3 + [("pool", "bob")] * 3
    order = [user for _, _, user in await grants(slots, clock, sleep, queued)]
    assert order == ["alice", "bob", "alice", "bob", "alice", "bob"]


async def test_one_users_flood_never_goes_faster_than_the_per_user_limit_nor_holds_up_others(
    clock: FakeClock, sleep: VirtualSleep
) -> None:
    # Given one user with 20 calls waiting, then 20 other users with one each, at 100/s
    flood = [("pool", "flood")] * 20
    others = distinct_users(20, "pool")
    granted = await grants(scheduler(clock, rate=100.0), clock, sleep, flood + others)
    flood_times = [t for t, _, user in granted if user == "flood"]
    other_times = [t for t, _, user in granted if user != "flood"]
    # Then the flood user's calls are at least the per-user interval apart
    assert min(gaps(flood_times)) >= USER_INTERVAL_S - 1e-9
    # And the others are all through in their own share of the slots, not behind the flood
    assert max(other_times) - START <= 21 / 100.0 + 1e-9


async def test_when_every_waiter_is_held_back_by_its_user_limit_the_first_goes_when_free(
    clock: FakeClock, sleep: VirtualSleep
) -> None:
    slots = scheduler(clock, rate=1000.0)
    times = [t for t, _, _ in await grants(slots, clock, sleep, [("pool", "alice")] * 3)]
    assert gaps(times) == pytest.approx([USER_INTERVAL_S] * 2)


async def test_a_cancelled_waiter_frees_its_place_and_the_others_still_get_theirs(
    clock: FakeClock, sleep: VirtualSleep
) -> None:
    slots = scheduler(clock, rate=4.0)
    granted: list[str] = []

    async def one(user: str) -> None:
        await slots.turn("pool", user)
        granted.append(user)

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, "first")
        await anyio.lowlevel.checkpoint()
        with anyio.CancelScope() as cancelled:
            cancelled.cancel()
            await slots.turn("pool", "gone")
        tg.start_soon(one, "second")
    assert granted == ["first", "second"]
    assert slots.waiting == 0


async def test_the_dispatcher_role_passes_on_when_its_holder_is_cancelled(
    clock: FakeClock, sleep: VirtualSleep
) -> None:
    # Given a waiter that dispatches (it came first) and is cancelled while it sleeps
    slots = scheduler(clock, rate=1.0)
    await grants(slots, clock, sleep, [("pool", "warm-up")])
    granted: list[str] = []

    async def one(user: str) -> None:
        await slots.turn("pool", user)
        granted.append(user)

    async with anyio.create_task_group() as tg:
        with anyio.CancelScope() as first:
            sleep.on_sleep = first.cancel
            tg.start_soon(one, "after")
            await slots.turn("pool", "dispatcher")
        sleep.on_sleep = None
    # Then the other waiter still got its slot
    assert granted == ["after"]


async def test_a_waiter_that_no_longer_wants_its_call_is_passed_over_without_spending_a_slot(
    clock: FakeClock, sleep: VirtualSleep
) -> None:
    # Given a paused pool's waiters queued between another pool's, all before time moves
    slots = scheduler(clock, rate=4.0)
    paused = {"pool-b"}
    answers: list[tuple[float, Hashable, bool]] = []

    async def one(tenant: Hashable, user: Hashable) -> None:
        granted = await slots.turn(tenant, user, wanted=lambda: tenant not in paused)
        answers.append((clock(), tenant, granted))

    sleep.hold = anyio.Event()
    async with anyio.create_task_group() as tg:
        for i in range(4):
            for tenant in ("pool-a", "pool-b"):
                tg.start_soon(one, tenant, f"user-{i}")
                await anyio.lowlevel.checkpoint()
        sleep.hold.set()
    sleep.hold = None
    # Then the paused pool's were answered no, and pool-a's four took consecutive slots
    refused = [(t, tenant) for t, tenant, granted in answers if not granted]
    assert [tenant for _, tenant in refused] == ["pool-b"] * 4
    granted_times = [t for t, tenant, granted in answers if granted]
    assert [tenant for _, tenant, granted in answers if granted] == ["pool-a"] * 4
    assert granted_times[0] == START
    assert gaps(granted_times) == pytest.approx([1 / 4.0] * 3)
    assert slots.waiting == 0
