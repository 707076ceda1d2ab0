"""Ordering: one turn per key at a time, lowest order first; the newest applied verdict wins."""

from __future__ import annotations

from collections import OrderedDict

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.ordering import NewestWins, Sequencer

# Only stops a deadlocked test early; nothing here is expected to take measurable time.
DEADLOCK_GUARD_S = 10.0


async def hold_turn(sequencer: Sequencer, key: str, order: int, ran: list[int]) -> None:
    async with sequencer.turn(key, order):
        await anyio.lowlevel.checkpoint()
        ran.append(order)


# -- Sequencer -------------------------------------------------------------------------------


async def test_two_holders_of_one_key_never_overlap() -> None:
    sequencer = Sequencer()
    active = 0
    most_active = 0
    done = 0

    async def work(order: int) -> None:
        nonlocal active, most_active, done
        async with sequencer.turn("event-1", order):
            active += 1
            most_active = max(most_active, active)
            for _ in range(3):
                await anyio.lowlevel.checkpoint()
            active -= 1
            done += 1

    with anyio.fail_after(DEADLOCK_GUARD_S):
        async with anyio.create_task_group() as tg:
            for order in range(20):
                tg.start_soon(work, order % 7)
    assert done == 20
    assert most_active == 1
    assert len(sequencer) == 0


@given(st.permutations(list(range(8))))
async def test_waiters_run_lowest_order_first_whatever_order_they_arrived_in(
    arrivals: list[int],
) -> None:
    sequencer = Sequencer()
    ran: list[int] = []
    release = anyio.Event()

    async def first_holder() -> None:
        async with sequencer.turn("event-1", -1):
            await release.wait()

    with anyio.fail_after(DEADLOCK_GUARD_S):
        async with anyio.create_task_group() as tg:
            tg.start_soon(first_holder)
            await anyio.wait_all_tasks_blocked()
            for order in arrivals:
                tg.start_soon(hold_turn, sequencer, "event-1", order, ran)
                await anyio.wait_all_tasks_blocked()
            release.set()
    assert ran == sorted(arrivals)
    assert len(sequencer) == 0


async def test_a_cancelled_waiter_does_not_block_the_ones_behind_it() -> None:
    sequencer = Sequencer()
    ran: list[int] = []
    release = anyio.Event()
    quitter = anyio.CancelScope()

    async def first_holder() -> None:
        async with sequencer.turn("event-1", 0):
            await release.wait()

    async def impatient() -> None:
        with quitter:
            await hold_turn(sequencer, "event-1", 1, ran)

    with anyio.fail_after(DEADLOCK_GUARD_S):
        async with anyio.create_task_group() as tg:
            tg.start_soon(first_holder)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(impatient)
            tg.start_soon(hold_turn, sequencer, "event-1", 2, ran)
            await anyio.wait_all_tasks_blocked()
            quitter.cancel()
            await anyio.wait_all_tasks_blocked()
            release.set()
    assert ran == [2]
    assert len(sequencer) == 0


async def test_a_waiter_cancelled_as_the_turn_reaches_it_passes_the_turn_on() -> None:
    sequencer = Sequencer()
    ran: list[int] = []
    release = anyio.Event()
    quitter = anyio.CancelScope()

    async def first_holder() -> None:
        async with sequencer.turn("event-1", 0):
            await release.wait()
            # Cancelled and handed the turn in one step, before it can run.
            quitter.cancel()

    async def impatient() -> None:
        with quitter:
            await hold_turn(sequencer, "event-1", 1, ran)

    with anyio.fail_after(DEADLOCK_GUARD_S):
        async with anyio.create_task_group() as tg:
            tg.start_soon(first_holder)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(impatient)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(hold_turn, sequencer, "event-1", 2, ran)
            await anyio.wait_all_tasks_blocked()
            release.set()
    assert ran == [2]
    assert len(sequencer) == 0


async def test_a_holder_that_fails_still_hands_the_turn_on() -> None:
    sequencer = Sequencer()
    ran: list[int] = []
    release = anyio.Event()

    async def fail_in_turn() -> None:
        async with sequencer.turn("event-1", 0):
            await release.wait()
            raise RuntimeError("call failed")

    async def failing_holder() -> None:
        with pytest.raises(RuntimeError, match="call failed"):
            await fail_in_turn()

    with anyio.fail_after(DEADLOCK_GUARD_S):
        async with anyio.create_task_group() as tg:
            tg.start_soon(failing_holder)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(hold_turn, sequencer, "event-1", 1, ran)
            await anyio.wait_all_tasks_blocked()
            release.set()
    assert ran == [1]
    assert len(sequencer) == 0


async def test_distinct_keys_take_their_turns_at_the_same_time() -> None:
    sequencer = Sequencer()
    inside = {"event-1": anyio.Event(), "event-2": anyio.Event()}

    async def meet(mine: str, other: str) -> None:
        async with sequencer.turn(mine, 0):
            inside[mine].set()
            # Deadlocks unless the other key's holder is inside its turn at the same time.
            await inside[other].wait()

    with anyio.fail_after(DEADLOCK_GUARD_S):
        async with anyio.create_task_group() as tg:
            tg.start_soon(meet, "event-1", "event-2")
            tg.start_soon(meet, "event-2", "event-1")
    assert len(sequencer) == 0


async def test_a_key_is_forgotten_once_nobody_holds_or_waits_for_it() -> None:
    sequencer = Sequencer()
    async with sequencer.turn("event-1", 0):
        assert len(sequencer) == 1
    assert len(sequencer) == 0


# -- NewestWins ------------------------------------------------------------------------------


def test_nothing_is_superseded_for_an_unknown_key() -> None:
    assert not NewestWins().superseded("event-1", 100, "m-1")


def test_an_older_verdict_is_superseded_by_an_applied_newer_one() -> None:
    applied = NewestWins()
    applied.record("event-1", 200, "m-new", now=0.0)
    assert applied.superseded("event-1", 100, "m-old")


def test_a_redelivery_of_the_applied_message_is_superseded() -> None:
    applied = NewestWins()
    applied.record("event-1", 200, "m-1", now=0.0)
    assert applied.superseded("event-1", 200, "m-1")


def test_a_newer_verdict_is_not_superseded() -> None:
    applied = NewestWins()
    applied.record("event-1", 200, "m-1", now=0.0)
    assert not applied.superseded("event-1", 300, "m-2")


def test_a_different_verdict_sent_in_the_same_millisecond_is_not_superseded() -> None:
    applied = NewestWins()
    applied.record("event-1", 200, "m-1", now=0.0)
    assert not applied.superseded("event-1", 200, "m-2")


def test_recording_an_older_verdict_keeps_the_newer_one() -> None:
    applied = NewestWins()
    applied.record("event-1", 300, "m-new", now=0.0)
    applied.record("event-1", 100, "m-old", now=0.0)
    assert applied.superseded("event-1", 200, "m-middle")


def test_keys_are_independent() -> None:
    applied = NewestWins()
    applied.record("event-1", 300, "m-1", now=0.0)
    assert not applied.superseded("event-2", 100, "m-2")


def test_the_least_recently_recorded_key_is_forgotten_past_capacity() -> None:
    applied = NewestWins(capacity=3)
    for key in ("a", "b", "c"):
        applied.record(key, 100, f"m-{key}", now=0.0)
    applied.record("a", 100, "m-a", now=0.0)  # "a" is recent again; "b" is now the oldest
    applied.record("d", 100, "m-d", now=0.0)
    assert len(applied) == 3
    assert not applied.superseded("b", 50, "m-x")
    for key in ("a", "c", "d"):
        assert applied.superseded(key, 50, "m-x")


_RECORDS = st.lists(
    st.tuples(st.sampled_from("abcdefgh"), st.integers(min_value=0, max_value=50)),
    max_size=60,
)


@given(capacity=st.integers(min_value=1, max_value=6), records=_RECORDS)
def test_newest_wins_matches_a_bounded_newest_per_key_model(
    capacity: int, records: list[tuple[str, int]]
) -> None:
    applied = NewestWins(capacity)
    model: OrderedDict[str, int] = OrderedDict()
    for n, (key, sent_at) in enumerate(records):
        applied.record(key, sent_at, f"m-{n}", now=0.0)
        model[key] = max(sent_at, model.get(key, sent_at))
        model.move_to_end(key)
        while len(model) > capacity:
            model.popitem(last=False)
        assert len(applied) <= capacity
        assert applied.superseded(key, sent_at, f"m-{n}")
    assert len(applied) == len(model)
    for key in "abcdefgh":
        for sent_at in range(-1, 52):
            expected = key in model and model[key] > sent_at
            assert applied.superseded(key, sent_at, "m-query") == expected
