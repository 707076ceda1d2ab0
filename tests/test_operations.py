"""Operating the worker: /metrics, /healthz, /readyz and `feedback-worker healthcheck`, checked
against a real worker process draining real messages on the local stack."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request

import anyio
from types_aiobotocore_sqs.client import SQSClient

from feedback_local.stack import EmulatorControl, LocalStack, QueuePair
from tests.conftest import SeedPool
from tests.support.messages import applied, send_bodies, verdict
from tests.support.ports import free_port
from tests.support.worker_process import local_worker

SECRET_USER = "alice.secret@example.com"


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        body: bytes = response.read()
        return body.decode()


def sample(metrics: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name + labels)} ([0-9.e+-]+)$", metrics, re.MULTILINE)
    assert match, f"{name}{labels} not in /metrics"
    return float(match.group(1))


def healthcheck(port: int, *args: str) -> int:
    return subprocess.run(
        [sys.executable, "-m", "worker", "healthcheck", "--metrics-port", str(port), *args],
        capture_output=True,
        check=False,
        timeout=30,
    ).returncode


async def test_metrics_health_and_healthcheck_follow_a_running_worker(
    local_stack: LocalStack,
    queues: QueuePair,
    sqs_client: SQSClient,
    seed_pool: SeedPool,
    emulator: EmulatorControl,
) -> None:
    # Given a worker with its metrics port on, draining a few verdicts (one dead-lettered)
    pool = seed_pool("eu-west-1", {SECRET_USER: ["ev-1", "ev-2"]})
    await send_bodies(
        sqs_client,
        queues.url,
        [verdict(pool, SECRET_USER, "ev-1"), verdict(pool, SECRET_USER, "ev-2"), "{bad"],
    )
    port = free_port()
    process = local_worker(local_stack, queues, FEEDBACK_METRICS_PORT=str(port)).start()
    try:
        with anyio.fail_after(60):
            while len(applied(emulator.writes(pool))) < 2 or await process.readyz() != 200:
                await anyio.sleep(0.2)

        # Then the probes say alive and ready, and so does the healthcheck command
        assert await process.healthz() == 200
        assert healthcheck(port) == 0
        assert healthcheck(port, "--liveness") == 0

        # And /metrics counts what happened, by bounded labels only
        with anyio.fail_after(30):
            while "feedback_worker_messages_dead_lettered_total" not in (metrics := scrape(port)):
                await anyio.sleep(0.2)
        assert sample(metrics, "feedback_worker_messages_received_total") == 3
        assert (
            sample(metrics, "feedback_worker_messages_applied_total", '{region="eu-west-1"}') == 2
        )
        assert (
            sample(
                metrics, "feedback_worker_messages_dead_lettered_total", '{code="MalformedJson"}'
            )
            == 1
        )
        assert sample(metrics, "feedback_worker_allowed_rate", '{region="eu-west-1"}') > 0
        assert sample(metrics, "feedback_worker_cognito_call_seconds_count") == 2
        assert sample(metrics, "feedback_worker_paused") == 0
        assert "process_resident_memory_bytes" in metrics
        assert SECRET_USER not in metrics
        # Nor is the username anywhere in the logs
        assert SECRET_USER not in process.log_path.read_text()
    finally:
        process.kill()

    # When the worker is gone, the healthcheck says so
    assert healthcheck(port) == 1
