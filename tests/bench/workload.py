"""The verdicts a scenario enqueues, and the emulator seed that makes every one of them valid."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tests.bench import aws
from tests.support.messages import SQS_BATCH, send_bodies

# Pool ids carry their region (FACTS.md): one pool per region the scenario spreads over.
POOL_SUFFIX = "BenchPool1"
EVENTS_PER_USER = 4  # far below the per-user quota (10/s) whatever the draining order
NEIGHBOUR_USERS = 200
SHUFFLE_SEED = 20_240_601
VALUES = ("Valid", "Invalid")


@dataclass(frozen=True)
class Verdict:
    pool_id: str
    username: str
    event_id: str
    value: str

    def body(self) -> str:
        return json.dumps(
            {
                "UserPoolId": self.pool_id,
                "Username": self.username,
                "EventId": self.event_id,
                "FeedbackValue": self.value,
            }
        )


def pool_id(region: str) -> str:
    return f"{region}_{POOL_SUFFIX}"


def make_verdicts(count: int, regions: Sequence[str], tag: str) -> list[Verdict]:
    """`count` verdicts on distinct events, spread evenly over one pool per region, shuffled."""
    verdicts = [
        Verdict(
            pool_id=pool_id(regions[i % len(regions)]),
            username=f"user-{tag}-{i // (EVENTS_PER_USER * len(regions)):05d}",
            event_id=f"ev-{tag}-{i:06d}",
            value=VALUES[i % len(VALUES)],
        )
        for i in range(count)
    ]
    random.Random(SHUFFLE_SEED).shuffle(verdicts)
    return verdicts


def neighbour_events(tag: str) -> list[tuple[str, str]]:
    """(username, event id) pairs the neighbour writes to, one event per user."""
    return [(f"neighbour-{tag}-{i:04d}", f"nb-{tag}-{i:04d}") for i in range(NEIGHBOUR_USERS)]


def seed_spec(
    verdicts: Sequence[Verdict], extra: dict[str, list[tuple[str, str]]]
) -> dict[str, Any]:
    """The emulator seed holding every event of `verdicts`, plus `extra` {pool: [(user, event)]}."""
    pools: dict[str, dict[str, list[str]]] = {}
    for v in verdicts:
        pools.setdefault(v.pool_id, {}).setdefault(v.username, []).append(v.event_id)
    for pool, pairs in extra.items():
        for username, event_id in pairs:
            pools.setdefault(pool, {}).setdefault(username, []).append(event_id)
    return {"pools": [{"id": pool, "users": users} for pool, users in pools.items()]}


async def enqueue(endpoint: str, queue_url: str, verdicts: Sequence[Verdict]) -> dict[str, float]:
    """Send the verdicts in batches of ten; returns each event id's send time (epoch seconds)."""
    sent: dict[str, float] = {}
    async with aws.sqs_client(endpoint) as sqs:
        for start in range(0, len(verdicts), SQS_BATCH):
            batch = verdicts[start : start + SQS_BATCH]
            now = time.time()
            await send_bodies(sqs, queue_url, [v.body() for v in batch])
            sent.update((v.event_id, now) for v in batch)
    return sent
