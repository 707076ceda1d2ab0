"""What happens to a run while it runs: the quota steps, a trickle tenant's messages, and the
feeding of a backlog in the order an SQS fair queue delivers it.

SQS fair queues (FACTS.md) deliver a quiet tenant's messages ahead of a noisy tenant's backlog.
Neither SQS emulator does: LocalStack keeps MessageGroupId but delivers in send order, so a
message sent behind 5,000 others waits for all of them, whatever the consumer does. The feeder
stands in for SQS's side: the backlog tenant's messages enter the queue as they are taken, at
most FEED_AHEAD of them visible, so a trickle message is among the next receives, as on a fair
queue. What is left of its latency is the consumer's own queueing.

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
from tests.support.messages import SQS_BATCH, queue_depth

# The trickle stops this long before the run ends, so each of its messages had time to land.
TRICKLE_TAIL_S = 5.0
# A fed backlog keeps this many of its messages visible (two receives' worth), topped up this often.
FEED_AHEAD = 20
FEED_POLL_S = 0.05


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


async def _feed(
    sqs_url: str, queue_url: str, backlog: Sequence[Verdict], sent_at: dict[str, float]
) -> None:
    fed = 0
    async with aws.sqs_client(sqs_url) as sqs:
        while fed < len(backlog):
            visible, _ = await queue_depth(sqs, queue_url)
            wanted = min(len(backlog), fed + max(0, FEED_AHEAD - visible))
            while fed < wanted:
                batch = backlog[fed : min(fed + SQS_BATCH, wanted)]
                now = await workload.send(sqs, queue_url, batch)
                sent_at.update((v.event_id, now) for v in batch)
                fed += len(batch)
            await asyncio.sleep(FEED_POLL_S)


@contextlib.asynccontextmanager
async def during_run(
    scenario: Scenario,
    emulator_url: str,
    sqs_url: str,
    queue_url: str,
    to_send: tuple[Sequence[Verdict], Sequence[Verdict]],
    sent_at: dict[str, float],
) -> AsyncIterator[Marks]:
    """Run the scenario's schedule from now until the block ends; `to_send` holds the
    backlog still to feed and the trickle tenant's messages."""
    marks = Marks()
    started = time.monotonic()
    backlog, trickle = to_send
    async with asyncio.TaskGroup() as tasks:
        running = []
        if scenario.quota_steps:
            running.append(tasks.create_task(_steps(scenario, emulator_url, started, marks)))
        if trickle:
            running.append(
                tasks.create_task(_trickle(scenario, sqs_url, queue_url, trickle, sent_at, marks))
            )
        if backlog:
            running.append(tasks.create_task(_feed(sqs_url, queue_url, backlog, sent_at)))
        try:
            yield marks
        finally:
            for task in running:
                task.cancel()
