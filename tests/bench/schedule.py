"""What happens to a run while it runs: the quota steps, and a trickle tenant's messages.

(The neighbour's spike is scheduled by the neighbour process itself: tests.bench.neighbour.)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from feedback_local.stack import AsyncEmulatorControl
from tests.bench import aws, workload
from tests.bench.scenarios import Scenario
from tests.bench.workload import Verdict

# The trickle stops this long before the run ends, so each of its messages had time to land.
TRICKLE_TAIL_S = 5.0


@dataclass
class Marks:
    """When the scheduled changes really happened (epoch seconds)."""

    quota_steps: list[tuple[float, float]] = field(default_factory=list)  # (time, quota)
    trickle_sent: list[str] = field(default_factory=list)  # event ids, in order


def trickle_count(scenario: Scenario) -> int:
    """How many messages the trickle tenant sends in one run."""
    if not scenario.trickle_rate or scenario.duration_s is None:
        return 0
    return int(scenario.trickle_rate * max(0.0, scenario.duration_s - TRICKLE_TAIL_S))


async def _steps(scenario: Scenario, emulator_url: str, started: float, marks: Marks) -> None:
    async with AsyncEmulatorControl(emulator_url) as emulator:
        for at_s, quota in scenario.quota_steps:
            await asyncio.sleep(max(0.0, started + at_s - time.monotonic()))
            await emulator.configure(quota_per_region=quota)  # the buckets restart full
            marks.quota_steps.append((time.time(), quota))


async def _trickle(
    scenario: Scenario,
    sqs_url: str,
    queue_url: str,
    verdicts: Sequence[Verdict],
    sent_at: dict[str, float],
    marks: Marks,
) -> None:
    interval = 1.0 / scenario.trickle_rate
    started = time.monotonic()
    async with aws.sqs_client(sqs_url) as sqs:
        for i, verdict in enumerate(verdicts):
            await asyncio.sleep(max(0.0, started + i * interval - time.monotonic()))
            sent_at[verdict.event_id] = await workload.send(sqs, queue_url, [verdict])
            marks.trickle_sent.append(verdict.event_id)


@contextlib.asynccontextmanager
async def during_run(
    scenario: Scenario,
    emulator_url: str,
    sqs_url: str,
    queue_url: str,
    trickle: Sequence[Verdict],
    sent_at: dict[str, float],
) -> AsyncIterator[Marks]:
    """Run the scenario's schedule from now until the block ends."""
    marks = Marks()
    started = time.monotonic()
    async with asyncio.TaskGroup() as tasks:
        running = []
        if scenario.quota_steps:
            running.append(tasks.create_task(_steps(scenario, emulator_url, started, marks)))
        if trickle:
            running.append(
                tasks.create_task(_trickle(scenario, sqs_url, queue_url, trickle, sent_at, marks))
            )
        try:
            yield marks
        finally:
            for task in running:
                task.cancel()
