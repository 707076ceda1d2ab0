"""Runs one consumer (the worker, a peer) through one scenario and records what it cost.

The stack: an SQS emulator behind a counting proxy (every consumer's SQS calls go through it;
the benchmark's own bookkeeping goes to the emulator directly and is not counted): fauxqs, or
LocalStack for the scenarios that need SQS fair queues; and the project's Cognito emulator,
reset, configured and seeded afresh for every run.
"""

from __future__ import annotations

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
from tests.bench import aws, bare_call, monitor, neighbour, schedule, workload
from tests.bench.localstack_server import LocalStackSqs
from tests.bench.monitor import Limits, Watch
from tests.bench.scenarios import BOTO3, FAUXQS, LOCALSTACK, SQS_CONSUMER, WORKER, Scenario
from tests.bench.schedule import Marks
from tests.bench.sqs_server import FauxqsServer, LatencyProbe, probe_latency
from tests.bench.toolchain import Toolchain, ensure_localstack_python
from tests.bench.workload import Verdict
from tests.support.messages import queue_depth
from tests.support.tcp_proxy import ProxyThread, TcpProxy
from tests.support.worker_process import Usage, WorkerProcess

REPO = Path(__file__).resolve().parents[2]
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
    rate_limit: float | None  # the worker's FEEDBACK_RATE_LIMIT (None: its default)
    messages: int
    pools: tuple[str, ...]
    started_at: float
    ended_at: float
    sent_at: dict[str, float]
    verdicts: dict[str, Verdict]  # by event id, the trickle tenant's included
    goal: frozenset[str]  # the event ids whose pace is measured (not in a failing scope)
    usages: list[Usage]
    watch: Watch
    applied_at_end: int
    stats: dict[str, Any]
    writes: list[dict[str, Any]]
    dead_lettered: int
    left_in_queue: int
    sqs_requests: dict[str, int]
    marks: Marks
    neighbour: dict[str, Any] | None = None


@dataclass
class _Sqs:
    """One SQS emulator and the counting proxy the consumers reach it through."""

    url: str  # direct, for the bench's own calls
    proxy: TcpProxy


@dataclass
class _Run:
    """One run's set-up: its verdicts, queues and environment."""

    tag: str
    sqs: _Sqs
    verdicts: list[Verdict]
    trickle: list[Verdict]
    neighbour_events: list[tuple[str, str]]
    queues: QueuePair
    sent_at: dict[str, float]
    env: dict[str, str]
    goal: frozenset[str]  # the event ids whose pace is measured
    to_feed: list[Verdict]  # the backlog not sent yet (tests.bench.schedule feeds it)

    @property
    def pools(self) -> tuple[str, ...]:
        return tuple(sorted({v.pool_id for v in [*self.verdicts, *self.trickle]}))


class Bench:
    """``with Bench(tools, out_dir) as bench:`` owns the SQS emulators, their proxies and the
    local stack (the Cognito emulator)."""

    def __init__(self, tools: Toolchain, out_dir: Path, worker_argv: Sequence[str]) -> None:
        self.tools = tools
        self.out_dir = out_dir
        self.worker_argv = list(worker_argv)
        self.fauxqs = FauxqsServer(tools.node, tools.node_dir, out_dir / "logs" / "fauxqs.log")
        self.localstack: LocalStackSqs | None = None
        self.proxies: dict[str, ProxyThread] = {}
        self.stack: LocalStack | None = None

    def __enter__(self) -> Self:
        try:
            self.fauxqs.start()
            proxy = self._proxy(FAUXQS, self.fauxqs.host_port)
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
        for thread in self.proxies.values():
            thread.stop()
        self.proxies.clear()
        if self.localstack is not None:
            self.localstack.stop()
        self.fauxqs.stop()

    def _proxy(self, name: str, host_port: tuple[str, int]) -> TcpProxy:
        host, port = host_port
        thread = self.proxies[name] = ProxyThread(TcpProxy(f"{host}:{port}", name=name))
        return thread.start()

    def _stack(self) -> LocalStack:
        assert self.stack is not None, "use Bench as a context manager"
        return self.stack

    def _sqs(self, name: str) -> _Sqs:
        """The named SQS emulator, started on first use (LocalStack takes a while)."""
        if name == LOCALSTACK and self.localstack is None:
            python = ensure_localstack_python()
            self.localstack = LocalStackSqs(python, self.out_dir / "logs" / "localstack.log")
            self.localstack.start()
            self._proxy(LOCALSTACK, self.localstack.host_port)
        server = self.localstack if name == LOCALSTACK else self.fauxqs
        assert server is not None
        return _Sqs(url=server.url, proxy=self.proxies[name].proxy)

    async def probe_sqs(self) -> dict[str, list[LatencyProbe]]:
        sqs = self._sqs(FAUXQS)
        return {
            "direct": await probe_latency(sqs.url, PROBE_DEPTHS),
            "through the counting proxy": await probe_latency(sqs.proxy.url, PROBE_DEPTHS),
        }

    # -- one run ---------------------------------------------------------------------------

    def _prepare(
        self, scenario: Scenario, messages: int, tag: str
    ) -> tuple[list[Verdict], list[Verdict], list[tuple[str, str]]]:
        """Verdicts, the trickle tenant's and the neighbour's events, seeded in an emulator
        reset and configured for the scenario."""
        verdicts = workload.make_verdicts(scenario, messages, tag)
        trickle = workload.trickle_verdicts(scenario, schedule.trickle_count(scenario), tag)
        neighbours = workload.neighbour_events(tag) if scenario.neighbour_rate else []
        emulator = self._stack().emulator
        emulator.reset(clear_data=True)  # also restores the start-up config: configure after
        emulator.configure(
            quota_per_region=scenario.quota or 0.0,
            quota_throttles_untyped=scenario.untyped_throttles,
            latency_s=scenario.latency_s,
            latency_jitter_s=scenario.jitter_s,
        )
        for fault in scenario.faults:
            pool = None if fault.pool is None else workload.pool_id(fault.region, fault.pool)
            emulator.inject(fault.code, region=None if pool else fault.region, pool=pool)
        extra = {workload.neighbour_pool(scenario.regions[0]): neighbours}
        emulator.seed(workload.seed_spec([*verdicts, *trickle], extra))
        return verdicts, trickle, neighbours

    async def _setup(self, scenario: Scenario, consumer: str) -> _Run:
        tag = f"{scenario.key[:2]}{consumer[:2]}{uuid.uuid4().hex[:6]}"
        verdicts, trickle, neighbours = self._prepare(scenario, scenario.size_for(consumer), tag)
        sqs = self._sqs(scenario.sqs)
        queues = await aws.create_queues(sqs.url, f"bench-{tag}")
        up_front = schedule.FEED_AHEAD if scenario.fed_backlog else len(verdicts)
        sent_at = await workload.enqueue(sqs.url, queues.url, verdicts[:up_front])
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", str(REPO)),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(REPO),
            **self._stack().env(queues),
            "AWS_ENDPOINT_URL_SQS": sqs.proxy.url,
        }
        goal = frozenset(v.event_id for v in verdicts if _in_goal(scenario, v))
        to_feed = verdicts[up_front:]
        return _Run(tag, sqs, verdicts, trickle, neighbours, queues, sent_at, env, goal, to_feed)

    def _consumer_argv(self, consumer: str) -> tuple[list[str], Path | None]:
        if consumer == WORKER:
            return self.worker_argv, None
        if consumer == BOTO3:
            return [sys.executable, "-m", "tests.bench.boto3_peer"], REPO
        if consumer == SQS_CONSUMER:
            return [str(self.tools.node), "sqs_consumer_peer.mjs"], self.tools.node_dir
        raise ValueError(f"unknown consumer {consumer!r}")

    def _consumers(
        self, scenario: Scenario, run: _Run, consumer: str, rate_limit: float | None
    ) -> list[WorkerProcess]:
        env = dict(run.env)
        if consumer == WORKER:
            env |= {"FEEDBACK_METRICS_PORT": "0", "FEEDBACK_LOG_FORMAT": "json"}
            if rate_limit is not None:
                env["FEEDBACK_RATE_LIMIT"] = f"{rate_limit:g}"
        argv, cwd = self._consumer_argv(consumer)
        logs = self.out_dir / "logs"
        return [
            WorkerProcess(
                env, argv, log_path=logs / f"{run.tag}-{consumer}-{i}.log", cwd=cwd, name=consumer
            )
            for i in range(scenario.replicas)
        ]

    def _limits(self, scenario: Scenario, run: _Run, consumer: str) -> Limits:
        if scenario.duration_s is not None:
            return Limits(None, False, 0.0, scenario.duration_s, None)
        cap = scenario.max_s or float("inf")
        if scenario.faults:
            return Limits(len(run.goal), False, 0.0, cap, STALL_S)
        timeout = WORKER_TIMEOUT_S + 2 * (scenario.ideal_s(len(run.verdicts)) or 0.0)
        grace = WORKER_EXIT_GRACE_S
        if consumer != WORKER:
            timeout, grace = min(timeout, PEER_CAP_S), 0.0
        return Limits(len(run.verdicts), True, grace, min(timeout, cap), STALL_S)

    async def run_case(
        self, scenario: Scenario, consumer: str, rate_limit: float | None = None
    ) -> CaseData:
        run = await self._setup(scenario, consumer)
        run.sqs.proxy.reset_operations()
        neighbour = self._neighbour(scenario, run) if run.neighbour_events else None
        procs = self._consumers(scenario, run, consumer, rate_limit)
        started_at = time.time()
        for proc in procs:
            proc.start()
        try:
            async with schedule.during_run(
                scenario,
                self._stack().cognito_endpoint,
                run.sqs.url,
                run.queues.url,
                (run.to_feed, run.trickle),
                run.sent_at,
            ) as marks:
                watch = await monitor.watch(
                    self._limits(scenario, run, consumer),
                    procs,
                    run.sqs.proxy,
                    run.sqs.url,
                    run.queues.dlq_url,
                    lambda: self._applied(scenario, run.pools, run.goal),
                )
        finally:
            usages = [await proc.stop() for proc in procs]
            if neighbour is not None:
                await neighbour.stop()
        return await self._collect(
            scenario, run, consumer, rate_limit, (started_at, time.time()), watch, usages, marks
        )

    async def _collect(
        self,
        scenario: Scenario,
        run: _Run,
        consumer: str,
        rate_limit: float | None,
        span: tuple[float, float],
        watch: Watch,
        usages: list[Usage],
        marks: Marks,
    ) -> CaseData:
        emulator = self._stack().emulator
        applied_at_end = self._applied(scenario, run.pools, run.goal)
        async with aws.sqs_client(run.sqs.url) as sqs:
            left = sum(await queue_depth(sqs, run.queues.url))
            dead_lettered = sum(await queue_depth(sqs, run.queues.dlq_url))
            for url in (run.queues.url, run.queues.dlq_url):
                await sqs.delete_queue(QueueUrl=url)
        result_path = self._neighbour_result(run)
        return CaseData(
            scenario=scenario,
            consumer=consumer,
            rate_limit=rate_limit,
            messages=len(run.verdicts),
            pools=run.pools,
            started_at=span[0],
            ended_at=span[1],
            sent_at=run.sent_at,
            verdicts={v.event_id: v for v in [*run.verdicts, *run.trickle]},
            goal=run.goal,
            usages=usages,
            watch=watch,
            applied_at_end=applied_at_end,
            stats=emulator.stats(),
            writes=[row for pool in run.pools for row in emulator.writes(pool)["events"]],
            dead_lettered=dead_lettered,
            left_in_queue=left,
            sqs_requests=run.sqs.proxy.reset_operations(),
            marks=marks,
            neighbour=json.loads(result_path.read_text()) if result_path.exists() else None,
        )

    def _neighbour_result(self, run: _Run) -> Path:
        return self.out_dir / "logs" / f"{run.tag}-neighbour.json"

    def _neighbour(self, scenario: Scenario, run: _Run) -> WorkerProcess:
        logs = self.out_dir / "logs"
        events_path = logs / f"{run.tag}-neighbour-events.json"
        events_path.write_text(json.dumps(run.neighbour_events))
        region = scenario.regions[0]
        return neighbour.process(
            run.env,
            endpoint=self._stack().cognito_endpoint,
            region=region,
            pool=workload.neighbour_pool(region),
            rate=scenario.neighbour_rate,
            window=scenario.neighbour_window,
            events_path=events_path,
            result_path=self._neighbour_result(run),
            log_path=logs / f"{run.tag}-neighbour.log",
        ).start()

    def _applied(self, scenario: Scenario, pools: tuple[str, ...], goal: frozenset[str]) -> int:
        """Verdicts of the goal the consumer has applied so far."""
        emulator = self._stack().emulator
        if scenario.neighbour_rate or scenario.faults or scenario.trickle_rate:
            return sum(
                1
                for pool in pools
                for row in emulator.writes(pool)["events"]
                if row["writes"] and row["event_id"] in goal
            )
        return int(emulator.stats()["successes"])

    # -- the bare call ---------------------------------------------------------------------

    async def bare_call(self, scenario: Scenario) -> dict[str, Any]:
        """CPU per Cognito call of a plain aiobotocore loop, on this scenario's emulator setup."""
        tag = f"{scenario.key}bare{uuid.uuid4().hex[:6]}"
        verdicts, _, _ = self._prepare(scenario, min(scenario.bare_calls, 500), tag)
        events_path = self.out_dir / "logs" / f"{tag}-events.json"
        events_path.write_text(json.dumps([[v.pool_id, v.username, v.event_id] for v in verdicts]))
        return await bare_call.measure(
            self._stack().cognito_endpoint, scenario.regions[0], events_path, scenario.bare_calls
        )


def _in_goal(scenario: Scenario, verdict: Verdict) -> bool:
    """Whether a verdict's pace is measured: it is not in a scope that fails by design."""
    return not scenario.faulted(verdict.region, workload.pool_index(verdict.pool_id))
