"""`feedback-worker status`: the queues, the dead letters by ErrorCode and the workers' readiness
on one screen, or as JSON, against moto's SQS and two stand-in workers on loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from types_aiobotocore_sqs.client import SQSClient

from feedback_local.stack import QueuePair
from tests.support.messages import queue_depth, send_bodies
from tests.support.ports import free_port
from tests.test_cli import drain, restore_logging, run_cli
from tests.test_dlq import dead_letter, verdict_body
from worker import exitcodes

pytestmark = pytest.mark.usefixtures(restore_logging.__name__)

SCREEN_LINES = 24


@pytest.fixture
async def workers() -> AsyncIterator[tuple[str, str]]:
    """Two stand-in workers: one ready, one paused."""

    async def ready(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "reason": "ok"})

    async def paused(_request: web.Request) -> web.Response:
        reason = "paused by a systemic failure: AccessDeniedException: no"
        return web.json_response({"status": "fail", "reason": reason}, status=503)

    runners = []
    urls = []
    for handler in (ready, paused):
        app = web.Application()
        app.router.add_get("/readyz", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        urls.append(site.name)
    try:
        yield urls[0], urls[1]
    finally:
        for runner in runners:
            await runner.cleanup()


async def fill(sqs: SQSClient, queues: QueuePair) -> None:
    """Three visible messages and one in flight; three dead letters of two codes."""
    await send_bodies(sqs, queues.url, [verdict_body(f"u{n}", "e") for n in range(4)])
    await sqs.receive_message(QueueUrl=queues.url, MaxNumberOfMessages=1, VisibilityTimeout=300)
    await dead_letter(sqs, queues.dlq_url, [verdict_body("a", "e")] * 2, "UserNotFoundException")
    await dead_letter(sqs, queues.dlq_url, [verdict_body("b", "e")], "InternalErrorException")


async def test_status_as_json_has_the_queues_the_dead_letters_and_each_workers_readiness(
    aws_env: dict[str, str],
    queues: QueuePair,
    sqs_client: SQSClient,
    workers: tuple[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    await fill(sqs_client, queues)
    ready, paused = workers
    code = await run_cli("status", "--json", "--worker", ready, "--worker", paused)
    assert code == exitcodes.OK
    document = json.loads(capsys.readouterr().out)
    source, dead = document["source"], document["dead_letter"]
    assert (source["visible"], source["in_flight"], source["delayed"]) == (3, 1, 0)
    # moto's queue is not on AWS: CloudWatch has no age for it, and status says so.
    assert source["oldest_age_s"] is None
    assert "not on AWS" in source["oldest_age_note"]
    assert dead["visible"] == 3
    assert dead["by_error_code"] == {"UserNotFoundException": 2, "InternalErrorException": 1}
    assert [(w["url"], w["ready"]) for w in document["workers"]] == [
        (ready, True),
        (paused, False),
    ]
    assert "paused" in document["workers"][1]["reason"]
    # Every dead letter it read is back.
    assert len(await drain(sqs_client, queues.dlq_url)) == 3


async def test_status_fits_one_screen_and_says_what_it_cannot_reach(
    aws_env: dict[str, str],
    queues: QueuePair,
    sqs_client: SQSClient,
    workers: tuple[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    await fill(sqs_client, queues)
    ready, _ = workers
    gone = f"http://127.0.0.1:{free_port()}"
    assert await run_cli("status", "--worker", ready, "--worker", gone) == exitcodes.OK
    out = capsys.readouterr().out
    assert len(out.splitlines()) <= SCREEN_LINES
    assert "visible 3   in flight 1   delayed 0" in out
    assert "by ErrorCode (sample of 3): UserNotFoundException 2, InternalErrorException 1" in out
    assert f"{ready}  ready" in out
    assert f"{gone}  NOT READY: not reachable" in out


async def test_status_of_a_queue_that_does_not_exist_exits_one_and_still_shows_the_rest(
    aws_env: dict[str, str],
    queues: QueuePair,
    sqs_client: SQSClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    missing = queues.url + "-gone"
    code = await run_cli("status", "--queue-url", missing, "--metrics-port", "0")
    assert code == exitcodes.FAILURE
    out = capsys.readouterr().out
    assert f"cannot read it: queue {missing} does not exist" in out
    assert "visible 0   in flight 0" in out  # the DLQ
    assert await queue_depth(sqs_client, queues.dlq_url) == (0, 0)
