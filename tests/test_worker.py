"""The worker end to end: the real `feedback-worker` process, moto's SQS and the Cognito
emulator over HTTP. Each test checks the end state of every message it sent."""

from __future__ import annotations

import json
import signal
from collections import Counter

import anyio
from types_aiobotocore_sqs.client import SQSClient

from feedback_local.stack import EmulatorControl, LocalStack, QueuePair
from tests.conftest import QueueFactory, SeedPool
from tests.support.messages import (
    applied,
    drain_dlq,
    error_code,
    queue_depth,
    send_bodies,
    verdict,
)
from tests.support.ports import free_port
from tests.support.worker_process import local_worker
from worker.contract import ValidationCode

DRAIN_TIMEOUT_S = 90.0


async def one_verdict_per_user(
    seed_pool: SeedPool, sqs: SQSClient, queue_url: str, users: int
) -> str:
    """Seed a pool with `users` users (event ev-1 each), send one verdict per user; the pool id."""
    pool = seed_pool(users={f"user-{i}": ["ev-1"] for i in range(users)})
    await send_bodies(sqs, queue_url, [verdict(pool, f"user-{i}", "ev-1") for i in range(users)])
    return pool


async def wait_for_successes(emulator: EmulatorControl, count: int) -> None:
    with anyio.fail_after(30):
        while emulator.stats()["successes"] < count:
            await anyio.sleep(0.05)


async def test_every_kind_of_outcome_ends_in_its_place_with_the_body_intact(
    local_stack: LocalStack,
    queues: QueuePair,
    sqs_client: SQSClient,
    seed_pool: SeedPool,
    emulator: EmulatorControl,
) -> None:
    # Given a pool with two users, a pool without threat protection, and one body of each kind
    pool = seed_pool(users={"alice": ["ev-1", "ev-2"], "bob": ["ev-1"]})
    basic = seed_pool(users={"carol": ["ev-1"]}, threat_protection=False)
    # Valid, though spaced, reordered and lower-cased: its DLQ copy would have to keep all that.
    odd_but_valid = (
        f'  {{"FeedbackValue":"invalid", "EventId":"ev-1",'
        f'"UserPoolId":"{pool}","Username":"bob"}}\n'
    )
    expected = {
        verdict(pool, "alice", "ev-1", "Valid"): "applied",
        verdict(pool, "alice", "ev-2", "Invalid"): "applied",
        odd_but_valid: "applied",
        verdict(pool, "mallory", "ev-1"): "UserNotFoundException",
        verdict(pool, "alice", "ev-404"): "ResourceNotFoundException",
        verdict(basic, "carol", "ev-1"): "UserPoolAddOnNotEnabledException",
        '{"UserPoolId": "us-east-1_x", "Username": "żółw 🐢",': ValidationCode.MALFORMED_JSON,
        json.dumps({"UserPoolId": pool, "Username": "alice"}): ValidationCode.MISSING_FIELD,
        verdict(pool, "alice", "ev-1", "Perhaps"): ValidationCode.INVALID_FIELD_VALUE,
    }
    await send_bodies(sqs_client, queues.url, list(expected))

    # When the worker drains the queue
    process = local_worker(local_stack, queues, "--until-empty").start()
    assert await process.wait(DRAIN_TIMEOUT_S) == 0, process.log_tail()

    # Then valid verdicts are applied, everything else is in the DLQ with its reason, byte for byte
    values = applied(emulator.writes(pool))
    assert values == {
        ("alice", "ev-1"): "Valid",
        ("alice", "ev-2"): "Invalid",
        ("bob", "ev-1"): "Invalid",
    }
    dead = {m["Body"]: error_code(m) for m in await drain_dlq(sqs_client, queues.dlq_url)}
    assert dead == {body: str(code) for body, code in expected.items() if code != "applied"}
    assert await queue_depth(sqs_client, queues.url) == (0, 0)
    # And bodies that fail validation never reached Cognito
    assert emulator.stats()["calls"] == 6


async def test_dead_letter_copies_carry_the_reason_attributes(
    local_stack: LocalStack, queues: QueuePair, sqs_client: SQSClient, seed_pool: SeedPool
) -> None:
    pool = seed_pool(users={"alice": ["ev-1"]})
    [message_id] = await send_bodies(sqs_client, queues.url, [verdict(pool, "nobody", "ev-1")])

    process = local_worker(local_stack, queues, "--until-empty").start()
    assert await process.wait(DRAIN_TIMEOUT_S) == 0, process.log_tail()

    [dead] = await drain_dlq(sqs_client, queues.dlq_url)
    attributes = {k: v.get("StringValue") for k, v in dead["MessageAttributes"].items()}
    assert attributes["ErrorCode"] == "UserNotFoundException"
    assert attributes["SourceMessageId"] == message_id
    assert attributes["Attempts"] == "1"
    assert attributes["ErrorMessage"]
    assert attributes["FailedAt"].endswith("+00:00")


async def test_throttled_messages_are_never_dead_lettered_even_with_max_receive_count_two(
    local_stack: LocalStack,
    queue_factory: QueueFactory,
    sqs_client: SQSClient,
    seed_pool: SeedPool,
    emulator: EmulatorControl,
) -> None:
    # Given a quota far below the worker's rate, untyped throttles, and a queue that redrives
    # to its DLQ on the second receive
    queues = queue_factory(max_receive_count=2)
    emulator.configure(quota_per_region=4, burst=1, fault_untyped_throttle=0.2)
    pool = await one_verdict_per_user(seed_pool, sqs_client, queues.url, 24)

    process = local_worker(local_stack, queues, "--until-empty", FEEDBACK_RATE_LIMIT="20").start()
    assert await process.wait(DRAIN_TIMEOUT_S) == 0, process.log_tail()

    stats = emulator.stats()
    assert stats["throttles"] > 0, "the test must actually have been throttled"
    assert len(applied(emulator.writes(pool))) == 24
    assert await drain_dlq(sqs_client, queues.dlq_url) == []


async def test_injected_internal_errors_lose_nothing(
    local_stack: LocalStack,
    queues: QueuePair,
    sqs_client: SQSClient,
    seed_pool: SeedPool,
    emulator: EmulatorControl,
) -> None:
    emulator.configure(fault_internal_error=0.15)
    pool = seed_pool(users={f"user-{i}": ["ev-1", "ev-2"] for i in range(30)})
    bodies = [verdict(pool, f"user-{i}", f"ev-{j}") for i in range(30) for j in (1, 2)]
    await send_bodies(sqs_client, queues.url, bodies)

    process = local_worker(local_stack, queues, "--until-empty").start()
    assert await process.wait(DRAIN_TIMEOUT_S) == 0, process.log_tail()

    assert emulator.stats()["errors"].get("InternalErrorException", 0) > 0
    assert len(applied(emulator.writes(pool))) == 60
    assert await drain_dlq(sqs_client, queues.dlq_url) == []


async def test_transient_failures_dead_letter_after_max_attempts_with_the_last_error(
    local_stack: LocalStack,
    queues: QueuePair,
    sqs_client: SQSClient,
    seed_pool: SeedPool,
    emulator: EmulatorControl,
) -> None:
    emulator.configure(fault_internal_error=1.0)
    pool = seed_pool(users={"alice": ["ev-1"]})
    body = verdict(pool, "alice", "ev-1")
    await send_bodies(sqs_client, queues.url, [body])

    process = local_worker(local_stack, queues, "--until-empty", FEEDBACK_MAX_ATTEMPTS="3").start()
    assert await process.wait(DRAIN_TIMEOUT_S) == 0, process.log_tail()

    [dead] = await drain_dlq(sqs_client, queues.dlq_url)
    assert dead["Body"] == body
    assert error_code(dead) == "InternalErrorException"
    assert dead["MessageAttributes"]["Attempts"]["StringValue"] == "3"
    assert emulator.stats()["calls"] == 3


async def test_the_newest_verdict_for_an_event_wins(
    local_stack: LocalStack,
    queues: QueuePair,
    sqs_client: SQSClient,
    seed_pool: SeedPool,
    emulator: EmulatorControl,
) -> None:
    # Given several verdicts per event, sent one after another (each later one is newer)
    pool = seed_pool(users={"alice": ["ev-1", "ev-2"], "bob": ["ev-1"]})
    sequence = ["Valid", "Invalid", "Valid", "Invalid", "Invalid", "Valid"]
    latest: dict[tuple[str, str], str] = {}
    for round_, value in enumerate(sequence):
        for user, event in (("alice", "ev-1"), ("alice", "ev-2"), ("bob", "ev-1")):
            flipped = (
                value
                if (round_ + len(user)) % 2
                else {"Valid": "Invalid", "Invalid": "Valid"}[value]
            )
            await send_bodies(sqs_client, queues.url, [verdict(pool, user, event, flipped)])
            latest[(user, event)] = flipped
            await anyio.sleep(0.005)  # distinct SentTimestamps

    process = local_worker(local_stack, queues, "--until-empty").start()
    assert await process.wait(DRAIN_TIMEOUT_S) == 0, process.log_tail()

    assert applied(emulator.writes(pool)) == latest
    assert await drain_dlq(sqs_client, queues.dlq_url) == []


async def test_pools_in_other_regions_are_signed_for_their_own_region(
    local_stack: LocalStack,
    queues: QueuePair,
    sqs_client: SQSClient,
    seed_pool: SeedPool,
    emulator: EmulatorControl,
) -> None:
    # The emulator only knows a pool in its own region, as Cognito does.
    pools = [
        seed_pool(region, {"alice": ["ev-1"]})
        for region in ("eu-west-1", "ap-northeast-1", "us-east-1")
    ]
    await send_bodies(sqs_client, queues.url, [verdict(p, "alice", "ev-1") for p in pools])

    process = local_worker(local_stack, queues, "--until-empty").start()
    assert await process.wait(DRAIN_TIMEOUT_S) == 0, process.log_tail()

    for pool in pools:
        assert applied(emulator.writes(pool)) == {("alice", "ev-1"): "Valid"}
    assert set(emulator.stats()["regions"]) == {"eu-west-1", "ap-northeast-1", "us-east-1"}


async def test_calls_to_one_user_stay_under_the_per_user_limit(
    local_stack: LocalStack,
    queues: QueuePair,
    sqs_client: SQSClient,
    seed_pool: SeedPool,
    emulator: EmulatorControl,
) -> None:
    # Given no regional quota, Cognito's per-user limit, and a worker allowed to go much faster
    emulator.configure(quota_per_region=0, per_user_limit=10)
    events = [f"ev-{i}" for i in range(40)]
    pool = seed_pool(users={"alice": events, "bob": ["ev-1"]})
    await send_bodies(
        sqs_client,
        queues.url,
        [verdict(pool, "alice", e) for e in events] + [verdict(pool, "bob", "ev-1")],
    )

    process = local_worker(local_stack, queues, "--until-empty", FEEDBACK_RATE_LIMIT="200").start()
    assert await process.wait(DRAIN_TIMEOUT_S) == 0, process.log_tail()

    assert emulator.stats()["throttles"] == 0
    assert len(applied(emulator.writes(pool))) == 41


async def test_sigterm_mid_run_exits_in_time_and_leaves_nothing_invisible(
    local_stack: LocalStack,
    queues: QueuePair,
    sqs_client: SQSClient,
    seed_pool: SeedPool,
    emulator: EmulatorControl,
) -> None:
    # Given slow calls, so that SIGTERM arrives with calls in flight and messages waiting
    emulator.configure(latency_s=0.3)
    pool = await one_verdict_per_user(seed_pool, sqs_client, queues.url, 40)
    process = local_worker(
        local_stack, queues, FEEDBACK_CONCURRENCY="4", FEEDBACK_SHUTDOWN_TIMEOUT="5"
    ).start()
    await wait_for_successes(emulator, 4)

    # When it gets SIGTERM
    process.send_signal(signal.SIGTERM)

    # Then it exits 0 within the shutdown timeout (plus one short poll), with nothing in flight
    with anyio.fail_after(5 + 1 + 4):
        assert await process.wait(15) == 0
    assert await queue_depth(sqs_client, queues.url) == (
        40 - len(applied(emulator.writes(pool))),
        0,
    )
    assert process.events("worker.stopped")
    # And a second run finishes the rest without loss
    rest = local_worker(local_stack, queues, "--until-empty").start()
    assert await rest.wait(DRAIN_TIMEOUT_S) == 0, rest.log_tail()
    assert len(applied(emulator.writes(pool))) == 40
    assert await drain_dlq(sqs_client, queues.dlq_url) == []


async def test_sigkill_mid_run_then_restart_loses_nothing(
    local_stack: LocalStack,
    queue_factory: QueueFactory,
    sqs_client: SQSClient,
    seed_pool: SeedPool,
    emulator: EmulatorControl,
) -> None:
    queues = queue_factory(visibility_timeout_s=6)
    emulator.configure(latency_s=0.2)
    pool = await one_verdict_per_user(seed_pool, sqs_client, queues.url, 40)
    first = local_worker(
        local_stack, queues, FEEDBACK_VISIBILITY_TIMEOUT="6", FEEDBACK_SHUTDOWN_TIMEOUT="2"
    ).start()
    await wait_for_successes(emulator, 5)

    first.send_signal(signal.SIGKILL)
    await first.wait(10)

    second = local_worker(
        local_stack,
        queues,
        "--until-empty",
        FEEDBACK_VISIBILITY_TIMEOUT="6",
        FEEDBACK_SHUTDOWN_TIMEOUT="2",
    ).start()
    assert await second.wait(DRAIN_TIMEOUT_S) == 0, second.log_tail()
    assert len(applied(emulator.writes(pool))) == 40
    assert await drain_dlq(sqs_client, queues.dlq_url) == []


async def test_an_identity_denied_everywhere_pauses_the_worker_and_it_resumes_by_itself(
    local_stack: LocalStack,
    queues: QueuePair,
    sqs_client: SQSClient,
    seed_pool: SeedPool,
    emulator: EmulatorControl,
) -> None:
    # Given an IAM policy that allows the worker nothing, and verdicts for two pools
    emulator.configure(denied_access_keys=["testing"])
    first = await one_verdict_per_user(seed_pool, sqs_client, queues.url, 8)
    second = await one_verdict_per_user(seed_pool, sqs_client, queues.url, 7)
    port = free_port()
    process = local_worker(local_stack, queues, FEEDBACK_METRICS_PORT=str(port)).start()
    try:
        # When the worker meets the denial in two pools with no success anywhere, the evidence
        # points at its own identity: it pauses whole, unready but alive, dead-letters nothing
        with anyio.fail_after(30):
            while not [e for e in process.events("scope.paused") if e["scope"] == "worker"]:
                await anyio.sleep(0.1)
        await anyio.sleep(1)
        assert await process.readyz() == 503
        assert await process.healthz() == 200
        assert emulator.stats()["successes"] == 0
        assert await drain_dlq(sqs_client, queues.dlq_url) == []
        # Only a probe's worth stays held here; the rest was parked back in the queue
        with anyio.fail_after(10):
            while (await process.metrics()).get("feedback_worker_messages_held", 99) > 2:
                await anyio.sleep(0.2)

        # Then once access is restored it resumes by itself and applies everything
        emulator.configure(denied_access_keys=[])
        with anyio.fail_after(120):
            while len(applied(emulator.writes(first))) + len(applied(emulator.writes(second))) < 15:
                await anyio.sleep(0.2)
        assert await process.readyz() == 200
        process.send_signal(signal.SIGTERM)
        assert await process.wait(30) == 0
    finally:
        process.kill()
    assert await drain_dlq(sqs_client, queues.dlq_url) == []
    outcomes = Counter(r["outcome"] for r in process.events("message.done"))
    assert outcomes["dead_lettered"] == 0


async def test_fifo_queues_are_processed_in_order_within_a_group(
    local_stack: LocalStack,
    queue_factory: QueueFactory,
    sqs_client: SQSClient,
    seed_pool: SeedPool,
    emulator: EmulatorControl,
) -> None:
    queues = queue_factory(fifo=True)
    pool = seed_pool(users={"alice": ["ev-1"], "bob": ["ev-1"]})
    values = ["Valid", "Invalid", "Valid", "Invalid"]
    for i, value in enumerate(values):
        for user in ("alice", "bob"):
            await sqs_client.send_message(
                QueueUrl=queues.url,
                MessageBody=verdict(
                    pool, user, "ev-1", value if user == "alice" else values[-1 - i]
                ),
                MessageGroupId=user,
                MessageDeduplicationId=f"{user}-{i}",
            )
    await sqs_client.send_message(
        QueueUrl=queues.url,
        MessageBody="{oops",
        MessageGroupId="alice",
        MessageDeduplicationId="bad",
    )

    process = local_worker(local_stack, queues, "--until-empty").start()
    assert await process.wait(DRAIN_TIMEOUT_S) == 0, process.log_tail()

    assert applied(emulator.writes(pool)) == {
        ("alice", "ev-1"): "Invalid",
        ("bob", "ev-1"): "Valid",
    }
    [dead] = await drain_dlq(sqs_client, queues.dlq_url)
    assert dead["Body"] == "{oops"
    assert dead["Attributes"]["MessageGroupId"] == "alice"


async def test_a_cognito_outage_dead_letters_nothing_and_reports_unready(
    local_stack: LocalStack,
    queues: QueuePair,
    sqs_client: SQSClient,
    seed_pool: SeedPool,
    emulator: EmulatorControl,
) -> None:
    # Given every connection to Cognito dropped, and a worker that would dead-letter a message
    # after two failures of its own
    emulator.configure(fault_drop_connection=1.0)
    pool = await one_verdict_per_user(seed_pool, sqs_client, queues.url, 12)
    port = free_port()
    process = local_worker(
        local_stack,
        queues,
        "--until-empty",
        FEEDBACK_METRICS_PORT=str(port),
        FEEDBACK_MAX_ATTEMPTS="2",
    ).start()
    try:
        # When the outage lasts, the worker says so and keeps its messages; the only region
        # it calls is down, so it cannot work at all: unready, naming the region
        with anyio.fail_after(30):
            while not process.events("region.down"):
                await anyio.sleep(0.1)
        readiness = await process.readiness()
        assert readiness is not None
        assert readiness["http_status"] == 503
        assert [down.split(":")[0] for down in readiness["regions_down"]] == ["us-east-1"]
        await anyio.sleep(3)
        assert await drain_dlq(sqs_client, queues.dlq_url) == []

        # Then when Cognito is back everything is applied, and nothing was dead-lettered
        emulator.configure(fault_drop_connection=0.0)
        assert await process.wait(DRAIN_TIMEOUT_S) == 0, process.log_tail()
    finally:
        process.kill()
    assert len(applied(emulator.writes(pool))) == 12
    assert await drain_dlq(sqs_client, queues.dlq_url) == []
    assert process.events("region.up")
