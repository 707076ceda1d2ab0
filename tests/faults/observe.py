"""What the scenarios watch while a fault lasts: periodic samples (the worker's metrics and
/readyz body), the verdicts written per pool, the worker's log lines, and Cognito's answers by
region."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from typing import Any, TypeVar

import anyio

from tests.faults.harness import Harness, Run
from tests.faults.workload import Planned

T = TypeVar("T")

FEEDBACK_OPERATION = "AdminUpdateAuthEventFeedback"


@contextlib.asynccontextmanager
async def sampling(
    probe: Callable[[], Awaitable[T]], every_s: float
) -> AsyncIterator[list[tuple[float, T]]]:
    """Call `probe` every `every_s` while the block runs; yields the (monotonic time, value)
    samples gathered so far, a list that grows until the block ends."""
    samples: list[tuple[float, T]] = []

    async def keep_sampling() -> None:
        while True:
            samples.append((time.monotonic(), await probe()))
            await anyio.sleep(every_s)

    async with anyio.create_task_group() as group:
        group.start_soon(keep_sampling)
        try:
            yield samples
        finally:
            group.cancel_scope.cancel()


async def writes_in(h: Harness, pools: Collection[str]) -> int:
    """Successful feedback writes so far to the events of `pools`."""
    rows = (await h.emulator.writes())["events"]
    return sum(int(row["writes"]) for row in rows if row["pool_id"] in pools)


async def region_counts(h: Harness, region: str) -> dict[str, Any]:
    """The emulator's counters of calls signed for `region`: calls, successes, throttles and
    errors by code."""
    stats = await h.emulator.stats()
    counts: dict[str, Any] = stats.get("regions", {}).get(region, {})
    return counts


async def feedback_counts(h: Harness) -> dict[str, Any]:
    """The emulator's counters of feedback calls, all regions together."""
    stats = await h.emulator.stats()
    counts: dict[str, Any] = stats.get("operations", {}).get(FEEDBACK_OPERATION, {})
    return counts


def log_lines(run: Run, event: str, **fields: Any) -> list[dict[str, Any]]:
    """The `event` lines of every worker of the run whose fields include `fields`."""
    return [
        record
        for worker in run.workers
        for record in worker.events(event)
        if all(record.get(name) == value for name, value in fields.items())
    ]


def pieces(plans: Sequence[Planned], count: int) -> list[list[Planned]]:
    """`plans` cut into `count` consecutive pieces, in order (so a newer verdict never goes out
    before an older one for its event)."""
    size = max(1, -(-len(plans) // count))
    return [list(plans[i : i + size]) for i in range(0, len(plans), size)]


async def progress_while(
    run: Run, pools: Collection[str], plans: Sequence[Planned], seconds: float, steps: int
) -> list[int]:
    """Send `plans` in `steps` pieces spread over `seconds`; returns the writes `pools` gained
    in each step."""
    gains: list[int] = []
    cut = pieces(plans, steps)
    before = await writes_in(run.harness, pools)
    for step in range(steps):
        if step < len(cut):
            await run.send(cut[step])
        await anyio.sleep(seconds / steps)
        now = await writes_in(run.harness, pools)
        gains.append(now - before)
        before = now
    return gains


async def readiness_body(run: Run) -> dict[str, Any]:
    """The current worker's /readyz body (with "http_status"), or {} while it does not answer."""
    return await run.worker.readiness() or {}


async def held_now(run: Run) -> float:
    """The current worker's feedback_worker_messages_held gauge (-1 while it does not answer)."""
    return (await run.worker.metrics()).get("feedback_worker_messages_held", -1.0)
