"""Pacing of Cognito calls: an adaptive (AIMD) rate per region and a fixed rate per user.

Cognito's quota is per account and region and shared with every other caller, so the worker
cannot know its share in advance. Like TCP, it finds it: the allowed rate grows additively
while calls succeed and shrinks multiplicatively on each throttle. Replicas doing the same
with no shared state converge to a fair share (the AIMD property), and a noisy neighbour's
traffic pushes them down the same way.

botocore's "adaptive" retry mode does something similar per client, but it retries inside
the call (invisible to our hold/visibility logic), shares a retry budget that sustained
throttling drains, and probes above any configured ceiling. Here the ceiling is a hard cap
(``--rate-limit``) and every throttle comes back to the worker to decide.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable

import anyio

# On a throttle the allowed rate is multiplied by this (CUBIC's and botocore's beta). One
# overload answers many calls with throttles; only a call started after the last decrease
# reports news, so each overload shrinks the rate once (TCP's "once per window").
DECREASE_FACTOR = 0.7
# While calls succeed, the allowed rate grows by this many calls/s every second. Slow enough
# that replicas sharing a quota probe past it rarely (few throttles), fast enough to take back
# 10 calls/s within 20 s once a neighbour goes quiet.
INCREASE_PER_S = 0.5
# Never pace slower than this: the worker must keep probing to find capacity again.
MIN_RATE = 0.5
# A rate change worth reporting in the logs (relative).
REPORTABLE_CHANGE = 0.2
# The per-user pacer forgets users idle this long, so its memory stays bounded.
USER_IDLE_FORGET_S = 10.0
USER_PRUNE_EVERY = 1024

Clock = Callable[[], float]


class AdaptiveRate:
    """The allowed call rate of one region: additive increase, multiplicative decrease."""

    def __init__(self, max_rate: float, *, clock: Clock = time.monotonic) -> None:
        self.max_rate = max_rate
        self._rate = max_rate
        self._clock = clock
        self._last_decrease = -math.inf
        self._reported = max_rate

    @property
    def rate(self) -> float:
        return self._rate

    def on_success(self) -> None:
        # +INCREASE_PER_S per second of successes at the current rate.
        self._rate = min(self.max_rate, self._rate + INCREASE_PER_S / self._rate)

    def on_throttle(self, call_started: float) -> bool:
        """Slow down for a throttled call that started at `call_started` (same clock).

        Returns whether the rate changed: a call started before the last decrease was sent
        at the old rate, and its throttle says nothing new.
        """
        if call_started <= self._last_decrease:
            return False
        self._last_decrease = self._clock()
        # The floor keeps probing alive, but never above the configured cap.
        self._rate = max(min(MIN_RATE, self.max_rate), self._rate * DECREASE_FACTOR)
        return True

    def take_report(self) -> float | None:
        """The new rate if it moved materially since last reported, else None."""
        if abs(self._rate - self._reported) >= REPORTABLE_CHANGE * self._reported:
            self._reported = self._rate
            return self._rate
        return None


class Pacer:
    """Spaces calls at least 1/rate apart, first come first served.

    Waiters queue on a fair lock and each computes its slot from the *current* rate when it
    reaches the head, so a slowdown applies to every waiter behind the one already sleeping
    to its slot.
    """

    def __init__(self, rate: AdaptiveRate, *, clock: Clock = time.monotonic) -> None:
        self.rate = rate
        self._clock = clock
        self._lock = anyio.Lock()
        self._next = clock()
        self.waiting = 0

    async def acquire(self) -> None:
        self.waiting += 1
        try:
            async with self._lock:
                now = self._clock()
                start = max(self._next, now)
                if start > now:
                    await anyio.sleep(start - now)
                # Schedule from the intended start: a late wake-up does not lower the rate.
                self._next = start + 1.0 / self.rate.rate
        finally:
            self.waiting -= 1


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
