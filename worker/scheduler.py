"""A region's call slots: granted at the rate it allows, and shared fairly.

Cognito's quota is per region, so every call to a region waits for a slot there, spaced at
the rate the region allows (worker.rate_control). Slots go round-robin across the tenants
with work waiting (a fair queue's message group, or else the user pool) and, within a
tenant, across its users: deficit round-robin where every call costs the same. A user is
passed over while Cognito's per-user limit (about 10 writes per second) still holds it back,
so one pool's backlog cannot starve another pool's trickle, and one user's flood holds up
nobody else. A waiter that no longer wants its call when its turn comes (its pool was paused
meanwhile) is woken without a slot, so a paused scope spends none of the region's rate.

There is no background task: a waiter that finds nobody dispatching becomes the dispatcher,
grants slots in turn (its own among them), and hands the role on when it leaves.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import anyio

from worker.pacing import RateSource

# A dispatcher woken up to this late (event-loop lag) still grants from the slot it slept
# for, so lag does not lower the rate; a later slot (an idle region) starts afresh from now,
# so no burst is banked.
LATE_WAKE_S = 0.05
# Users whose spacing ended this long ago are forgotten, once there are this many.
USER_MEMORY_LIMIT = 4096
USER_FORGET_AFTER_S = 10.0

Clock = Callable[[], float]


def _always() -> bool:
    return True


@dataclass(eq=False)
class _Waiter:
    tenant: Hashable
    user: Hashable
    wanted: Callable[[], bool] = _always
    granted: bool = False
    answered: bool = False  # granted, or passed over because it no longer wanted a slot
    wake: anyio.Event = field(default_factory=anyio.Event)


class RegionScheduler:
    """Round-robin call slots of one region, at its rate, with per-user spacing."""

    def __init__(
        self, rate: RateSource, *, user_interval_s: float, clock: Clock = time.monotonic
    ) -> None:
        self._rate = rate
        self._user_interval_s = user_interval_s
        self._clock = clock
        self._queues: OrderedDict[Hashable, OrderedDict[Hashable, deque[_Waiter]]] = OrderedDict()
        self._user_next: dict[Hashable, float] = {}
        self._next_slot = clock()
        self._dispatching = False
        self.waiting = 0

    async def turn(
        self, tenant: Hashable, user: Hashable, *, wanted: Callable[[], bool] = _always
    ) -> bool:
        """Wait until this region grants a call to `user` of `tenant`: True. False, with no
        slot spent, if `wanted` (asked when the turn comes) says the call is no longer wanted."""
        waiter = _Waiter(tenant, user, wanted)
        self._add(waiter)
        while not waiter.answered:
            if self._dispatching:
                try:
                    await waiter.wake.wait()
                except BaseException:
                    self._remove(waiter)
                    raise
                waiter.wake = anyio.Event()
                continue
            self._dispatching = True
            try:
                await self._dispatch(until=waiter)
            except BaseException:
                # Out of the queue before the role is handed on, or it would be handed to us.
                self._remove(waiter)
                raise
            finally:
                self._dispatching = False
                self._hand_over()
        return waiter.granted

    async def _dispatch(self, *, until: _Waiter) -> None:
        """Grant slots in turn until `until` has its answer."""
        while not until.answered:
            now = self._clock()
            slot = self._next_slot if now - self._next_slot <= LATE_WAKE_S else now
            if slot > now:
                await anyio.sleep(slot - now)
                continue
            picked = self._pick(now)
            if picked is None:
                # Everyone waiting is held back by the per-user limit: wait for the first of
                # them (a newcomer who could go at once waits at most one user interval).
                await anyio.sleep(self._earliest_user_time() - now)
                continue
            if not picked.wanted():
                self._answer(picked)
                continue
            self._grant(picked, now)
            # Scheduled from the intended slot: a late wake-up does not lower the rate.
            self._next_slot = slot + 1.0 / self._rate.rate

    def _pick(self, now: float) -> _Waiter | None:
        """The first waiter of the first user free to go, tenants and users in turn."""
        for tenant, users in self._queues.items():
            for user, waiters in users.items():
                if self._user_next.get(user, -math.inf) <= now:
                    waiter = waiters.popleft()
                    if waiters:
                        users.move_to_end(user)
                    else:
                        del users[user]
                    if users:
                        self._queues.move_to_end(tenant)
                    else:
                        del self._queues[tenant]
                    return waiter
        return None

    def _answer(self, waiter: _Waiter) -> None:
        waiter.answered = True
        waiter.wake.set()
        self.waiting -= 1

    def _grant(self, waiter: _Waiter, now: float) -> None:
        waiter.granted = True
        self._answer(waiter)
        self._user_next[waiter.user] = now + self._user_interval_s
        if len(self._user_next) > USER_MEMORY_LIMIT:
            horizon = now - USER_FORGET_AFTER_S
            self._user_next = {u: t for u, t in self._user_next.items() if t > horizon}

    def _earliest_user_time(self) -> float:
        return min(
            self._user_next.get(user, -math.inf)
            for users in self._queues.values()
            for user in users
        )

    def _add(self, waiter: _Waiter) -> None:
        users = self._queues.setdefault(waiter.tenant, OrderedDict())
        users.setdefault(waiter.user, deque()).append(waiter)
        self.waiting += 1

    def _remove(self, waiter: _Waiter) -> None:
        users = self._queues.get(waiter.tenant)
        waiters = users.get(waiter.user) if users is not None else None
        if users is None or waiters is None or waiter not in waiters:
            return
        waiters.remove(waiter)
        self.waiting -= 1
        if not waiters:
            del users[waiter.user]
        if not users:
            del self._queues[waiter.tenant]

    def _hand_over(self) -> None:
        """The dispatcher left: wake one waiter, which takes the role on."""
        for users in self._queues.values():
            for waiters in users.values():
                waiters[0].wake.set()
                return
