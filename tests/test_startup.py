"""Starting the worker: every start-up fault is one line on stderr with exit code 2 and no
traceback; --until-empty gives up when it cannot work; the first log line says what runs.

Each test runs the real `python -m worker` process against the local stack."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping

import anyio
import pytest
from types_aiobotocore_sqs.client import SQSClient

from feedback_local.stack import LocalStack, QueuePair
from tests.conftest import SeedPool
from tests.support.messages import queue_depth, send_bodies, verdict
from tests.support.ports import free_port
from tests.support.worker_process import TEST_WORKER_ENV, WorkerProcess, worker_command
from worker import __version__, exitcodes

COMMAND_TIMEOUT_S = 60
GIVE_UP_AFTER_S = 2
HASH_KEY = "startup-test-hash-key-0123456789"


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FEEDBACK_"))}
    return env | {"FEEDBACK_LOG_FORMAT": "json", "AWS_EC2_METADATA_DISABLED": "true", **extra}


def feedback_worker(*argv: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", *argv],
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )


def assert_one_line_config_error(result: subprocess.CompletedProcess[str], *parts: str) -> None:
    assert result.returncode == exitcodes.CONFIG_ERROR, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "configuration error" in line]
    assert len(errors) == 1, result.stderr
    for part in parts:
        assert part in errors[0]


def without_region(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in ("AWS_REGION", "AWS_DEFAULT_REGION")}


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


# -- one line, exit code 2 -------------------------------------------------------------------


def test_no_region_and_a_queue_url_without_one_says_to_set_aws_region(
    local_stack: LocalStack, queues: QueuePair
) -> None:
    env = without_region(local_stack.env(queues))
    result = feedback_worker("run", "--metrics-port", "0", env=env)
    assert_one_line_config_error(result, "AWS_REGION", "set AWS_REGION")


async def test_with_no_region_set_the_region_comes_from_an_aws_queue_url(
    local_stack: LocalStack, queues: QueuePair, sqs_client: SQSClient, seed_pool: SeedPool
) -> None:
    # Given AWS-style URLs of the stack's queues (moto finds a queue by its name) and no region
    pool = seed_pool(users={"ann": ["ev-1"]})
    await send_bodies(sqs_client, queues.url, [verdict(pool, "ann", "ev-1")])
    name, dlq_name = queues.url.rsplit("/", 1)[1], queues.dlq_url.rsplit("/", 1)[1]
    aws_url = f"https://sqs.{local_stack.region}.amazonaws.com/123456789012/"
    env = without_region(local_stack.env(queues)) | {
        "FEEDBACK_QUEUE_URL": aws_url + name,
        "FEEDBACK_DLQ_URL": aws_url + dlq_name,
        "FEEDBACK_METRICS_PORT": "0",
    }
    # When the worker drains the queue
    process = WorkerProcess(TEST_WORKER_ENV | env, worker_command("--until-empty")).start()
    try:
        assert await process.wait(COMMAND_TIMEOUT_S) == 0, process.log_tail()
    finally:
        process.kill()
    # Then it signed for the URL's region, and the verdict was applied
    [started] = process.events("worker.started")
    assert started["sqs_region"] == local_stack.region
    assert await queue_depth(sqs_client, queues.url) == (0, 0)


def test_a_metrics_port_in_use_is_one_line_naming_the_port(
    local_stack: LocalStack, queues: QueuePair, busy_port: int
) -> None:
    env = local_stack.env(queues) | {"FEEDBACK_METRICS_PORT": str(busy_port)}
    result = feedback_worker("run", env=env)
    assert_one_line_config_error(result, "FEEDBACK_METRICS_PORT", f"port {busy_port}", "in use")


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("0.0.0.0:9464", "must be an IP address"),
        ("300.1.2.3", "must be an IP address"),
        ("192.0.2.1", "is not an address of this host"),  # TEST-NET-1: never local
        ("no-such-host.invalid", "does not resolve"),
    ],
)
def test_a_bad_bind_address_is_one_line_naming_it(
    local_stack: LocalStack, queues: QueuePair, address: str, reason: str
) -> None:
    env = local_stack.env(queues) | {
        "FEEDBACK_METRICS_BIND": address,
        "FEEDBACK_METRICS_PORT": str(free_port()),
    }
    result = feedback_worker("run", env=env)
    assert_one_line_config_error(result, "FEEDBACK_METRICS_BIND", reason)


def test_a_setting_that_is_not_readable_text_is_one_line_quoting_nothing(
    local_stack: LocalStack, queues: QueuePair
) -> None:
    env = {k.encode(): v.encode() for k, v in clean_env(local_stack.env(queues)).items()}
    env[b"FEEDBACK_USERNAME_HASH_KEY"] = b"secret-part-\xff\xfe-of-the-key"
    result = subprocess.run(
        [sys.executable, "-m", "worker", "run", "--metrics-port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    assert_one_line_config_error(result, "FEEDBACK_USERNAME_HASH_KEY", "not readable")
    assert "secret-part" not in result.stderr


def test_a_misspelt_variable_is_named_with_the_closest_setting(
    local_stack: LocalStack, queues: QueuePair
) -> None:
    env = local_stack.env(queues) | {"FEEDBACK_CONCURRENCYY": "4"}
    result = feedback_worker("run", env=env)
    assert_one_line_config_error(
        result, "FEEDBACK_CONCURRENCYY", "did you mean FEEDBACK_CONCURRENCY?"
    )


@pytest.mark.parametrize("which", ["FEEDBACK_QUEUE_URL", "FEEDBACK_DLQ_URL"])
def test_a_queue_that_does_not_exist_stops_run_with_a_clear_message(
    local_stack: LocalStack, queues: QueuePair, which: str
) -> None:
    env = local_stack.env(queues) | {"FEEDBACK_METRICS_PORT": "0"}
    env[which] += "-gone"
    result = feedback_worker("run", env=env)
    assert_one_line_config_error(result, which, f"queue {env[which]} does not exist")


# -- --until-empty gives up ----------------------------------------------------------------------


async def test_until_empty_gives_up_when_the_queue_cannot_be_reached(
    local_stack: LocalStack, queues: QueuePair
) -> None:
    # Given an SQS endpoint where nothing listens
    env = local_stack.env(queues) | {
        "AWS_ENDPOINT_URL_SQS": f"http://127.0.0.1:{free_port()}",
        "FEEDBACK_METRICS_PORT": "0",
    }
    process = WorkerProcess(
        TEST_WORKER_ENV | env,
        worker_command("--until-empty", "--give-up-after", str(GIVE_UP_AFTER_S)),
    ).start()
    try:
        code = await process.wait(COMMAND_TIMEOUT_S)
    finally:
        process.kill()
    assert code == exitcodes.FAILURE, process.log_tail()
    [gave_up] = process.events("worker.gave_up")
    assert "cannot receive from SQS" in gave_up["reason"]


async def test_until_empty_gives_up_when_cognito_refuses_the_credentials_and_keeps_the_message(
    local_stack: LocalStack, queues: QueuePair, sqs_client: SQSClient, seed_pool: SeedPool
) -> None:
    # Given a verdict, and credentials Cognito does not know (moto's SQS takes any)
    pool = seed_pool(users={"ann": ["ev-1"]})
    await send_bodies(sqs_client, queues.url, [verdict(pool, "ann", "ev-1")])
    env = local_stack.env(queues) | {
        "AWS_ACCESS_KEY_ID": "AKIAUNKNOWNTOCOGNITO",
        "FEEDBACK_METRICS_PORT": "0",
    }
    process = WorkerProcess(
        TEST_WORKER_ENV | env,
        worker_command("--until-empty", "--give-up-after", str(GIVE_UP_AFTER_S)),
    ).start()
    try:
        code = await process.wait(COMMAND_TIMEOUT_S)
    finally:
        process.kill()
    # Then it exits 1 saying why, and the verdict is back in the queue, not dead-lettered
    assert code == exitcodes.FAILURE, process.log_tail()
    [gave_up] = process.events("worker.gave_up")
    assert "paused" in gave_up["reason"]
    with anyio.fail_after(10):
        while await queue_depth(sqs_client, queues.url) != (1, 0):
            await anyio.sleep(0.1)
    assert await queue_depth(sqs_client, queues.dlq_url) == (0, 0)


# -- the start-up log line ---------------------------------------------------------------------


async def test_the_start_up_line_has_the_version_and_the_settings_with_the_secret_hidden(
    local_stack: LocalStack, queues: QueuePair
) -> None:
    env = local_stack.env(queues) | {
        "FEEDBACK_METRICS_PORT": "0",
        "FEEDBACK_USERNAME_HASH_KEY": HASH_KEY,
        "FEEDBACK_CONCURRENCY": "5",
    }
    process = WorkerProcess(TEST_WORKER_ENV | env, worker_command("--until-empty")).start()
    try:
        assert await process.wait(COMMAND_TIMEOUT_S) == 0, process.log_tail()
    finally:
        process.kill()
    [started] = process.events("worker.started")
    assert started["version"] == __version__
    assert started["settings"]["concurrency"] == 5
    assert started["settings"]["queue_url"] == queues.url
    assert started["settings"]["username_hash_key"] == "(set)"
    assert HASH_KEY not in process.log_path.read_text()
