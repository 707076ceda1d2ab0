"""Failures contained to their scope, and capacity shared fairly: the real worker process on
the local stack, with the emulator denying one pool, taking one region down, or slowing calls.
"""

from __future__ import annotations

import json
import signal
from collections import Counter
from typing import Any

import anyio
from types_aiobotocore_sqs.client import SQSClient

from feedback_local.stack import EmulatorControl, LocalStack, QueuePair
from tests.conftest import SeedPool
from tests.support.messages import applied, drain_dlq, error_code, send_bodies, verdict
from tests.support.ports import free_port
from tests.support.worker_process import WorkerProcess, local_worker

APPLY_TIMEOUT_S = 60.0


async def seeded_verdicts(
    seed_pool: SeedPool, sqs: SQSClient, queue_url: str, region: str, users: int
) -> str:
    """A new pool in `region` with `users` users (event ev-1 each), one verdict each queued."""
    pool = seed_pool(region, {f"user-{i}": ["ev-1"] for i in range(users)})
    await send_bodies(sqs, queue_url, [verdict(pool, f"user-{i}", "ev-1") for i in range(users)])
    return pool


async def wait_applied(emulator: EmulatorControl, pool: str, count: int) -> None:
    with anyio.fail_after(APPLY_TIMEOUT_S):
        while len(applied(emulator.writes(pool))) < count:
            await anyio.sleep(0.2)


def serving(stack: LocalStack, queues: QueuePair, **env: str) -> WorkerProcess:
    """A long-running worker with its probes and metrics served."""
    return local_worker(stack, queues, FEEDBACK_METRICS_PORT=str(free_port()), **env).start()


async def test_a_pool_left_out_of_the_iam_policy_pauses_that_pool_only(
    local_stack: LocalStack,
    queues: QueuePair,
    sqs_client: SQSClient,
    seed_pool: SeedPool,
    emulator: EmulatorControl,
) -> None:
    # Given an IAM policy that denies one pool, and verdicts for it and for another pool
    denied = await seeded_verdicts(seed_pool, sqs_client, queues.url, "us-east-1", 8)
    allowed = await seeded_verdicts(seed_pool, sqs_client, queues.url, "us-east-1", 8)
    emulator.inject("AccessDeniedException", pool=denied)
    process = serving(local_stack, queues)
    try:
        # When the worker meets the denial, the other pool goes on in full
        await wait_applied(emulator, allowed, 8)
        assert not applied(emulator.writes(denied))
        # Then only the denied pool is paused, said once with what to check; the worker
        # stays ready and lists it
        paused = process.events("scope.paused")
        assert [(e["scope"], e["name"]) for e in paused] == [("pool", denied)]
        assert "IAM policy" in paused[0]["note"]
        readiness = await process.readiness()
        assert readiness is not None
        assert readiness["http_status"] == 200
        assert [(p["scope"], p["name"]) for p in readiness["paused"]] == [("pool", denied)]
        assert '"123456789012"' not in json.dumps(readiness)
        metrics = await process.metrics()
        assert metrics['feedback_worker_paused_scopes{scope="pool"}'] == 1
        assert metrics["feedback_worker_paused"] == 0
        # And once the policy is fixed the pool resumes by itself
        emulator.clear_injected_errors()
        await wait_applied(emulator, denied, 8)
        assert process.events("scope.resumed")
        process.send_signal(signal.SIGTERM)
        assert await process.wait(30) == 0
    finally:
        process.kill()
    assert await drain_dlq(sqs_client, queues.dlq_url) == []


async def test_one_region_down_leaves_the_other_regions_going_and_holds_few_of_its_own(
    local_stack: LocalStack,
    queues: QueuePair,
    sqs_client: SQSClient,
    seed_pool: SeedPool,
    emulator: EmulatorControl,
) -> None:
    # Given one region answering 503 pages, and verdicts for it and for another region
    down = await seeded_verdicts(seed_pool, sqs_client, queues.url, "eu-west-1", 12)
    up = await seeded_verdicts(seed_pool, sqs_client, queues.url, "us-east-1", 12)
    emulator.inject("HTTP503", region="eu-west-1")
    process = serving(local_stack, queues)
    try:
        # When the outage lasts, the other region is applied in full
        await wait_applied(emulator, up, 12)
        with anyio.fail_after(APPLY_TIMEOUT_S):
            while not process.events("region.down"):
                await anyio.sleep(0.2)
        # Then the region down is named, the worker stays ready (another region works), and
        # it keeps only a probe's worth of the down region's messages: the rest wait in SQS
        readiness = await process.readiness()
        assert readiness is not None
        assert readiness["http_status"] == 200
        assert [d.split(":")[0] for d in readiness["regions_down"]] == ["eu-west-1"]
        with anyio.fail_after(APPLY_TIMEOUT_S):
            while (await process.metrics()).get("feedback_worker_messages_held", 99) > 2:
                await anyio.sleep(0.2)
        outcomes = Counter(e["outcome"] for e in process.events("message.done"))
        assert outcomes["parked"] > 0
        # And when it answers again, everything is applied and nothing was dead-lettered
        emulator.clear_injected_errors()
        await wait_applied(emulator, down, 12)
        assert process.events("region.up")
        process.send_signal(signal.SIGTERM)
        assert await process.wait(30) == 0
    finally:
        process.kill()
    assert await drain_dlq(sqs_client, queues.dlq_url) == []


async def test_one_message_failing_alone_is_no_outage_it_is_dead_lettered_after_its_attempts(
    local_stack: LocalStack,
    queues: QueuePair,
    sqs_client: SQSClient,
    seed_pool: SeedPool,
    emulator: EmulatorControl,
) -> None:
    # Given a single verdict whose every call fails, and no other traffic
    pool = await seeded_verdicts(seed_pool, sqs_client, queues.url, "us-east-1", 1)
    emulator.inject("InternalErrorException", pool=pool)
    process = local_worker(local_stack, queues, "--until-empty", FEEDBACK_MAX_ATTEMPTS="3")
    process.start()
    assert await process.wait(90) == 0, process.log_tail()
    # Then it was not taken for an outage: dead-lettered with its last error after 3 attempts
    assert not process.events("region.down")
    [dead] = await drain_dlq(sqs_client, queues.dlq_url)
    assert error_code(dead) == "InternalErrorException"
    assert dead["MessageAttributes"]["Attempts"]["StringValue"] == "3"


async def test_a_pool_id_of_no_cognito_region_is_dead_lettered_without_a_call(
    local_stack: LocalStack,
    queues: QueuePair,
    sqs_client: SQSClient,
    emulator: EmulatorControl,
) -> None:
    await send_bodies(sqs_client, queues.url, [verdict("xx-fake-1_AbC123", "alice", "ev-1")])
    process = local_worker(local_stack, queues, "--until-empty").start()
    assert await process.wait(60) == 0, process.log_tail()
    [dead] = await drain_dlq(sqs_client, queues.dlq_url)
    assert error_code(dead) == "InvalidFieldValue"
    assert "xx-fake-1" in dead["MessageAttributes"]["ErrorMessage"]["StringValue"]
    assert emulator.stats()["calls"] == 0


async def test_one_users_flood_holds_up_nobody_else_and_keeps_to_the_per_user_limit(
    local_stack: LocalStack,
    queues: QueuePair,
    sqs_client: SQSClient,
    seed_pool: SeedPool,
    emulator: EmulatorControl,
) -> None:
    # Given one user with 40 verdicts queued ahead of 20 other users with one each, and
    # Cognito's limit of 10 writes a second to one user
    flood_events = [f"ev-{i}" for i in range(40)]
    others = {f"other-{i}": ["ev-1"] for i in range(20)}
    pool = seed_pool("us-east-1", {"flood": flood_events} | others)
    await send_bodies(sqs_client, queues.url, [verdict(pool, "flood", e) for e in flood_events])
    await send_bodies(sqs_client, queues.url, [verdict(pool, user, "ev-1") for user in others])
    process = local_worker(local_stack, queues, "--until-empty").start()
    assert await process.wait(90) == 0, process.log_tail()
    rows = emulator.writes(pool)["events"]
    flood_times = sorted(r["feedback_date"] for r in rows if r["username"] == "flood")
    other_times = [r["feedback_date"] for r in rows if r["username"] != "flood"]
    assert len(flood_times) == 40
    assert len(other_times) == 20
    # Then the others are not queued behind the flood: all of them are through before the
    # flood's 30th call, which the per-user limit puts about three seconds in
    assert max(other_times) < flood_times[29]
    # And the flood never went faster than the per-user limit: Cognito throttled nothing
    assert emulator.stats()["throttles"] == 0


async def test_a_fair_queue_group_names_a_tenant_and_is_no_ordering_lock(
    local_stack: LocalStack,
    queues: QueuePair,
    sqs_client: SQSClient,
    seed_pool: SeedPool,
    emulator: EmulatorControl,
) -> None:
    # Given a standard queue whose producer names its tenant in MessageGroupId, and calls that
    # take half a second each
    users = {f"user-{i}": ["ev-1"] for i in range(12)}
    pool = seed_pool("us-east-1", users)
    emulator.configure(latency_s=0.5)
    entries: list[Any] = [
        {"Id": str(i), "MessageBody": verdict(pool, user, "ev-1"), "MessageGroupId": "tenant-a"}
        for i, user in enumerate(users)
    ]
    entries.append({"Id": "bad", "MessageBody": "{oops", "MessageGroupId": "tenant-a"})
    await sqs_client.send_message_batch(QueueUrl=queues.url, Entries=entries[:10])
    await sqs_client.send_message_batch(QueueUrl=queues.url, Entries=entries[10:])
    process = local_worker(local_stack, queues, "--until-empty").start()
    assert await process.wait(90) == 0, process.log_tail()
    # Then the tenant's calls ran side by side, not one after another as in a FIFO group
    times = sorted(r["feedback_date"] for r in emulator.writes(pool)["events"])
    assert len(times) == 12
    assert sum(1 for t in times if t - times[0] < 0.5) >= 3
    # And a dead-letter copy stays in the tenant's group
    [dead] = await drain_dlq(sqs_client, queues.dlq_url)
    assert dead["Body"] == "{oops"
    assert dead["Attributes"]["MessageGroupId"] == "tenant-a"
