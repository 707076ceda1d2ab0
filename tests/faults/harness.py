"""The fault harness: the local stack, a proxy in front of each endpoint, and the real worker.

One ``Harness`` holds the stack, the two proxies and the harness's own SQS client (straight to
the stack, never through a proxy, so faults only hit the worker). Each scenario opens a
``Run``: fresh queues, a freshly seeded pool, the messages it sent, the worker incarnations it
started, a watch on /readyz, and at the end the checked end state.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
import warnings
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self
from urllib.parse import urlparse

import anyio
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from feedback_local.stack import AsyncEmulatorControl, LocalStack, QueuePair
from tests.faults.checker import (
    EndState,
    SentMessage,
    Tally,
    check,
    events_from_writes,
    read_dlq,
)
from tests.faults.workload import Planned, Universe
from tests.support.messages import queue_depth
from tests.support.ports import free_port
from tests.support.tcp_proxy import TcpProxy
from tests.support.worker_process import WorkerProcess

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

FEEDBACK_OPERATION = "AdminUpdateAuthEventFeedback"
START_TIMEOUT_S = 30.0
READY_POLL_S = 0.25
DRAIN_POLL_S = 0.5
# Bodies above this go alone: a batch carries at most 1 MiB in all.
LARGE_BODY_BYTES = 100_000
# Worker settings for every run unless a scenario overrides them.
BASE_WORKER_ENV = {
    "FEEDBACK_LOG_FORMAT": "json",
    "FEEDBACK_CONCURRENCY": "16",
    "FEEDBACK_RATE_LIMIT": "20",
    "FEEDBACK_WAIT_TIME": "2",
}


@dataclass(frozen=True)
class RunSettings:
    """Per-scenario knobs of the queues and the worker."""

    visibility_timeout_s: int = 30
    shutdown_timeout_s: float = 10.0
    max_receive_count: int = 10
    max_attempts: int = 8
    worker_env: Mapping[str, str] = field(default_factory=dict)


@dataclass
class ReadyWatch:
    """Every /readyz answer of the current worker: (monotonic time, status or None)."""

    samples: list[tuple[float, int | None]] = field(default_factory=list)

    def unready_between(self, start: float, end: float) -> bool:
        return any(start <= t <= end and s != 200 for t, s in self.samples)

    def first_ready_after(self, start: float) -> float | None:
        return next((t for t, s in self.samples if t >= start and s == 200), None)


@dataclass
class Recovery:
    """Seconds from a fault's end until /readyz was 200 again and until a verdict was applied."""

    ready_s: float | None
    progress_s: float | None

    def describe(self) -> str:
        def show(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f}s"

        return f"ready {show(self.ready_s)} / progress {show(self.progress_s)}"


class Harness:
    """The stack, the proxies and the harness's clients, shared by every run."""

    def __init__(self, stack: LocalStack, workdir: Path) -> None:
        self.stack = stack
        self.workdir = workdir
        self._exit = contextlib.AsyncExitStack()
        self.sqs_proxy = TcpProxy(urlparse(stack.sqs_endpoint).netloc, name="sqs")
        self.cognito_proxy = TcpProxy(urlparse(stack.cognito_endpoint).netloc, name="cognito")
        self._sqs: SQSClient | None = None
        self._emulator: AsyncEmulatorControl | None = None

    async def __aenter__(self) -> Self:
        await self._exit.__aenter__()
        try:
            await self._exit.enter_async_context(self.sqs_proxy)
            await self._exit.enter_async_context(self.cognito_proxy)
            self._emulator = await self._exit.enter_async_context(self.stack.async_emulator())
            session = get_session()
            session.set_config_variable("config_file", os.devnull)
            session.set_config_variable("credentials_file", os.devnull)
            self._sqs = await self._exit.enter_async_context(
                session.create_client(
                    "sqs",
                    region_name=self.stack.region,
                    endpoint_url=self.stack.sqs_endpoint,
                    aws_access_key_id="testing",
                    aws_secret_access_key="testing",
                    config=AioConfig(retries={"mode": "standard", "max_attempts": 5}),
                )
            )
        except BaseException:
            await self._exit.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._exit.__aexit__(exc_type, exc, tb)

    @property
    def sqs(self) -> SQSClient:
        assert self._sqs is not None, "use the harness as an async context manager"
        return self._sqs

    @property
    def emulator(self) -> AsyncEmulatorControl:
        assert self._emulator is not None, "use the harness as an async context manager"
        return self._emulator

    def heal(self) -> None:
        """Both proxies back to plain forwarding."""
        for proxy in (self.sqs_proxy, self.cognito_proxy):
            if proxy.fault.mode != "pass":
                proxy.set_mode("pass")

    @contextlib.asynccontextmanager
    async def run(self, name: str, settings: RunSettings | None = None) -> AsyncIterator[Run]:
        """A fresh run: emulator reset, new queues, proxies healed; workers stopped at the end."""
        settings = settings or RunSettings()
        self.heal()
        await self.emulator.reset(clear_data=True)
        queues = await anyio.to_thread.run_sync(
            lambda: self.stack.create_queues(
                max_receive_count=settings.max_receive_count,
                visibility_timeout_s=settings.visibility_timeout_s,
            )
        )
        directory = self.workdir / name
        directory.mkdir(parents=True, exist_ok=True)
        async with anyio.create_task_group() as group:
            run = Run(self, name, queues, settings, directory)
            group.start_soon(run.watch_readiness)
            try:
                yield run
            finally:
                with anyio.CancelScope(shield=True):
                    await run.stop_workers()
                    self.heal()
                    # moto's calls cost O(messages it holds): leave nothing for later runs.
                    await anyio.to_thread.run_sync(self.stack.delete_queues, queues)
                group.cancel_scope.cancel()


class Run:
    """One scenario's queues, messages, worker incarnations and observations."""

    def __init__(
        self,
        harness: Harness,
        name: str,
        queues: QueuePair,
        settings: RunSettings,
        directory: Path,
    ) -> None:
        self.harness = harness
        self.name = name
        self.queues = queues
        self.settings = settings
        self.directory = directory
        self.rng = random.Random(name)
        self.sent: list[SentMessage] = []
        self.unsendable: list[tuple[str, str]] = []
        self.workers: list[WorkerProcess] = []
        self.ready = ReadyWatch()
        self.notes: list[str] = []

    # -- workload --------------------------------------------------------------------------

    async def seed(self, universe: Universe) -> None:
        await self.harness.emulator.seed(universe.seed_spec())

    async def send(self, plans: Iterable[Planned]) -> list[SentMessage]:
        """Send `plans` (batches of 10, huge bodies alone); fail loudly on any refusal."""
        batch: list[Planned] = []
        sent: list[SentMessage] = []
        for plan in plans:
            if len(plan.body.encode()) > LARGE_BODY_BYTES:
                sent += await self._send_batch([plan])
                continue
            batch.append(plan)
            if len(batch) == 10:
                sent += await self._send_batch(batch)
                batch = []
        if batch:
            sent += await self._send_batch(batch)
        self.sent += sent
        return sent

    async def _send_batch(self, plans: list[Planned]) -> list[SentMessage]:
        with warnings.catch_warnings():
            # aiohttp warns about any large request body; near-1 MiB bodies are the point here.
            warnings.filterwarnings("ignore", "Sending a large body", ResourceWarning)
            response = await self.harness.sqs.send_message_batch(
                QueueUrl=self.queues.url,
                Entries=[{"Id": str(i), "MessageBody": p.body} for i, p in enumerate(plans)],
            )
        if failed := response.get("Failed"):
            raise RuntimeError(f"SQS refused messages: {failed}")
        return [
            SentMessage(entry["MessageId"], plans[int(entry["Id"])])
            for entry in response.get("Successful", [])
        ]

    async def send_rounds(self, rounds: list[list[Planned]], gap_s: float = 0.05) -> None:
        """Send rounds in order, each after the previous one returned, `gap_s` apart, so every
        later round has later SentTimestamps."""
        for plans in rounds:
            await self.send(plans)
            await anyio.sleep(gap_s)

    # -- the worker ------------------------------------------------------------------------

    def worker_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        harness, settings = self.harness, self.settings
        env = harness.stack.env(self.queues) | BASE_WORKER_ENV
        env |= {
            "AWS_ENDPOINT_URL_SQS": harness.sqs_proxy.url,
            "AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER": harness.cognito_proxy.url,
            "FEEDBACK_COGNITO_ENDPOINTS": f"*={harness.cognito_proxy.url}",
            "FEEDBACK_METRICS_PORT": str(free_port()),
            "FEEDBACK_VISIBILITY_TIMEOUT": str(settings.visibility_timeout_s),
            "FEEDBACK_SHUTDOWN_TIMEOUT": str(settings.shutdown_timeout_s),
            "FEEDBACK_MAX_ATTEMPTS": str(settings.max_attempts),
        }
        return env | dict(settings.worker_env) | dict(extra or {})

    @property
    def worker(self) -> WorkerProcess:
        return self.workers[-1]

    async def start_worker(self, extra_env: Mapping[str, str] | None = None) -> WorkerProcess:
        """Start a new incarnation and wait for /healthz."""
        worker = WorkerProcess(
            self.worker_env(extra_env),
            log_path=self.directory / f"worker-{len(self.workers) + 1}.log",
        ).start()
        self.workers.append(worker)
        if not await worker.wait_healthy(START_TIMEOUT_S):
            raise RuntimeError(f"the worker did not come up; see {worker.log_path}")
        return worker

    async def stop_workers(self) -> None:
        for worker in self.workers:
            await worker.stop(self.settings.shutdown_timeout_s + 10)

    async def watch_readiness(self) -> None:
        while True:
            if self.workers and self.worker.returncode is None:
                status = await self.worker.readyz()
                self.ready.samples.append((time.monotonic(), status))
            await anyio.sleep(READY_POLL_S)

    # -- observations ----------------------------------------------------------------------

    async def applied_so_far(self) -> int:
        """Successful feedback calls the emulator has answered since the run began."""
        stats = await self.harness.emulator.stats()
        return int(stats.get("operations", {}).get(FEEDBACK_OPERATION, {}).get("successes", 0))

    async def depth(self) -> tuple[int, int]:
        return await queue_depth(self.harness.sqs, self.queues.url)

    async def wait_applied(self, at_least: int, timeout_s: float) -> bool:
        with anyio.move_on_after(timeout_s):
            while True:
                if await self.applied_so_far() >= at_least:
                    return True
                await anyio.sleep(DRAIN_POLL_S)
        return False

    async def wait_drained(self, timeout_s: float) -> bool:
        """Wait until the source queue is empty (nothing visible or in flight) twice running."""
        with anyio.move_on_after(timeout_s):
            empty_polls = 0
            while empty_polls < 2:
                empty_polls = empty_polls + 1 if await self.depth() == (0, 0) else 0
                await anyio.sleep(DRAIN_POLL_S)
            return True
        return False

    async def recovery(self, fault_end: float, timeout_s: float) -> Recovery:
        """Wait until the worker is ready and has applied a verdict after `fault_end`."""
        baseline = await self.applied_so_far()
        progress_at: float | None = None
        with anyio.move_on_after(timeout_s):
            while progress_at is None or self.ready.first_ready_after(fault_end) is None:
                if progress_at is None and await self.applied_so_far() > baseline:
                    progress_at = time.monotonic()
                elif progress_at is None and await self.depth() == (0, 0):
                    break  # nothing left to make progress on
                await anyio.sleep(READY_POLL_S)
        ready_at = self.ready.first_ready_after(fault_end)
        return Recovery(
            None if ready_at is None else ready_at - fault_end,
            None if progress_at is None else progress_at - fault_end,
        )

    async def finish(self, drain_timeout_s: float) -> Tally:
        """Let the worker drain, stop it, and check the end state."""
        drained = await self.wait_drained(drain_timeout_s)
        if not drained:
            self.notes.append(f"not drained after {drain_timeout_s:.0f}s")
        await self.stop_workers()
        return await self.check()

    async def check(self) -> Tally:
        visible, in_flight = await self.depth()
        state = EndState(
            events=events_from_writes(await self.harness.emulator.writes()),
            dlq=await read_dlq(self.harness.sqs, self.queues.dlq_url),
            left_visible=visible,
            left_in_flight=in_flight,
        )
        tally = check(self.sent, state, unsendable=len(self.unsendable))
        self.notes += crashes(self.workers)
        return tally


def crashes(workers: list[WorkerProcess]) -> list[str]:
    """What the worker logs say went wrong: tracebacks and unexpected exits."""
    notes: list[str] = []
    for worker in workers:
        records = worker.records()
        tracebacks = [r for r in records if "Traceback" in str(r.get("raw", ""))]
        if tracebacks:
            notes.append(f"{worker.log_path.name}: {len(tracebacks)} traceback(s) on stderr")
    return notes
