"""Stopping: an idle worker stops promptly on SIGTERM, says what it waits for, and never leaves
hidden a message that a poll brought after the stop. The real worker process on moto's SQS."""

from __future__ import annotations

import signal
import time

import anyio
from types_aiobotocore_sqs.client import SQSClient

from feedback_local.stack import LocalStack, QueuePair
from tests.support.messages import queue_depth, send_bodies, verdict
from tests.support.worker_process import TEST_WORKER_ENV, WorkerProcess

START_TIMEOUT_S = 20.0
# "About a second": the default poll wait is one second; the rest is process teardown.
PROMPT_STOP_S = 3.0


def idle_worker(stack: LocalStack, queues: QueuePair, **env: str) -> WorkerProcess:
    return WorkerProcess(
        TEST_WORKER_ENV | {**stack.env(queues), "FEEDBACK_METRICS_PORT": "0", **env}
    )


async def started(process: WorkerProcess) -> None:
    with anyio.fail_after(START_TIMEOUT_S):
        while not process.events("worker.started"):
            await anyio.sleep(0.05)


async def test_an_idle_worker_with_the_default_wait_stops_about_a_second_after_sigterm(
    local_stack: LocalStack, queues: QueuePair
) -> None:
    # Given an idle worker with the product's default poll wait (an empty value is unset)
    process = idle_worker(local_stack, queues, FEEDBACK_WAIT_TIME="").start()
    try:
        await started(process)
        await anyio.sleep(1.5)  # in the middle of some poll
        # When it gets SIGTERM
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = await process.wait(30)
        took = time.monotonic() - signalled
    finally:
        process.kill()
    # Then it exits cleanly within about a second
    assert code == 0, process.log_tail()
    assert took < PROMPT_STOP_S, process.log_tail()


async def test_a_stop_says_it_waits_for_the_receive_in_flight(
    local_stack: LocalStack, queues: QueuePair
) -> None:
    # Given an idle worker with a long poll wait
    process = idle_worker(local_stack, queues, FEEDBACK_WAIT_TIME="6").start()
    try:
        await started(process)
        await anyio.sleep(1)
        # When it gets SIGTERM in the middle of a poll
        process.send_signal(signal.SIGTERM)
        assert await process.wait(30) == 0, process.log_tail()
    finally:
        process.kill()
    # Then its stopping line says what it waits for
    [stopping] = process.events("worker.stopping")
    assert any("receive in flight" in item for item in stopping["waiting_for"]), stopping


async def test_a_message_a_poll_brings_after_the_deadline_is_released_not_hidden(
    local_stack: LocalStack, queues: QueuePair, sqs_client: SQSClient
) -> None:
    # Given an idle worker in a long poll, with a shutdown deadline shorter than that poll
    process = idle_worker(
        local_stack, queues, FEEDBACK_WAIT_TIME="8", FEEDBACK_SHUTDOWN_TIMEOUT="1"
    ).start()
    try:
        await started(process)
        await anyio.sleep(0.5)
        # When it is told to stop, and a message arrives after its deadline has passed
        process.send_signal(signal.SIGTERM)
        await anyio.sleep(2)
        [message_id] = await send_bodies(
            sqs_client, queues.url, [verdict("us-east-1_Stop", "ann", "ev-1")]
        )
        assert await process.wait(30) == 0, process.log_tail()
    finally:
        process.kill()
    # Then the poll in flight, which took it, handed it straight back: nothing is hidden
    assert process.events("receive.released_after_stop"), process.log_tail()
    assert await queue_depth(sqs_client, queues.url) == (1, 0)
    response = await sqs_client.receive_message(
        QueueUrl=queues.url, WaitTimeSeconds=1, MessageSystemAttributeNames=["All"]
    )
    [again] = response["Messages"]
    assert again["MessageId"] == message_id
    assert again["Attributes"]["ApproximateReceiveCount"] == "2"


async def test_a_second_signal_lets_the_poll_in_flight_answer_and_releases_what_it_brings(
    local_stack: LocalStack, queues: QueuePair, sqs_client: SQSClient
) -> None:
    # Given an idle worker in a long poll
    process = idle_worker(local_stack, queues, FEEDBACK_WAIT_TIME="5").start()
    try:
        await started(process)
        await anyio.sleep(0.3)
        # When a second signal follows the first, and a message arrives just after it
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(5):
            while not process.events("worker.stopping"):
                await anyio.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        await send_bodies(sqs_client, queues.url, [verdict("us-east-1_Stop", "bob", "ev-1")])
        code = await process.wait(30)
    finally:
        process.kill()
    # Then it exits forced, and the message is not hidden for a visibility timeout
    assert code == 130, process.log_tail()
    assert process.events("worker.forced_exit")
    with anyio.fail_after(5):
        while await queue_depth(sqs_client, queues.url) != (1, 0):
            await anyio.sleep(0.1)
