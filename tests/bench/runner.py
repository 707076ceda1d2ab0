"""Runs one consumer (the worker, a peer) through one scenario and records what it cost.

The stack: fauxqs behind a counting proxy (every consumer's SQS calls go through it; the
benchmark's own bookkeeping goes to fauxqs directly and is not counted), and the project's
Cognito emulator, reset, configured and seeded afresh for every run.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from feedback_local.stack import LocalStack, QueuePair
from tests.bench import aws, workload
from tests.bench.scenarios import BOTO3, SQS_CONSUMER, WORKER, Scenario
from tests.bench.sqs_server import FauxqsServer, LatencyProbe, probe_latency
from tests.bench.toolchain import Toolchain
from tests.support.messages import queue_depth
from tests.support.tcp_proxy import ProxyThread, TcpProxy
from tests.support.worker_process import Usage, WorkerProcess

REPO = Path(__file__).resolve().parents[2]
MONITOR_S = 0.25
STATS_EVERY_S = 1.0
# CPU spent before a consumer's first receive (imports, client set-up) is start-up, not
# per-message cost; if no receive shows up this soon, measure from here anyway.
BASELINE_FALLBACK_S = 15.0
# The worker exits by itself once drained; past this it is stopped and flagged.
WORKER_EXIT_GRACE_S = 45.0
WORKER_TIMEOUT_S = 300.0  # beyond twice the ideal drain time
PEER_CAP_S = 150.0  # peers may never finish (messages cycling to the DLQ): cap them
# No verdict applied or dead-lettered for this long: the consumer is stuck; stop the run.
STALL_S = 60.0
STATS_WINDOW_S = 3600  # the emulator keeps per-second stats for the whole of any run
PROBE_DEPTHS = (100, 5000)


@dataclass
class CaseData:
    """Raw measurements of one consumer on one scenario."""

    scenario: Scenario
    consumer: str
    messages: int
    pools: tuple[str, ...]
    started_at: float
    ended_at: float
    sent_at: dict[str, float]
    usages: list[Usage]
    cpu_base_s: float | None
    applied_at_base: int
    applied_at_end: int
    stats: dict[str, Any]
    writes: list[dict[str, Any]]
    dead_lettered: int
    left_in_queue: int
    sqs_requests: dict[str, int]
    exited_by_itself: bool
    timed_out: bool
    stalled: bool
    neighbour: dict[str, Any] | None = None


@dataclass
class _Watch:
    """What watching a run found, besides the processes' own usage."""

    cpu_base_s: float | None = None
    applied_at_base: int = 0
    exited_by_itself: bool = False
    timed_out: bool = False
    stalled: bool = False


class Bench:
    """``with Bench(tools, out_dir) as bench:`` owns fauxqs, the proxy and the local stack."""

    def __init__(self, tools: Toolchain, out_dir: Path, worker_argv: Sequence[str]) -> None:
        self.tools = tools
        self.out_dir = out_dir
        self.worker_argv = list(worker_argv)
        self.fauxqs = FauxqsServer(tools.node, tools.node_dir, out_dir / "logs" / "fauxqs.log")
        self.proxy_thread: ProxyThread | None = None
        self.stack: LocalStack | None = None

    def __enter__(self) -> Self:
        try:
            self.fauxqs.start()
            host, port = self.fauxqs.host_port
            self.proxy_thread = ProxyThread(TcpProxy(f"{host}:{port}", name="sqs"))
            proxy = self.proxy_thread.start()
            self.stack = LocalStack(
                sqs_endpoint=proxy.url,
                emulator_args=["--stats-window-s", str(STATS_WINDOW_S)],
            ).start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self.stack is not None:
            self.stack.stop()
        if self.proxy_thread is not None:
            self.proxy_thread.stop()
        self.fauxqs.stop()

    def _started(self) -> tuple[LocalStack, TcpProxy]:
        assert self.stack is not None, "use Bench as a context manager"
        assert self.proxy_thread is not None
        return self.stack, self.proxy_thread.proxy

    async def probe_sqs(self) -> dict[str, list[LatencyProbe]]:
        _, proxy = self._started()
        return {
            "direct": await probe_latency(self.fauxqs.url, PROBE_DEPTHS),
            "through the counting proxy": await probe_latency(proxy.url, PROBE_DEPTHS),
        }

    # -- one run ---------------------------------------------------------------------------

    def _prepare(
        self, scenario: Scenario, messages: int, tag: str
    ) -> tuple[list[workload.Verdict], list[tuple[str, str]]]:
        stack, _ = self._started()
        verdicts = workload.make_verdicts(messages, scenario.regions, tag)
        neighbours = workload.neighbour_events(tag) if scenario.neighbour_rate else []
        emulator = stack.emulator
        emulator.reset(clear_data=True)  # also restores the start-up config: configure after
        emulator.configure(
            quota_per_region=scenario.quota or 0.0,
            latency_s=scenario.latency_s,
            latency_jitter_s=scenario.jitter_s,
        )
        neighbour_pool = workload.pool_id(scenario.regions[0])
        emulator.seed(workload.seed_spec(verdicts, {neighbour_pool: neighbours}))
        return verdicts, neighbours

    def _child_env(self, queues: QueuePair) -> dict[str, str]:
        stack, _ = self._started()
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", str(REPO)),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(REPO),
            **stack.env(queues),
        }

    def _consumer_argv(self, consumer: str) -> tuple[list[str], Path | None]:
        if consumer == WORKER:
            return self.worker_argv, None
        if consumer == BOTO3:
            return [sys.executable, "-m", "tests.bench.boto3_peer"], REPO
        if consumer == SQS_CONSUMER:
            return [str(self.tools.node), "sqs_consumer_peer.mjs"], self.tools.node_dir
        raise ValueError(f"unknown consumer {consumer!r}")

    async def run_case(self, scenario: Scenario, consumer: str) -> CaseData:
        stack, proxy = self._started()
        tag = f"{scenario.key}{consumer[:2]}{uuid.uuid4().hex[:6]}"
        messages = scenario.size_for(consumer)
        verdicts, neighbour_events = self._prepare(scenario, messages, tag)
        pools = tuple(sorted({v.pool_id for v in verdicts}))
        queues = stack.create_queues(f"bench-{tag}")
        sent_at = await workload.enqueue(self.fauxqs.url, queues.url, verdicts)
        proxy.reset_operations()
        env = self._child_env(queues)
        if consumer == WORKER:
            env |= {
                "FEEDBACK_RATE_LIMIT": f"{scenario.worker_rate_limit:g}",
                "FEEDBACK_METRICS_PORT": "0",
                "FEEDBACK_LOG_FORMAT": "json",
            }
        logs = self.out_dir / "logs"
        result_path = logs / f"{tag}-neighbour.json"
        neighbour = None
        if neighbour_events:
            neighbour = self._neighbour(scenario, neighbour_events, env, logs / tag, result_path)
        argv, cwd = self._consumer_argv(consumer)
        replicas = scenario.replicas if consumer == WORKER else 1
        procs = [
            WorkerProcess(
                env,
                argv,
                log_path=logs / f"{tag}-{consumer}-{i}.log",
                cwd=cwd,
                name=f"{consumer}-{i}",
            )
            for i in range(replicas)
        ]
        started_at = time.time()
        for proc in procs:
            proc.start()
        shared_quota = neighbour is not None
        try:
            watch = await self._monitor(scenario, consumer, procs, queues, pools, messages)
        finally:
            usages = [await proc.stop() for proc in procs]
            if neighbour is not None:
                await neighbour.stop()
        ended_at = time.time()
        applied_at_end = self._applied(pools, shared_quota)
        stats = stack.emulator.stats()
        writes = [row for pool in pools for row in stack.emulator.writes(pool)["events"]]
        async with aws.sqs_client(self.fauxqs.url) as sqs:
            visible, in_flight = await queue_depth(sqs, queues.url)
            dlq_visible, dlq_in_flight = await queue_depth(sqs, queues.dlq_url)
            for url in (queues.url, queues.dlq_url):
                await sqs.delete_queue(QueueUrl=url)
        return CaseData(
            scenario=scenario,
            consumer=consumer,
            messages=messages,
            pools=pools,
            started_at=started_at,
            ended_at=ended_at,
            sent_at=sent_at,
            usages=usages,
            cpu_base_s=watch.cpu_base_s,
            applied_at_base=watch.applied_at_base,
            applied_at_end=applied_at_end,
            stats=stats,
            writes=writes,
            dead_lettered=dlq_visible + dlq_in_flight,
            left_in_queue=visible + in_flight,
            sqs_requests=proxy.reset_operations(),
            exited_by_itself=watch.exited_by_itself,
            timed_out=watch.timed_out,
            stalled=watch.stalled,
            neighbour=json.loads(result_path.read_text()) if result_path.exists() else None,
        )

    def _neighbour(
        self,
        scenario: Scenario,
        events: list[tuple[str, str]],
        env: dict[str, str],
        log_prefix: Path,
        result_path: Path,
    ) -> WorkerProcess:
        stack, _ = self._started()
        events_path = log_prefix.with_name(f"{log_prefix.name}-neighbour-events.json")
        events_path.write_text(json.dumps(events))
        return WorkerProcess(
            env,
            [
                sys.executable, "-m", "tests.bench.neighbour",
                "--endpoint", stack.cognito_endpoint,
                "--region", scenario.regions[0],
                "--pool", workload.pool_id(scenario.regions[0]),
                "--rate", f"{scenario.neighbour_rate:g}",
                "--events", str(events_path),
                "--result", str(result_path),
            ],
            log_path=log_prefix.with_name(f"{log_prefix.name}-neighbour.log"),
            cwd=REPO,
            name="neighbour",
        ).start()  # fmt: skip

    def _applied(self, pools: tuple[str, ...], shared_quota: bool) -> int:
        """Verdicts the consumer has applied so far."""
        stack, _ = self._started()
        if shared_quota:  # the neighbour's successes are in the stats too: count writes
            return sum(
                1
                for pool in pools
                for row in stack.emulator.writes(pool)["events"]
                if row["writes"]
            )
        return int(stack.emulator.stats()["successes"])

    async def _monitor(
        self,
        scenario: Scenario,
        consumer: str,
        procs: list[WorkerProcess],
        queues: QueuePair,
        pools: tuple[str, ...],
        messages: int,
    ) -> _Watch:
        """Watch the run until the consumer is done; take the CPU baseline on the way."""
        _, proxy = self._started()
        shared_quota = scenario.neighbour_rate > 0
        watch = _Watch()
        started = time.monotonic()
        timeout = WORKER_TIMEOUT_S + 2 * (scenario.ideal_s(messages) or 0.0)
        if consumer != WORKER:
            timeout = min(timeout, PEER_CAP_S)
        settled_since: float | None = None
        last_settled, progress_at = -1, started
        next_check = started
        async with aws.sqs_client(self.fauxqs.url) as sqs:
            while True:
                now = time.monotonic()
                exited = [proc.poll() is not None for proc in procs]
                if all(exited):
                    watch.exited_by_itself = True
                    break
                receives = proxy.operations().get("ReceiveMessage", 0)
                if watch.cpu_base_s is None and (
                    receives >= len(procs) or now - started > BASELINE_FALLBACK_S
                ):
                    live = [p for p, gone in zip(procs, exited, strict=True) if not gone]
                    samples = [p.sample() for p in live]
                    watch.cpu_base_s = sum(s.cpu_s for s in samples if s is not None)
                    watch.applied_at_base = self._applied(pools, shared_quota)
                if now >= next_check:
                    next_check = now + STATS_EVERY_S
                    dlq_visible, dlq_in_flight = await queue_depth(sqs, queues.dlq_url)
                    settled = self._applied(pools, shared_quota) + dlq_visible + dlq_in_flight
                    if settled != last_settled:
                        last_settled, progress_at = settled, now
                    if settled >= messages and settled_since is None:
                        settled_since = now
                    if settled < messages and now - progress_at > STALL_S:
                        watch.stalled = True
                        break
                if settled_since is not None and (
                    consumer != WORKER or now - settled_since > WORKER_EXIT_GRACE_S
                ):
                    break
                if now - started > timeout:
                    watch.timed_out = True
                    break
                await asyncio.sleep(MONITOR_S)
        return watch

    # -- the bare call ---------------------------------------------------------------------

    async def bare_call(self, scenario: Scenario) -> dict[str, Any]:
        """CPU per Cognito call of a plain aiobotocore loop, on this scenario's emulator setup."""
        stack, _ = self._started()
        tag = f"{scenario.key}bare{uuid.uuid4().hex[:6]}"
        verdicts, _ = self._prepare(scenario, min(scenario.bare_calls, 500), tag)
        events_path = self.out_dir / "logs" / f"{tag}-events.json"
        events_path.write_text(json.dumps([[v.pool_id, v.username, v.event_id] for v in verdicts]))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.bench.bare_call",
            "--endpoint", stack.cognito_endpoint,
            "--region", scenario.regions[0],
            "--events", str(events_path),
            "--calls", str(scenario.bare_calls),
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, _ = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"the bare-call loop failed with exit code {proc.returncode}")
        result: dict[str, Any] = json.loads(stdout)
        return result
