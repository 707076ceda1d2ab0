"""fauxqs, a fast SQS emulator, as a child process on loopback; and a check that it is fast.

moto's SQS costs O(queue depth) per call (FACTS.md), which would make the queue, not Cognito's
quota, the bottleneck of a backlog benchmark. fauxqs keeps queues in indexed in-memory
structures; ``probe_latency`` shows that receive + delete stay flat as the queue grows.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import statistics
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self
from urllib.parse import urlparse

from tests.bench import aws
from tests.support.messages import send_bodies

READY_PREFIX = "FAUXQS_URL="
START_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0
PROBE_CYCLES = 30
SEND_BATCH = 10


def stop_group(proc: subprocess.Popen[bytes], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM a server's process group, SIGKILL it if it outlives `grace_s`, and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(grace_s)


class FauxqsServer:
    """``with FauxqsServer(node, node_dir) as sqs:`` serves SQS at ``sqs.url``."""

    def __init__(self, node: Path, node_dir: Path, log_path: Path) -> None:
        self._argv = [str(node), "--disable-warning=ExperimentalWarning", "fauxqs_server.mjs"]
        self._cwd = node_dir
        self._log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.url = ""

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("fauxqs is not running")
        return self._proc.pid

    @property
    def host_port(self) -> tuple[str, int]:
        parsed = urlparse(self.url)
        assert parsed.hostname is not None
        assert parsed.port is not None
        return parsed.hostname, parsed.port

    def start(self) -> Self:
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self._log_path.open("wb")
        # stdin is a pipe we never write: fauxqs exits when it closes, even if we are killed.
        self._proc = subprocess.Popen(
            self._argv,
            cwd=self._cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            start_new_session=True,
        )
        try:
            self.url = self._await_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _await_ready(self) -> str:
        assert self._proc is not None
        assert self._proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        with selectors.DefaultSelector() as selector:
            selector.register(self._proc.stdout, selectors.EVENT_READ)
            while (remaining := deadline - time.monotonic()) > 0:
                if not selector.select(remaining):
                    continue
                line = self._proc.stdout.readline().decode(errors="replace").strip()
                if line.startswith(READY_PREFIX):
                    return line.removeprefix(READY_PREFIX)
                if not line and self._proc.poll() is not None:
                    break
        raise RuntimeError(f"fauxqs did not start; see {self._log_path}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_group(proc)
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass(frozen=True)
class LatencyProbe:
    """Milliseconds of one receive(10) + delete_batch(10) round at a given queue depth."""

    depth: int
    p50_ms: float
    p99_ms: float
    mean_ms: float


async def probe_latency(endpoint: str, depths: tuple[int, ...]) -> list[LatencyProbe]:
    """Time receive + delete cycles on a queue held at each depth (re-filled between rounds)."""
    results: list[LatencyProbe] = []
    async with aws.sqs_client(endpoint) as sqs:
        url = (await sqs.create_queue(QueueName=f"bench-probe-{uuid.uuid4().hex[:8]}"))["QueueUrl"]
        body = '{"probe": true}'
        depth = 0
        try:
            for target in sorted(depths):
                await send_bodies(sqs, url, [body] * (target - depth))
                depth = target
                samples: list[float] = []
                for _ in range(PROBE_CYCLES):
                    started = time.perf_counter()
                    got = await sqs.receive_message(
                        QueueUrl=url, MaxNumberOfMessages=SEND_BATCH, VisibilityTimeout=600
                    )
                    messages = got.get("Messages", [])
                    await sqs.delete_message_batch(
                        QueueUrl=url,
                        Entries=[
                            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                            for i, m in enumerate(messages)
                        ],
                    )
                    samples.append((time.perf_counter() - started) * 1000)
                    await send_bodies(sqs, url, [body] * len(messages))
                samples.sort()
                results.append(
                    LatencyProbe(
                        depth=depth,
                        p50_ms=statistics.median(samples),
                        p99_ms=samples[min(len(samples) - 1, int(0.99 * len(samples)))],
                        mean_ms=statistics.fmean(samples),
                    )
                )
        finally:
            await sqs.delete_queue(QueueUrl=url)
    return results
