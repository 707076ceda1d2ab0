"""The held-message budget: what a scope may hold, and what is parked instead."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.bulkheads import (
    MAX_PARK_S,
    MIN_SCOPE_HOLD,
    NEARLY_FULL_ROOM,
    RECENT_ADMISSIONS,
    SPIN_BACKOFF_BASE_S,
    SPIN_BACKOFF_CAP_S,
    STALLED_HOLD,
    USER_HOLD_S,
    HeldBudget,
    Park,
    ScopesOf,
    Stall,
)
from worker.outcome import Scope

TOTAL = 50
USER_RATE = 10.0
REGION_RATE = 20.0
USER_CAP = math.ceil(USER_RATE * USER_HOLD_S)


def _scopes(
    region: str = "us-east-1", pool: str = "p1", tenant: str | None = None, user: str = "u"
) -> ScopesOf:
    return ScopesOf(region=region, pool=pool, tenant=tenant or pool, user=(pool, user))


def _fill(budget: HeldBudget, count: int, **where: str) -> None:
    """Hold `count` messages of distinct users in one scope; each must be held."""
    for i in range(count):
        assert (
            budget.admit(_scopes(user=f"fill-{i}", **where), region_rate=REGION_RATE, stall=None)
            is None
        )


def _budget() -> HeldBudget:
    return HeldBudget(TOTAL, user_rate=USER_RATE)


def test_below_nearly_full_one_user_alone_may_use_the_budget() -> None:
    budget = _budget()
    one_user = _scopes(user="alice")
    for _ in range(TOTAL - NEARLY_FULL_ROOM):
        assert budget.admit(one_user, region_rate=REGION_RATE, stall=None) is None
    assert budget.held_in("us-east-1") == TOTAL - NEARLY_FULL_ROOM


@pytest.mark.parametrize(
    ("scope", "other", "other_is_held"),
    [
        pytest.param(Scope.POOL, _scopes(pool="p2"), True, id="pool-stalled-another-pool-moves"),
        pytest.param(
            Scope.REGION, _scopes(region="eu-west-1"), True, id="region-stalled-another-moves"
        ),
        pytest.param(
            Scope.WORKER, _scopes(region="eu-west-1"), False, id="worker-stalled-nothing-moves"
        ),
    ],
)
def test_a_stalled_scope_keeps_only_enough_to_probe_with(
    scope: Scope, other: ScopesOf, other_is_held: bool
) -> None:
    budget = _budget()
    stall = Stall(scope, for_s=7.2)
    stalled = _scopes(pool="p1")
    for i in range(STALLED_HOLD):
        assert budget.admit(_scopes(pool="p1", user=f"s{i}"), region_rate=1.0, stall=stall) is None
    assert budget.admit(stalled, region_rate=1.0, stall=stall) == Park(8, f"{scope.value}_stalled")
    # A message outside the stalled scope is admitted with no stall of its own, but the
    # worker's stall is every message's.
    other_stall = stall if scope is Scope.WORKER else None
    assert (budget.admit(other, region_rate=1.0, stall=other_stall) is None) is other_is_held


@pytest.mark.parametrize(
    ("for_s", "seconds"),
    [(0.0, 1), (0.2, 1), (1.0, 1), (1.01, 2), (MAX_PARK_S + 0.5, MAX_PARK_S), (1e9, MAX_PARK_S)],
)
def test_a_park_is_whole_seconds_between_one_and_the_cap(for_s: float, seconds: int) -> None:
    budget = _budget()
    stall = Stall(Scope.REGION, for_s=for_s)
    _fill(budget, STALLED_HOLD)
    assert budget.admit(_scopes(), region_rate=1.0, stall=stall) == Park(seconds, "region_stalled")


def test_a_stall_of_one_pool_does_not_count_what_other_pools_hold() -> None:
    budget = _budget()
    _fill(budget, 20, pool="p2")
    stall = Stall(Scope.POOL, for_s=3)
    assert budget.admit(_scopes(pool="p1"), region_rate=1.0, stall=stall) is None


def test_nearly_full_a_user_keeps_what_its_per_user_rate_calls_in_a_second() -> None:
    budget = _budget()
    _fill(budget, TOTAL - NEARLY_FULL_ROOM - USER_CAP)
    alice = _scopes(user="alice")
    for _ in range(USER_CAP):
        assert budget.admit(alice, region_rate=REGION_RATE, stall=None) is None
    park = budget.admit(alice, region_rate=REGION_RATE, stall=None)
    assert park == Park(1, "user_share")
    assert budget.admit(_scopes(user="bob"), region_rate=REGION_RATE, stall=None) is None


def test_nearly_full_a_region_keeps_an_even_share_and_a_newcomer_gets_in() -> None:
    budget = _budget()
    _fill(budget, TOTAL - NEARLY_FULL_ROOM, region="us-east-1")
    # Alone, the region may go on filling the budget.
    assert budget.admit(_scopes(user="x"), region_rate=REGION_RATE, stall=None) is None
    # Another region is admitted: it holds less than its even share. Once it holds more than
    # a stalled scope may, it counts in the split.
    for i in range(STALLED_HOLD + 1):
        newcomer = _scopes(region="eu-west-1", pool="p9", user=f"n{i}")
        assert budget.admit(newcomer, region_rate=REGION_RATE, stall=None) is None
    # Now the first one is over its half and waits for what it holds to be called.
    held = budget.held_in("us-east-1")
    park = budget.admit(_scopes(user="y"), region_rate=REGION_RATE, stall=None)
    assert park == Park(math.ceil(held / REGION_RATE), "region_share")


def test_nearly_full_a_tenant_keeps_an_even_share_of_its_region() -> None:
    budget = _budget()
    _fill(budget, TOTAL - NEARLY_FULL_ROOM, tenant="big")
    for i in range(STALLED_HOLD + 1):
        small = _scopes(tenant="small", user=f"s{i}")
        assert budget.admit(small, region_rate=REGION_RATE, stall=None) is None
    held = budget.held_in("us-east-1")
    park = budget.admit(_scopes(tenant="big", user="y"), region_rate=REGION_RATE, stall=None)
    assert park == Park(math.ceil(held / REGION_RATE), "tenant_share")
    assert (
        budget.admit(_scopes(tenant="small", user="z"), region_rate=REGION_RATE, stall=None) is None
    )


def test_a_stalled_region_does_not_cut_the_healthy_regions_shares() -> None:
    budget = _budget()
    down = _scopes(region="ap-southeast-2", pool="p3")
    stall = Stall(Scope.REGION, 30.0)
    for i in range(STALLED_HOLD):
        probe = _scopes(region="ap-southeast-2", pool="p3", user=f"d{i}")
        assert budget.admit(probe, region_rate=REGION_RATE, stall=stall) is None
    assert budget.admit(down, region_rate=REGION_RATE, stall=stall) is not None

    # Two healthy regions split what the stalled one leaves, half each, not a third.
    half = (TOTAL - STALLED_HOLD) // 2
    _fill(budget, half, region="us-east-1", pool="p1")
    _fill(budget, half, region="eu-west-1", pool="p2")
    over = _scopes(region="us-east-1", pool="p1", user="over")
    assert budget.admit(over, region_rate=REGION_RATE, stall=None) == Park(
        math.ceil(half / REGION_RATE), "region_share"
    )


def test_a_share_is_never_below_the_minimum_a_slow_scope_needs() -> None:
    budget = HeldBudget(NEARLY_FULL_ROOM + 2, user_rate=USER_RATE)
    # Nearly full from the start: a tiny budget shared by many regions still lets each hold
    # MIN_SCOPE_HOLD before it is parked.
    for region in ("r1", "r2", "r3"):
        for i in range(MIN_SCOPE_HOLD):
            scopes = _scopes(region=region, pool=region, user=f"u{i}")
            assert budget.admit(scopes, region_rate=REGION_RATE, stall=None) is None
    over = _scopes(region="r1", pool="r1", user="more")
    assert budget.admit(over, region_rate=REGION_RATE, stall=None) is not None


def test_leaving_gives_the_scope_its_room_back() -> None:
    budget = _budget()
    stall = Stall(Scope.POOL, for_s=5)
    held = [_scopes(user=f"s{i}") for i in range(STALLED_HOLD)]
    for scopes in held:
        assert budget.admit(scopes, region_rate=1.0, stall=stall) is None
    assert budget.admit(_scopes(user="late"), region_rate=1.0, stall=stall) is not None
    budget.leave(held[0])
    assert budget.held_in("us-east-1") == STALLED_HOLD - 1
    assert budget.admit(_scopes(user="late"), region_rate=1.0, stall=stall) is None


def test_the_receiver_backs_off_while_it_mostly_parks_and_resets_when_it_does_not() -> None:
    budget = _budget()
    stall = Stall(Scope.WORKER, for_s=30)
    _fill(budget, STALLED_HOLD)
    pauses = []
    for _ in range(8):
        for _ in range(RECENT_ADMISSIONS):
            assert budget.admit(_scopes(user="p"), region_rate=1.0, stall=stall) is not None
        pauses.append(budget.receive_pause_s())
    assert pauses == [
        min(SPIN_BACKOFF_CAP_S, SPIN_BACKOFF_BASE_S * 2**i) for i in range(len(pauses))
    ]
    assert pauses[-1] == SPIN_BACKOFF_CAP_S
    # Mostly held again: no pause, and the next spin starts from the base.
    for scopes in [_scopes(pool=f"free-{i}") for i in range(RECENT_ADMISSIONS)]:
        budget.leave(_scopes(user="fill-0"))
        assert budget.admit(scopes, region_rate=1.0, stall=None) is None
    assert budget.receive_pause_s() == 0.0
    for _ in range(RECENT_ADMISSIONS):
        budget.admit(_scopes(user="p"), region_rate=1.0, stall=stall)
    assert budget.receive_pause_s() == SPIN_BACKOFF_BASE_S


def test_too_few_admissions_to_judge_never_pause_the_receiver() -> None:
    budget = _budget()
    stall = Stall(Scope.WORKER, for_s=30)
    parked = [
        budget.admit(_scopes(user="p"), region_rate=1.0, stall=stall)
        for _ in range(RECENT_ADMISSIONS - 1)
    ]
    assert parked.count(None) == STALLED_HOLD
    assert budget.receive_pause_s() == 0.0


_REGIONS = st.sampled_from(["us-east-1", "eu-west-1", "ap-southeast-2"])
_POOLS = st.sampled_from(["p1", "p2", "p3"])
_USERS = st.sampled_from(["a", "b", "c", "d"])
_STALLS = st.none() | st.builds(
    Stall,
    st.sampled_from([Scope.POOL, Scope.REGION, Scope.WORKER]),
    st.floats(min_value=0, max_value=10_000, allow_nan=False),
)
_ADMISSIONS = st.tuples(
    st.builds(_scopes, region=_REGIONS, pool=_POOLS, user=_USERS),
    st.floats(min_value=0, max_value=1000, allow_nan=False),
    _STALLS,
)


@given(st.lists(st.tuples(_ADMISSIONS, st.booleans()), max_size=200))
def test_any_sequence_keeps_the_budget_s_promises(
    steps: list[tuple[tuple[ScopesOf, float, Stall | None], bool]],
) -> None:
    budget = _budget()
    held: list[ScopesOf] = []
    for (scopes, region_rate, stall), leave_one in steps:
        if leave_one and held:
            budget.leave(held.pop(0))
        total_before = len(held)
        park = budget.admit(scopes, region_rate=region_rate, stall=stall)
        if park is None:
            held.append(scopes)
        else:
            assert 1 <= park.seconds <= MAX_PARK_S
        if stall is None and total_before < TOTAL - NEARLY_FULL_ROOM:
            assert park is None, "below nearly full, an unstalled message is always held"
        if stall is not None:
            in_scope = {
                Scope.POOL: sum(h.pool == scopes.pool for h in held[:total_before]),
                Scope.REGION: sum(h.region == scopes.region for h in held[:total_before]),
            }.get(stall.scope, total_before)
            assert (park is None) == (in_scope < STALLED_HOLD)
        for region in ("us-east-1", "eu-west-1", "ap-southeast-2"):
            assert budget.held_in(region) == sum(h.region == region for h in held)


def test_a_fair_queue_group_is_never_parked_for_its_share_sqs_delivers_groups_fairly() -> None:
    budget = _budget()
    for i in range(TOTAL - NEARLY_FULL_ROOM):
        scopes = ScopesOf("us-east-1", "p1", ("group", "big"), ("p1", f"u{i}"), True)
        assert budget.admit(scopes, region_rate=REGION_RATE, stall=None) is None
    small = ScopesOf("us-east-1", "p1", ("group", "small"), ("p1", "s"), True)
    assert budget.admit(small, region_rate=REGION_RATE, stall=None) is None
    big = ScopesOf("us-east-1", "p1", ("group", "big"), ("p1", "more"), True)
    assert budget.admit(big, region_rate=REGION_RATE, stall=None) is None
