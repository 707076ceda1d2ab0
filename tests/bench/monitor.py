"""Watching one run: until its goal is reached, its time is up, it stalls or its consumers exit;
the CPU baseline (start-up cost) is taken on the way."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from tests.bench import aws
from tests.support.messages import queue_depth
from tests.support.tcp_proxy import TcpProxy
from tests.support.worker_process import WorkerProcess

MONITOR_S = 0.25
STATS_EVERY_S = 1.0
# CPU spent before a consumer's first receive (imports, client set-up) is start-up, not
# per-message cost; if no receive shows up this soon, measure from here anyway.
BASELINE_FALLBACK_S = 15.0


@dataclass(frozen=True)
class Limits:
    """When a run ends."""

    goal: int | None  # verdicts to settle; None: run for `timeout_s`, that is all
    count_dead_lettered: bool  # dead-lettered messages settle the goal too
    exit_grace_s: float  # once the goal is reached, time to exit by itself (0: stop at once)
    timeout_s: float
    stall_s: float | None  # no progress for this long: stuck (None: never)


@dataclass
class Watch:
    """What watching a run found, besides the processes' own usage."""

    cpu_base_s: float | None = None
    applied_at_base: int = 0
    exited_by_itself: bool = False
    timed_out: bool = False
    stalled: bool = False


class _Monitor:
    def __init__(
        self,
        limits: Limits,
        procs: list[WorkerProcess],
        proxy: TcpProxy,
        applied: Callable[[], int],
    ) -> None:
        self.limits = limits
        self.procs = procs
        self.proxy = proxy
        self.applied = applied
        self.watch = Watch()
        self.started = time.monotonic()
        self.settled_since: float | None = None
        self.last_settled, self.progress_at = -1, self.started
        self.next_check = self.started

    def baseline(self, now: float, exited: list[bool]) -> None:
        """Take the CPU already spent once every process has received (its start-up)."""
        receives = self.proxy.operations().get("ReceiveMessage", 0)
        if receives < len(self.procs) and now - self.started <= BASELINE_FALLBACK_S:
            return
        live = [p for p, gone in zip(self.procs, exited, strict=True) if not gone]
        samples = [p.sample() for p in live]
        self.watch.cpu_base_s = sum(s.cpu_s for s in samples if s is not None)
        self.watch.applied_at_base = self.applied()

    def progress(self, now: float, settled: int) -> bool:
        """Record what is settled; False when the run has stalled."""
        goal, stall_s = self.limits.goal, self.limits.stall_s
        if settled != self.last_settled:
            self.last_settled, self.progress_at = settled, now
        if goal is not None and settled >= goal and self.settled_since is None:
            self.settled_since = now
        stuck = goal is not None and settled < goal and stall_s is not None
        return not (stuck and now - self.progress_at > (stall_s or 0.0))

    def done(self, now: float) -> bool:
        if self.settled_since is not None and now - self.settled_since >= self.limits.exit_grace_s:
            return True
        if now - self.started > self.limits.timeout_s:
            self.watch.timed_out = self.limits.goal is not None
            return True
        return False


async def watch(
    limits: Limits,
    procs: list[WorkerProcess],
    proxy: TcpProxy,
    sqs_endpoint: str,
    dlq_url: str,
    applied: Callable[[], int],
) -> Watch:
    """Watch the run until it ends (see Limits); `applied` counts the goal's verdicts applied."""
    monitor = _Monitor(limits, procs, proxy, applied)
    async with aws.sqs_client(sqs_endpoint) as sqs:
        while True:
            now = time.monotonic()
            exited = [proc.poll() is not None for proc in procs]
            if all(exited):
                monitor.watch.exited_by_itself = True
                break
            if monitor.watch.cpu_base_s is None:
                monitor.baseline(now, exited)
            if limits.goal is not None and now >= monitor.next_check:
                monitor.next_check = now + STATS_EVERY_S
                settled = applied()
                if limits.count_dead_lettered:
                    settled += sum(await queue_depth(sqs, dlq_url))
                if not monitor.progress(now, settled):
                    monitor.watch.stalled = True
                    break
            if monitor.done(now):
                break
            await asyncio.sleep(MONITOR_S)
    return monitor.watch
