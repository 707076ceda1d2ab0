"""The verdicts a scenario enqueues, and the emulator seed that makes every one of them valid."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from types_aiobotocore_sqs.client import SQSClient
from types_aiobotocore_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

from tests.bench import aws
from tests.bench.scenarios import Scenario
from tests.support.messages import SQS_BATCH

# Pool ids carry their region (FACTS.md): `pools_per_region` pools in each region.
POOL_PREFIX = "BenchPool"
NEIGHBOUR_POOL = "Neighbour1"  # the neighbour writes on a pool of its own
EVENTS_PER_USER = 4  # far below the per-user quota (10/s) whatever the draining order
NEIGHBOUR_USERS = 200
SHUFFLE_SEED = 20_240_601
VALUES = ("Valid", "Invalid")
# Roles of a verdict in a scenario, for the figures of tests.bench.figures.
FLOOD, OTHER, TRICKLE = "flood", "other", "trickle"
TRICKLE_TENANT = "tenant-trickle"


@dataclass(frozen=True)
class Verdict:
    pool_id: str
    username: str
    event_id: str
    value: str
    group: str | None = None  # MessageGroupId: the tenant on a fair queue
    role: str = ""

    def body(self) -> str:
        return json.dumps(
            {
                "UserPoolId": self.pool_id,
                "Username": self.username,
                "EventId": self.event_id,
                "FeedbackValue": self.value,
            }
        )

    @property
    def region(self) -> str:
        return self.pool_id.split("_", 1)[0]


def pool_id(region: str, index: int = 1) -> str:
    return f"{region}_{POOL_PREFIX}{index}"


def pool_index(pool: str) -> int:
    """The 1-based index of one of the scenario's pools in its region."""
    return int(pool.rsplit(POOL_PREFIX, 1)[1])


def neighbour_pool(region: str) -> str:
    return f"{region}_{NEIGHBOUR_POOL}"


def make_verdicts(scenario: Scenario, count: int, tag: str) -> list[Verdict]:
    """`count` verdicts on distinct events, laid out as the scenario says."""
    if scenario.flood:
        return _flood(scenario, count, tag)
    verdicts = _spread(scenario, count, tag)
    if scenario.tenants:
        verdicts = [
            Verdict(v.pool_id, v.username, v.event_id, v.value, _tenant(i % scenario.tenants))
            for i, v in enumerate(verdicts)
        ]
    random.Random(SHUFFLE_SEED).shuffle(verdicts)
    return verdicts


def _tenant(index: int) -> str:
    return f"tenant-{chr(ord('a') + index)}"


def _spread(scenario: Scenario, count: int, tag: str) -> list[Verdict]:
    """Spread evenly over every pool of every region, a few events per user."""
    pools = [
        pool_id(region, index)
        for index in range(1, scenario.pools_per_region + 1)
        for region in scenario.regions
    ]
    return [
        Verdict(
            pool_id=pools[i % len(pools)],
            username=f"user-{tag}-{i // (EVENTS_PER_USER * len(pools)):05d}",
            event_id=f"ev-{tag}-{i:06d}",
            value=VALUES[i % len(VALUES)],
        )
        for i in range(count)
    ]


def _flood(scenario: Scenario, count: int, tag: str) -> list[Verdict]:
    """One user's `scenario.flood` verdicts first, then one verdict for each other user."""
    pool = pool_id(scenario.regions[0])
    flood = [
        Verdict(pool, f"flood-{tag}", f"ev-{tag}-f{i:05d}", VALUES[i % 2], role=FLOOD)
        for i in range(scenario.flood)
    ]
    others = [
        Verdict(pool, f"user-{tag}-{i:05d}", f"ev-{tag}-o{i:05d}", VALUES[i % 2], role=OTHER)
        for i in range(count - scenario.flood)
    ]
    return flood + others


def trickle_verdicts(scenario: Scenario, count: int, tag: str) -> list[Verdict]:
    """The trickle tenant's verdicts, one user each, sent one by one during the run."""
    pool = pool_id(scenario.regions[0])
    return [
        Verdict(
            pool, f"trickle-{tag}-{i:05d}", f"ev-{tag}-t{i:05d}", "Valid", TRICKLE_TENANT, TRICKLE
        )
        for i in range(count)
    ]


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


async def send(sqs: SQSClient, queue_url: str, verdicts: Sequence[Verdict]) -> float:
    """Send up to ten verdicts in one batch (with their MessageGroupId); returns the send time."""
    entries: list[SendMessageBatchRequestEntryTypeDef] = []
    for i, v in enumerate(verdicts):
        entry: SendMessageBatchRequestEntryTypeDef = {"Id": str(i), "MessageBody": v.body()}
        if v.group is not None:
            entry["MessageGroupId"] = v.group
        entries.append(entry)
    now = time.time()
    response = await sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
    if failed := response.get("Failed"):
        raise RuntimeError(f"SendMessageBatch failed for {len(failed)} entries: {failed[0]}")
    return now


async def enqueue(endpoint: str, queue_url: str, verdicts: Sequence[Verdict]) -> dict[str, float]:
    """Send the verdicts in batches of ten; returns each event id's send time (epoch seconds)."""
    sent: dict[str, float] = {}
    async with aws.sqs_client(endpoint) as sqs:
        for start in range(0, len(verdicts), SQS_BATCH):
            batch = verdicts[start : start + SQS_BATCH]
            now = await send(sqs, queue_url, batch)
            sent.update((v.event_id, now) for v in batch)
    return sent
