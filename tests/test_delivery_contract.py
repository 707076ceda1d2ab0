"""The delivery contract, exactly: attempts that count, no silent dead-letters, newest-wins
through delays and redrives, credentials that refresh, and endpoints per region. The real
worker process on the local stack."""

from __future__ import annotations

import signal
from collections import Counter

import anyio
from types_aiobotocore_sqs.client import SQSClient

from feedback_local.stack import EmulatorControl, LocalStack, QueuePair
from tests.conftest import QueueFactory, SeedPool
from tests.support.messages import applied, drain_dlq, error_code, send_bodies, verdict
from tests.support.worker_process import TEST_WORKER_ENV, WORKER_EXECUTABLE, local_worker

DRAIN_TIMEOUT_S = 120.0


async def hand_back(sqs: SQSClient, queue_url: str, times: int) -> None:
    """Receive the queue's one message `times` times and give it straight back, as a worker
    that stops or pauses would: each is a receive, none an attempt."""
    for _ in range(times):
        with anyio.fail_after(30):
            while not (response := await sqs.receive_message(QueueUrl=queue_url)).get("Messages"):
                await anyio.sleep(0.1)
        [message] = response["Messages"]
        await sqs.change_message_visibility(
            QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )


async def test_hand_backs_never_count_as_attempts(
    local_stack: LocalStack,
    queue_factory: QueueFactory,
    sqs_client: SQSClient,
    seed_pool: SeedPool,
    emulator: EmulatorControl,
) -> None:
    # Given a verdict handed back four times already, and a worker that gives up after two
    # failed attempts
    queues = queue_factory(max_receive_count=10)
    pool = seed_pool("us-east-1", {"alice": ["ev-1"]})
    await send_bodies(sqs_client, queues.url, [verdict(pool, "alice", "ev-1")])
    await hand_back(sqs_client, queues.url, 4)
    # When its first call fails with a 500, then Cognito answers
    emulator.inject("InternalErrorException", pool=pool, times=1)
    process = local_worker(local_stack, queues, FEEDBACK_MAX_ATTEMPTS="2").start()
    try:
        with anyio.fail_after(DRAIN_TIMEOUT_S):
            while not applied(emulator.writes(pool)):
                await anyio.sleep(0.1)
    finally:
        process.kill()
    # Then one real failure out of two allowed: applied, not dead-lettered for its hand-backs
    assert emulator.stats()["errors"].get("InternalErrorException") == 1
    assert await drain_dlq(sqs_client, queues.dlq_url) == []


async def test_a_message_at_its_last_receive_is_requeued_with_its_history_never_left_to_sqs(
    local_stack: LocalStack,
    queue_factory: QueueFactory,
    sqs_client: SQSClient,
    seed_pool: SeedPool,
    emulator: EmulatorControl,
) -> None:
    # Given a queue that moves a message to its DLQ after its second receive, and a pool the
    # worker is denied long enough for its messages to be handed back more often than that
    queues = queue_factory(max_receive_count=2)
    pool = seed_pool("us-east-1", {f"user-{i}": ["ev-1"] for i in range(4)})
    await send_bodies(
        sqs_client, queues.url, [verdict(pool, f"user-{i}", "ev-1") for i in range(4)]
    )
    emulator.inject("AccessDeniedException", pool=pool)
    process = local_worker(local_stack, queues).start()
    try:
        with anyio.fail_after(DRAIN_TIMEOUT_S):
            while not process.events("message.requeued"):
                await anyio.sleep(0.2)
        # Nothing reached the DLQ meanwhile: SQS's redrive never got the chance
        assert await drain_dlq(sqs_client, queues.dlq_url) == []
        emulator.clear_injected_errors()
        with anyio.fail_after(DRAIN_TIMEOUT_S):
            while len(applied(emulator.writes(pool))) < 4:
                await anyio.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        assert await process.wait(30) == 0
    finally:
        process.kill()
    assert await drain_dlq(sqs_client, queues.dlq_url) == []
    outcomes = Counter(e["outcome"] for e in process.events("message.done"))
    assert outcomes["requeued"] > 0
    assert outcomes["applied"] == 4


async def test_an_older_verdict_that_arrives_after_a_newer_one_was_applied_is_skipped(
    local_stack: LocalStack,
    queues: QueuePair,
    sqs_client: SQSClient,
    seed_pool: SeedPool,
    emulator: EmulatorControl,
) -> None:
    # Given an older verdict that becomes visible only after a newer one for the same event
    pool = seed_pool("us-east-1", {"alice": ["ev-1"]})
    await sqs_client.send_message(
        QueueUrl=queues.url, MessageBody=verdict(pool, "alice", "ev-1", "Invalid"), DelaySeconds=3
    )
    await anyio.sleep(0.05)
    await send_bodies(sqs_client, queues.url, [verdict(pool, "alice", "ev-1", "Valid")])
    process = local_worker(local_stack, queues, "--until-empty").start()
    assert await process.wait(DRAIN_TIMEOUT_S) == 0, process.log_tail()
    # Then the newer verdict stands, and the older one was skipped, not applied over it
    assert applied(emulator.writes(pool)) == {("alice", "ev-1"): "Valid"}
    outcomes = [e["outcome"] for e in process.events("message.done")]
    assert sorted(outcomes) == ["applied", "superseded"]


async def test_a_redriven_older_verdict_does_not_overwrite_a_newer_one_in_a_new_process(
    local_stack: LocalStack,
    queues: QueuePair,
    sqs_client: SQSClient,
    seed_pool: SeedPool,
    emulator: EmulatorControl,
) -> None:
    # Given an older verdict dead-lettered during a fault
    pool = seed_pool("us-east-1", {"alice": ["ev-1"], "bob": ["ev-1"]})
    emulator.inject("InvalidParameterException", pool=pool)
    await send_bodies(
        sqs_client,
        queues.url,
        [verdict(pool, user, "ev-1", "Invalid") for user in ("alice", "bob")],
    )
    first = local_worker(local_stack, queues, "--until-empty").start()
    assert await first.wait(DRAIN_TIMEOUT_S) == 0, first.log_tail()
    dead = await drain_dlq(sqs_client, queues.dlq_url)
    assert [error_code(m) for m in dead] == ["InvalidParameterException"] * 2
    assert all("OriginalSentTimestamp" in m["MessageAttributes"] for m in dead)
    for message in dead:  # read, now give them back for the redrive
        await sqs_client.change_message_visibility(
            QueueUrl=queues.dlq_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    # And newer verdicts for alice's event applied since (bob's event had none)
    emulator.clear_injected_errors()
    await send_bodies(sqs_client, queues.url, [verdict(pool, "alice", "ev-1", "Valid")])
    second = local_worker(local_stack, queues, "--until-empty").start()
    assert await second.wait(DRAIN_TIMEOUT_S) == 0, second.log_tail()
    # When an operator redrives the DLQ
    moved = await anyio.run_process(
        [str(WORKER_EXECUTABLE), "dlq", "redrive", "--client-side", "--yes"],
        env=TEST_WORKER_ENV | local_stack.env(queues),
        check=False,
    )
    assert moved.returncode == 0, moved.stderr.decode()
    assert "moved 2" in moved.stdout.decode(), moved.stdout.decode()
    # And a new process takes the redriven copies
    third = local_worker(local_stack, queues, "--until-empty").start()
    assert await third.wait(DRAIN_TIMEOUT_S) == 0, third.log_tail()
    # Then alice keeps the newer verdict, bob gets his redriven one
    assert applied(emulator.writes(pool)) == {
        ("alice", "ev-1"): "Valid",
        ("bob", "ev-1"): "Invalid",
    }
    readbacks = Counter(e.get("readback") for e in third.events("message.done"))
    assert readbacks == {"newer feedback": 1, "ok": 1}


async def test_expired_session_credentials_pause_the_worker_until_they_are_refreshed(
    local_stack: LocalStack,
    queues: QueuePair,
    sqs_client: SQSClient,
    seed_pool: SeedPool,
    emulator: EmulatorControl,
) -> None:
    # Given a worker on temporary credentials from a container endpoint, refreshed on use
    emulator.configure(session_credentials_lifetime_s=660)
    pool = seed_pool("us-east-1", {f"user-{i}": ["ev-1", "ev-2"] for i in range(6)})
    env = {
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": emulator.container_credentials_url,
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
    }
    process = local_worker(local_stack, queues, **env).start()
    try:
        await send_bodies(
            sqs_client, queues.url, [verdict(pool, f"user-{i}", "ev-1") for i in range(6)]
        )
        with anyio.fail_after(60):
            while len(applied(emulator.writes(pool))) < 6:
                await anyio.sleep(0.2)
        # When every token issued so far expires and the endpoint hands out no new ones
        emulator.configure(container_credentials="stale")
        emulator.expire_credentials()
        await send_bodies(
            sqs_client, queues.url, [verdict(pool, f"user-{i}", "ev-2") for i in range(6)]
        )
        with anyio.fail_after(60):
            while not process.events("scope.paused"):
                await anyio.sleep(0.2)
        assert process.events("scope.paused")[0]["scope"] == "worker"
        assert process.events("scope.paused")[0]["code"] == "ExpiredTokenException"
        # Then once fresh credentials are to be had, the worker resumes by itself
        emulator.configure(container_credentials="fresh")
        with anyio.fail_after(120):
            while len(applied(emulator.writes(pool))) < 12:
                await anyio.sleep(0.2)
    finally:
        process.kill()
    assert await drain_dlq(sqs_client, queues.dlq_url) == []


async def test_each_region_goes_to_its_own_endpoint_and_a_wrong_one_pauses_that_region_only(
    local_stack: LocalStack,
    queues: QueuePair,
    sqs_client: SQSClient,
    seed_pool: SeedPool,
    emulator: EmulatorControl,
) -> None:
    # Given two regional endpoints, each refusing requests signed for another region
    emulator.bind_region("us-east-1")
    with LocalStack(
        sqs_endpoint=local_stack.sqs_endpoint, emulator_args=["--bound-region", "eu-west-1"]
    ) as europe:
        east = seed_pool("us-east-1", {"alice": ["ev-1"]})
        west = f"eu-west-1_{east.partition('_')[2]}"
        europe.emulator.seed(
            {"pools": [{"id": west, "threat_protection": True, "users": {"bob": ["ev-1"]}}]}
        )
        bodies = [verdict(east, "alice", "ev-1"), verdict(west, "bob", "ev-1")]
        await send_bodies(sqs_client, queues.url, bodies)
        # When each region's endpoint is configured, both are applied
        endpoints = f"us-east-1={local_stack.cognito_endpoint},eu-west-1={europe.cognito_endpoint}"
        right = local_worker(
            local_stack, queues, "--until-empty", FEEDBACK_COGNITO_ENDPOINTS=endpoints
        ).start()
        assert await right.wait(DRAIN_TIMEOUT_S) == 0, right.log_tail()
        assert applied(emulator.writes(east)) == {("alice", "ev-1"): "Valid"}
        assert applied(europe.emulator.writes(west)) == {("bob", "ev-1"): "Valid"}
        # And when eu-west-1's calls go to us-east-1's endpoint, only that region pauses
        await send_bodies(
            sqs_client,
            queues.url,
            [verdict(east, "alice", "ev-1", "Invalid"), verdict(west, "bob", "ev-1", "Invalid")],
        )
        wrong = local_worker(
            local_stack, queues, FEEDBACK_COGNITO_ENDPOINTS=f"*={local_stack.cognito_endpoint}"
        ).start()
        try:
            with anyio.fail_after(60):
                while applied(emulator.writes(east)) != {("alice", "ev-1"): "Invalid"}:
                    await anyio.sleep(0.2)
                while not wrong.events("scope.paused"):
                    await anyio.sleep(0.2)
        finally:
            wrong.kill()
        [paused] = wrong.events("scope.paused")
        assert (paused["scope"], paused["name"], paused["code"]) == (
            "region",
            "eu-west-1",
            "InvalidSignatureException",
        )
    assert await drain_dlq(sqs_client, queues.dlq_url) == []
