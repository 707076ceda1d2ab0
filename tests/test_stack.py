"""The local stack: both servers start and answer, queues come with a redrive policy, the
environment is complete, and nothing outlives a stop (or a killed parent)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import psutil
import pytest
from types_aiobotocore_sqs.client import SQSClient

from feedback_local.stack import AsyncEmulatorControl, LocalStack, QueuePair

if TYPE_CHECKING:
    from tests.conftest import SeedPool

EXIT_WAIT_S = 15.0
_RUN_FOREVER = "import sys; from feedback_local.stack import run_forever; sys.exit(run_forever())"


def _gone(pids: list[int]) -> bool:
    """Wait (bounded) for every pid to exit; True when none is left."""
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(procs, timeout=EXIT_WAIT_S)
    return not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]


def test_a_stack_starts_both_servers_and_stop_leaves_no_process_behind() -> None:
    stack = LocalStack(region="eu-west-1").start()
    try:
        pids = stack.pids()
        descendants = [c.pid for p in pids for c in psutil.Process(p).children(recursive=True)]
        assert len(pids) == 2
        assert stack.emulator.health()["status"] == "ok"
        assert stack.create_queues().arn.startswith("arn:aws:sqs:eu-west-1:")
    finally:
        stack.stop()

    assert _gone(pids + descendants)
    with pytest.raises(RuntimeError, match="not started"):
        _ = stack.sqs_endpoint


def test_an_external_sqs_endpoint_starts_only_the_emulator(local_stack: LocalStack) -> None:
    with LocalStack(sqs_endpoint=local_stack.sqs_endpoint) as stack:
        assert stack.sqs_endpoint == local_stack.sqs_endpoint
        assert len(stack.pids()) == 1
        assert stack.cognito_endpoint != local_stack.cognito_endpoint


def test_emulator_arguments_reach_the_emulator(local_stack: LocalStack) -> None:
    args = ["--quota-per-region", "3", "--denied-access-key", "AKDENIED"]
    with LocalStack(sqs_endpoint=local_stack.sqs_endpoint, emulator_args=args) as stack:
        config = stack.emulator.config()
    assert (config["quota_per_region"], config["denied_access_keys"]) == (3.0, ["AKDENIED"])


@pytest.mark.parametrize("fifo", [False, True])
async def test_queues_come_with_a_redrive_policy_to_their_own_dlq(
    local_stack: LocalStack, sqs_client: SQSClient, fifo: bool
) -> None:
    pair = local_stack.create_queues(max_receive_count=3, fifo=fifo, visibility_timeout_s=7)
    try:
        attrs = (await sqs_client.get_queue_attributes(QueueUrl=pair.url, AttributeNames=["All"]))[
            "Attributes"
        ]
        dlq_arn = (
            await sqs_client.get_queue_attributes(
                QueueUrl=pair.dlq_url, AttributeNames=["QueueArn"]
            )
        )["Attributes"]["QueueArn"]
    finally:
        local_stack.delete_queues(pair)

    assert json.loads(attrs["RedrivePolicy"]) == {
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": 3,
    }
    assert (attrs["QueueArn"], pair.dlq_arn, attrs["VisibilityTimeout"]) == (pair.arn, dlq_arn, "7")
    assert pair.fifo is fifo
    assert pair.url.endswith(".fifo") is fifo
    assert (attrs.get("FifoQueue") == "true") is fifo


async def test_a_message_received_too_often_moves_to_the_dlq(
    local_stack: LocalStack, sqs_client: SQSClient
) -> None:
    pair = local_stack.create_queues(max_receive_count=1, visibility_timeout_s=0)
    try:
        await sqs_client.send_message(QueueUrl=pair.url, MessageBody="verdict")
        first = await sqs_client.receive_message(QueueUrl=pair.url, WaitTimeSeconds=1)
        second = await sqs_client.receive_message(QueueUrl=pair.url, WaitTimeSeconds=0)
        moved = await sqs_client.receive_message(QueueUrl=pair.dlq_url, WaitTimeSeconds=1)
    finally:
        local_stack.delete_queues(pair)

    assert len(first.get("Messages", [])) == 1
    assert second.get("Messages", []) == []
    assert [m["Body"] for m in moved.get("Messages", [])] == ["verdict"]


def test_the_environment_names_every_endpoint_the_region_and_the_queues(
    local_stack: LocalStack, queues: QueuePair
) -> None:
    env = local_stack.env(queues)

    assert env["AWS_ENDPOINT_URL_SQS"] == local_stack.sqs_endpoint
    assert env["AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER"] == local_stack.cognito_endpoint
    assert env["AWS_DEFAULT_REGION"] == env["AWS_REGION"] == local_stack.region
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == ("testing", "testing")
    assert (env["FEEDBACK_QUEUE_URL"], env["FEEDBACK_DLQ_URL"]) == (queues.url, queues.dlq_url)
    assert "FEEDBACK_QUEUE_URL" not in local_stack.env()


def test_aws_env_applies_the_stack_environment_to_the_process(
    aws_env: dict[str, str], queues: QueuePair
) -> None:
    assert {k: os.environ[k] for k in aws_env} == aws_env
    assert os.environ["FEEDBACK_QUEUE_URL"] == queues.url


async def test_the_async_control_client_seeds_and_reads_writes(
    local_stack: LocalStack, seed_pool: SeedPool
) -> None:
    pool = seed_pool(users={"alice": ["ev-1"]})
    async with AsyncEmulatorControl(local_stack.cognito_endpoint) as control:
        await control.seed({"pools": [{"id": pool, "users": {"bob": ["ev-2"]}}]})
        writes = await control.writes(pool)
        config = await control.configure(per_user_limit=4)

    assert sorted(r["username"] for r in writes["events"]) == ["alice", "bob"]
    assert config["per_user_limit"] == 4.0


def _start_run_forever() -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen([sys.executable, "-c", _RUN_FOREVER], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    exports: dict[str, str] = {}
    while "FEEDBACK_DLQ_URL" not in exports:
        line = proc.stdout.readline()
        assert line.startswith("export "), line
        key, _, value = line.removeprefix("export ").strip().partition("=")
        exports[key] = value
    return proc, exports


def test_run_forever_prints_the_exports_and_stops_everything_on_sigterm() -> None:
    proc, exports = _start_run_forever()
    try:
        children = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=EXIT_WAIT_S)
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    assert code == 0
    assert {
        "AWS_ENDPOINT_URL_SQS",
        "AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER",
        "FEEDBACK_QUEUE_URL",
        "FEEDBACK_DLQ_URL",
        "AWS_REGION",
    } <= exports.keys()
    assert len(children) >= 2
    assert _gone(children)


def test_the_servers_exit_when_their_parent_is_killed() -> None:
    proc, _ = _start_run_forever()
    try:
        children = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        proc.kill()  # no atexit, no stop(): only the closed stdin tells the servers
        proc.wait()
    finally:
        if proc.stdout is not None:
            proc.stdout.close()

    assert len(children) >= 2
    assert _gone(children)
