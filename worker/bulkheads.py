"""The held-message budget, partitioned by scope so that no scope can take it all.

The process holds at most ``max_held`` messages: received and not yet settled with SQS. A
message waiting for its batched delete still counts, so a slow DeleteMessageBatch cannot grow
memory. Within that budget:

- a scope that cannot move now (a paused pool or region, a region in an outage) keeps only
  ``STALLED_HOLD`` messages: enough to probe with;
- once the budget is nearly full, a user keeps what Cognito's per-user limit lets it call in
  ``USER_HOLD_S``, no region holds more than an even share of the budget among the regions
  holding messages, and no pool more than an even share of its region's; a scope holding no
  more than a stalled one may is left out of the split. Below that the
  budget is work-conserving: one region, pool or user alone may use all of it, so a healthy
  backlog is never parked for nothing.

On an SQS fair queue the tenant is the message group, and SQS itself delivers a quiet
group's messages ahead of a noisy group's backlog, so a group is never parked for its share:
that would only spin the backlog through the queue. The scheduler still shares the calls.

A message beyond its scope's share is parked: handed back to SQS with a visibility delay that
matches when its scope can next move, so it waits in the queue, not in memory. Parking is
never a failed attempt. The receiver backs off while most of what it receives is parked, so
a queue full of one stalled scope's messages is not spun through.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TypeVar

import anyio

from worker.outcome import Scope

# A user holds what Cognito's per-user limit lets it call in this many seconds.
USER_HOLD_S = 1.0
# The budget counts as nearly full with less than one receive batch of room left.
NEARLY_FULL_ROOM = 10
# An even share is never less than this, so a slow scope still has work ready.
MIN_SCOPE_HOLD = 4
# A stalled scope keeps this many: a probe, and one to take over from it.
STALLED_HOLD = 2
# A park is at least one second (SQS counts visibility in whole seconds) and at most this.
MAX_PARK_S = 300
# The receiver looks at this many recent admissions to tell whether it is spinning...
RECENT_ADMISSIONS = 20
# ...and pauses while at least this fraction of them was parked, doubling up to the cap.
SPIN_PARKED_FRACTION = 0.8
SPIN_BACKOFF_BASE_S = 0.25
SPIN_BACKOFF_CAP_S = 5.0

_K = TypeVar("_K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class ScopesOf:
    """The scopes one message belongs to."""

    region: str
    pool: str
    tenant: Hashable
    user: Hashable
    # The tenant is a fair queue's message group, which SQS already delivers fairly.
    fair_queue_group: bool = False


@dataclass(frozen=True, slots=True)
class Park:
    """Hand the message back for `seconds`, because of `reason` (a bounded metric label)."""

    seconds: int
    reason: str


@dataclass(frozen=True, slots=True)
class Stall:
    """A scope of the message that cannot move now, and for how long."""

    scope: Scope
    for_s: float


class HeldBudget:
    """Counts what the process holds, in all and per scope, and says what to park."""

    def __init__(self, total: int, *, user_rate: float) -> None:
        self.total = total
        # The receiver takes room for each message it asks for; the handler gives it back
        # once the message is settled with SQS.
        self.room = anyio.Semaphore(total)
        self._user_cap = max(1, math.ceil(user_rate * USER_HOLD_S))
        self._user_rate = user_rate
        self._regions: Counter[str] = Counter()
        self._pools: Counter[str] = Counter()
        self._tenants: Counter[tuple[str, Hashable]] = Counter()
        self._users: Counter[Hashable] = Counter()
        self._recent: deque[bool] = deque(maxlen=RECENT_ADMISSIONS)
        self._spins = 0

    def admit(self, scopes: ScopesOf, *, region_rate: float, stall: Stall | None) -> Park | None:
        """None to hold the message (it is then counted until `leave`), else how to park it.

        `stall` names a scope of the message that cannot move now, if any.
        """
        park = self._park_for(scopes, region_rate, stall)
        self._recent.append(park is not None)
        if park is not None:
            return park
        self._regions[scopes.region] += 1
        self._pools[scopes.pool] += 1
        self._tenants[(scopes.region, scopes.tenant)] += 1
        self._users[scopes.user] += 1
        return None

    def leave(self, scopes: ScopesOf) -> None:
        _decrement(self._regions, scopes.region)
        _decrement(self._pools, scopes.pool)
        _decrement(self._tenants, (scopes.region, scopes.tenant))
        _decrement(self._users, scopes.user)

    def held_in(self, region: str) -> int:
        return self._regions[region]

    def receive_pause_s(self) -> float:
        """How long the receiver waits before its next receive: 0 unless it is spinning."""
        if len(self._recent) < RECENT_ADMISSIONS or (
            sum(self._recent) < SPIN_PARKED_FRACTION * len(self._recent)
        ):
            self._spins = 0
            return 0.0
        self._spins += 1
        self._recent.clear()
        return min(SPIN_BACKOFF_CAP_S, SPIN_BACKOFF_BASE_S * 2.0 ** (self._spins - 1))

    def _park_for(self, scopes: ScopesOf, region_rate: float, stall: Stall | None) -> Park | None:
        region_held = self._regions[scopes.region]
        if stall is not None:
            held = {
                Scope.POOL: self._pools[scopes.pool],
                Scope.REGION: region_held,
            }.get(stall.scope, sum(self._regions.values()))
            if held < STALLED_HOLD:
                return None
            return Park(_whole_seconds(stall.for_s), f"{stall.scope.value}_stalled")
        if sum(self._regions.values()) < self.total - NEARLY_FULL_ROOM:
            return None
        user_held = self._users[scopes.user]
        if user_held >= self._user_cap:
            # The user's turn comes at its per-user rate behind those already held.
            wait = (user_held - self._user_cap + 1) / self._user_rate
            return Park(_whole_seconds(wait), "user_share")
        region_share = _even_share(self.total, self._regions, scopes.region)
        tenant = (scopes.region, scopes.tenant)
        tenants = Counter({k: n for k, n in self._tenants.items() if k[0] == scopes.region})
        tenant_share = _even_share(region_held + 1, tenants, tenant)
        over_region = region_held >= max(MIN_SCOPE_HOLD, region_share)
        over_tenant = self._tenants[tenant] >= max(MIN_SCOPE_HOLD, tenant_share)
        if over_region or (len(tenants) > 1 and over_tenant and not scopes.fair_queue_group):
            # Its turn comes once what its region already holds has been called.
            wait = region_held / max(region_rate, 1e-3)
            return Park(_whole_seconds(wait), "region_share" if over_region else "tenant_share")
        return None


def _even_share(total: int, held: Counter[_K], own: _K) -> int:
    """`own`'s even share of `total` among the scopes that hold more than a stalled scope may.

    A scope holding no more than STALLED_HOLD (a stalled one, or one just starting) keeps what
    it holds and is not counted: a paused pool or a region in an outage must not halve the
    healthy scopes' shares, and a newcomer is admitted below its share anyway.
    """
    others = [n for key, n in held.items() if key != own]
    small = sum(n for n in others if n <= STALLED_HOLD)
    sharing = 1 + sum(1 for n in others if n > STALLED_HOLD)
    return (total - small) // sharing


def _decrement(counter: Counter[_K], key: _K) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]


def _whole_seconds(seconds: float) -> int:
    return max(1, min(MAX_PARK_S, math.ceil(seconds)))
