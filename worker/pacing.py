"""Pacing of Cognito calls: what a rate source is, and one user's calls spaced at the
per-user limit when they start. A region's slots are granted by worker.scheduler, at the rate
worker.rate_control learns."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Protocol

import anyio

# The per-user pacer forgets users idle this long, so its memory stays bounded.
USER_IDLE_FORGET_S = 10.0
USER_PRUNE_EVERY = 1024

Clock = Callable[[], float]


class RateSource(Protocol):
    """Anything that says how many calls per second are allowed now."""

    @property
    def rate(self) -> float: ...


class KeyedSpacing:
    """At most `rate` calls per second per key (e.g. per user), without blocking other keys.

    Callers `await wait(key)` before taking a region slot and again right before the call
    (normally instant), then `mark(key)`; the gap between two calls to one key is thus at
    least 1/rate even when the region pacer releases them close together.
    """

    def __init__(self, rate: float, *, clock: Clock = time.monotonic) -> None:
        self.interval = 1.0 / rate
        self._clock = clock
        self._next: dict[Hashable, float] = {}
        self._marks = 0

    async def wait(self, key: Hashable) -> None:
        # The deadline moves when another call to the key is marked meanwhile: re-check it.
        while (delay := self._next.get(key, 0.0) - self._clock()) > 0:  # noqa: ASYNC110
            await anyio.sleep(delay)

    def mark(self, key: Hashable) -> None:
        now = self._clock()
        self._next[key] = max(now, self._next.get(key, now)) + self.interval
        self._marks += 1
        if self._marks % USER_PRUNE_EVERY == 0:
            self._prune(now)

    def _prune(self, now: float) -> None:
        horizon = now - USER_IDLE_FORGET_S
        for key in [k for k, t in self._next.items() if t < horizon]:
            del self._next[key]

    def __len__(self) -> int:
        return len(self._next)
