"""Ordering of verdicts: one call at a time per key, in order, and the newest verdict wins.

Standard queues may deliver out of order and more than once. For one (pool, user, event) the
worker therefore never runs two calls at once, runs waiting ones in SentTimestamp order, and
skips a verdict older than one it has already applied (remembered in bounded memory). FIFO
queues are also sequenced per MessageGroupId, by SequenceNumber.
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio

# How many applied events are remembered for the newest-wins check (~150 bytes each).
APPLIED_MEMORY = 100_000


@dataclass(order=True)
class _Waiter:
    order: tuple[int, int]
    event: anyio.Event = field(compare=False, default_factory=anyio.Event)
    abandoned: bool = field(compare=False, default=False)


@dataclass
class _KeyState:
    waiters: list[_Waiter] = field(default_factory=list)


class Sequencer:
    """Grants one holder per key at a time; waiters are served lowest `order` first."""

    def __init__(self) -> None:
        self._keys: dict[Hashable, _KeyState] = {}
        self._tiebreak = itertools.count()

    def __len__(self) -> int:
        return len(self._keys)

    @asynccontextmanager
    async def turn(self, key: Hashable, order: int) -> AsyncIterator[None]:
        state = self._keys.get(key)
        if state is None:
            self._keys[key] = _KeyState()
        else:
            waiter = _Waiter((order, next(self._tiebreak)))
            heapq.heappush(state.waiters, waiter)
            try:
                await waiter.event.wait()
            except BaseException:
                if waiter.event.is_set():
                    # The turn was handed to us as we were cancelled: pass it on.
                    self._pass_on(key)
                else:
                    waiter.abandoned = True
                raise
        try:
            yield
        finally:
            self._pass_on(key)

    def _pass_on(self, key: Hashable) -> None:
        state = self._keys[key]
        while state.waiters:
            waiter = heapq.heappop(state.waiters)
            if not waiter.abandoned:
                waiter.event.set()
                return
        del self._keys[key]


@dataclass(frozen=True, slots=True)
class Applied:
    """A verdict this process applied: when it was first sent, its message, when applied."""

    sent_at_ms: int
    message_id: str
    applied_at_s: float


class NewestWins:
    """Remembers the newest applied verdict per key, for the most recent APPLIED_MEMORY keys."""

    def __init__(self, capacity: int = APPLIED_MEMORY) -> None:
        self._capacity = capacity
        self._applied: OrderedDict[Hashable, Applied] = OrderedDict()

    def superseded(self, key: Hashable, sent_at_ms: int, message_id: str) -> bool:
        """True if a newer verdict, or this very message, was already applied for `key`."""
        applied = self._applied.get(key)
        if applied is None:
            return False
        return applied.sent_at_ms > sent_at_ms or applied.message_id == message_id

    def last_applied(self, key: Hashable) -> Applied | None:
        """The newest verdict this process applied for `key`, if it still remembers one."""
        return self._applied.get(key)

    def record(self, key: Hashable, sent_at_ms: int, message_id: str, *, now: float) -> None:
        """`message_id`, first sent at `sent_at_ms`, was applied at `now` (epoch seconds)."""
        applied = self._applied.get(key)
        if applied is None or applied.sent_at_ms <= sent_at_ms:
            self._applied[key] = Applied(sent_at_ms, message_id, now)
        self._applied.move_to_end(key)
        while len(self._applied) > self._capacity:
            self._applied.popitem(last=False)

    def __len__(self) -> int:
        return len(self._applied)
