"""Virtual time for schedule tests: a fake clock, and an `anyio.sleep` that records each delay
and moves the clock by exactly that much, so schedules are checked as numbers, never against
a wall clock. The fixtures `clock` and `sleep` (tests/conftest.py) wire them in."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import anyio
import anyio.lowlevel

START = 1_000.0


class FakeClock:
    def __init__(self, start: float = START) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class VirtualSleep:
    """Stands in for anyio.sleep: records each delay and wakes on time, or `late_s` after
    it (a busy event loop)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.delays: list[float] = []
        self.on_sleep: Callable[[], None] | None = None
        # While set and not yet fired, every sleep waits for it first (time stands still).
        self.hold: anyio.Event | None = None
        self.late_s = 0.0

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if self.on_sleep is not None:
            self.on_sleep()
        if self.hold is not None:
            await self.hold.wait()
        # Whatever is ready runs at the present time before the clock moves on.
        await anyio.lowlevel.checkpoint()
        self.clock.advance(max(0.0, delay) + self.late_s)
        await anyio.lowlevel.checkpoint()


def gaps(times: list[float]) -> list[float]:
    """The intervals between consecutive times."""
    return [b - a for a, b in itertools.pairwise(times)]
