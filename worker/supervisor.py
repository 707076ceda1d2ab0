"""The worker process: builds the parts, runs them under one task group, shuts down in two phases.

First SIGTERM/SIGINT: stop receiving, let the poll in flight answer (what it brings is released
at once), give back every message not yet in a call, let calls in flight finish within the
shutdown timeout, then give back the rest, flush deletes and exit 0. The worker logs what it
is still waiting for. A second signal exits at once.
"""

from __future__ import annotations

import os
import signal
import time
from contextlib import AsyncExitStack
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup

from worker import __version__, emf, exitcodes
from worker.bulkheads import HeldBudget
from worker.clients import Clients, sqs_region
from worker.cognito import CognitoCaller
from worker.config import Settings
from worker.effective import effective_settings
from worker.handler import Handler
from worker.health import HealthState, start_server
from worker.leases import Leases
from worker.queue_facts import QueueFacts, read_queue_facts
from worker.readback import FeedbackReader
from worker.receiver import Receiver
from worker.scope_pauses import ScopePauses
from worker.settle import Settler
from worker.sqs_batches import SqsBatcher
from worker.startup import check_queues_exist, metrics_address_error

log = structlog.get_logger()

# Liveness fails if the receive loop has not ticked for this long beyond one long poll.
LIVENESS_GRACE_S = 60.0
VISIBILITY_LINGER_S = 0.05
# While stopping, say what the worker still waits for this often.
STOP_PROGRESS_LOG_S = 2.0
# A second signal exits at once, but gives a poll in flight this long to answer first, so that
# what it brings is released rather than hidden for the visibility timeout.
FORCED_EXIT_POLL_GRACE_S = 2.0
# How often --until-empty looks whether the worker can still work.
GIVE_UP_CHECK_S = 0.5


class Supervisor:
    """One worker process's parts, wired together, and its start and two-phase shutdown."""

    def __init__(self, settings: Settings, clients: Clients, sqs: Any, facts: QueueFacts) -> None:
        self.settings = settings
        self.sqs_region = clients.sqs_region
        self.pauses = ScopePauses()
        self.leases = Leases(settings.visibility_timeout_s)
        queue_url = settings.queue_url
        self.deleter = SqsBatcher(
            "delete", lambda entries: sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries)
        )
        self.visibility = SqsBatcher(
            "change_visibility",
            lambda entries: sqs.change_message_visibility_batch(
                QueueUrl=queue_url, Entries=entries
            ),
            # Releases on shutdown and extensions should not wait long.
            linger_s=VISIBILITY_LINGER_S,
        )
        cognito = CognitoCaller(settings, clients)
        settler = Settler(
            settings, clients, self.leases, self.deleter, self.visibility, facts.max_receive_count
        )
        # Messages held here, received and not yet settled: bounded, and shared by scope.
        budget = HeldBudget(settings.max_held, user_rate=settings.user_rate_limit)
        self.handler = Handler(
            settings,
            cognito,
            settler,
            self.leases,
            budget,
            self.pauses,
            FeedbackReader(clients),
            fifo=facts.fifo,
        )
        self.health = HealthState(
            liveness_stale_s=settings.wait_time_s * 2 + LIVENESS_GRACE_S,
            pauses=self.pauses,
            regions_down=cognito.regions_down,
            regions_known=cognito.regions_known,
        )
        self.receiver = Receiver(
            settings, clients, self.handler, self.leases, budget, self.pauses, self.health
        )
        self.started_at = time.monotonic()
        self.exit_code = exitcodes.OK

    async def run(self) -> int:
        async with anyio.create_task_group() as infra:
            await infra.start(self.deleter.run)
            await infra.start(self.visibility.run)
            infra.start_soon(self.leases.heartbeat, self.visibility)
            infra.start_soon(self._watch_signals, infra)
            infra.start_soon(emf.emit_every, self.settings.queue_url, self._state_metrics)
            if self.settings.until_empty:
                infra.start_soon(self._give_up_when_stuck, infra)
            self.health.started = True
            log.info(
                "worker.started",
                version=__version__,
                sqs_region=self.sqs_region,
                settings=effective_settings(self.settings),
                until_empty=self.settings.until_empty,
                pid=os.getpid(),
            )
            async with anyio.create_task_group() as work:
                work.start_soon(self.receiver.run, work)
            # Every message task has settled: flush the batchers, then stop the rest.
            self.deleter.close()
            self.visibility.close()
            await self._wait_for_batchers()
            infra.cancel_scope.cancel()
        self._log_summary()
        return self.exit_code

    async def _wait_for_batchers(self) -> None:
        # SqsBatcher.run returns once closed and flushed; only then may the infra group go.
        await self.deleter.finished.wait()
        await self.visibility.finished.wait()

    async def _watch_signals(self, infra: TaskGroup) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                if self.health.stopping:
                    log.warning(
                        "worker.forced_exit",
                        signal=signal.Signals(signum).name,
                        waiting_for=self._waiting_for(),
                    )
                    with anyio.move_on_after(FORCED_EXIT_POLL_GRACE_S):
                        await self.receiver.poll_over()
                    os._exit(exitcodes.FORCED)
                self._begin_shutdown(signal.Signals(signum).name, infra)

    def _begin_shutdown(self, reason: str, infra: TaskGroup) -> None:
        self.health.stopping = True
        self.receiver.stop()
        log.info(
            "worker.stopping",
            reason=reason,
            held=len(self.leases),
            shutdown_timeout_s=self.settings.shutdown_timeout_s,
            waiting_for=self._waiting_for(),
        )
        infra.start_soon(self._release_after_poll)
        infra.start_soon(self._enforce_deadline)

    async def _release_after_poll(self) -> None:
        # Waiting messages go back once the poll in flight has answered: released before, that
        # very poll could receive them again, and every receive counts toward the redrive.
        await self.receiver.poll_over()
        self.handler.stop_waiting()

    def _waiting_for(self) -> list[str]:
        """What a stop still waits for, in words, for the logs."""
        waiting = []
        if (since := self.receiver.polling_since) is not None:
            left = max(0.0, since + self.settings.wait_time_s - anyio.current_time())
            waiting.append(f"the receive in flight (answers within {left:.0f} s)")
        if self.handler.in_progress:
            waiting.append(f"{self.handler.in_progress} messages being handled")
        return waiting

    def _state_metrics(self) -> dict[str, float]:
        """The worker's state for the CloudWatch metrics of its logs (worker.emf)."""
        return {
            "Paused": float(self.pauses.worker_paused is not None),
            "Ready": float(self.health.ready()[0]),
            "MessagesHeld": float(len(self.leases)),
            "RegionsDown": float(len(self.health.regions_down())),
        }

    async def _give_up_when_stuck(self, infra: TaskGroup) -> None:
        """--until-empty: stop with exit code 1 once the worker has been unable to work
        (unready: it cannot receive, its credentials are refused, Cognito is out of reach)
        for give_up_after_s. The messages stay in the queue."""
        unready_since: float | None = None
        while not self.health.stopping:
            await anyio.sleep(GIVE_UP_CHECK_S)
            ready, reason = self.health.ready()
            now = anyio.current_time()
            if ready:
                unready_since = None
                continue
            unready_since = now if unready_since is None else unready_since
            if now - unready_since >= self.settings.give_up_after_s and not self.health.stopping:
                log.error("worker.gave_up", reason=reason, unready_s=round(now - unready_since, 1))
                self.exit_code = exitcodes.FAILURE
                self._begin_shutdown(f"gave up: {reason}", infra)

    async def _enforce_deadline(self) -> None:
        deadline = anyio.current_time() + self.settings.shutdown_timeout_s
        while (left := deadline - anyio.current_time()) > 0:
            await anyio.sleep(min(STOP_PROGRESS_LOG_S, left))
            if waiting := self._waiting_for():
                log.info(
                    "worker.stop_waiting",
                    waiting_for=waiting,
                    deadline_in_s=round(max(0.0, deadline - anyio.current_time()), 1),
                )
        if self.handler.in_progress:
            log.warning("worker.shutdown_deadline", abandoning_calls=self.handler.in_progress)
        self.handler.stop_all()
        # The receive loop ends too; a poll in progress still answers first (worker.receiver).
        self.receiver.abandon()

    def _log_summary(self) -> None:
        elapsed = time.monotonic() - self.started_at
        tally = {str(settlement): count for settlement, count in self.handler.tally.items()}
        applied = tally.get("applied", 0)
        log.info(
            "worker.stopped",
            elapsed_s=round(elapsed, 1),
            applied_per_s=round(applied / elapsed, 2) if elapsed > 0 else 0.0,
            **tally,
        )


async def serve(settings: Settings) -> int:
    """Run the worker until it is told to stop (or, with --until-empty, the queue is drained)."""
    async with AsyncExitStack() as stack:
        region = sqs_region(settings.queue_url)
        clients = Clients(
            stack,
            cognito_connections=settings.concurrency,
            cognito_endpoint=settings.cognito_endpoint,
            sqs_region=region,
        )
        sqs = await clients.sqs()
        await check_queues_exist(sqs, settings)
        facts = await read_queue_facts(sqs, settings)
        service = Supervisor(settings, clients, sqs, facts)
        if settings.metrics_port:
            try:
                runner = await start_server(
                    service.health, settings.metrics_bind, settings.metrics_port
                )
            except OSError as exc:
                raise metrics_address_error(
                    exc, settings.metrics_bind, settings.metrics_port
                ) from None
            stack.push_async_callback(runner.cleanup)
        return await service.run()
