"""One message's path, from parse to settle.

parse → one turn at a time per event (ordering) → call Cognito (cognito: paced, classified) →
decide (fate) → settle (settle: delete, dead-letter, release). This module carries the
message along that path and keeps the count of its attempts; each step is decided elsewhere.
"""

from __future__ import annotations

import enum
import time
from collections import Counter
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import anyio
import structlog

from worker import backoff, metrics, tracing
from worker.cognito import CognitoCaller
from worker.config import Settings
from worker.contract import Verdict, parse_verdict, username_digest
from worker.errors import InvalidMessage
from worker.fate import Ack, Action, DeadLetter, Hold, Retry, decide
from worker.leases import Leases
from worker.message import Message
from worker.ordering import NewestWins, Sequencer
from worker.outcome import Kind, Outcome
from worker.record import MessageRecord, Settlement
from worker.settle import Settler
from worker.systemic_pause import SystemicPause

log = structlog.get_logger()

POOL_WITHOUT_THREAT_PROTECTION = "UserPoolAddOnNotEnabledException"
# Pools already warned about; a bound, in case of a flood of bad pool ids.
POOLS_WARNED_LIMIT = 1000

EventKey = tuple[str, str, str]


class Phase(enum.Enum):
    WAITING = "waiting"  # parsed, waiting for its turn, a rate slot, or a retry
    CALLING = "calling"  # a Cognito call is in flight
    SETTLING = "settling"


class Task:
    """One message being handled; shutdown cancels `scope` to stop it waiting or calling."""

    __slots__ = ("holds_slot", "message", "phase", "scope")

    def __init__(self, message: Message) -> None:
        self.message = message
        self.phase = Phase.WAITING
        self.scope = anyio.CancelScope()
        self.holds_slot = True


@dataclass(eq=False)
class Handler:
    """Handles messages; one instance per worker process."""

    settings: Settings
    cognito: CognitoCaller
    settler: Settler
    leases: Leases
    held: anyio.Semaphore
    pause: SystemicPause
    tally: Counter[Settlement] = field(init=False, default_factory=Counter)
    _sequencer: Sequencer = field(init=False, default_factory=Sequencer)
    _newest: NewestWins = field(init=False, default_factory=NewestWins)
    _tasks: set[Task] = field(init=False, default_factory=set)
    _stopping: bool = field(init=False, default=False)
    _pools_warned: set[str] = field(init=False, default_factory=set)

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def in_progress(self) -> int:
        """Messages being handled now."""
        return len(self._tasks)

    # -- shutdown -------------------------------------------------------------------------

    def stop_waiting(self) -> None:
        """First phase of shutdown: every task not in a call gives its message back."""
        self._stopping = True
        for task in list(self._tasks):
            if task.phase is Phase.WAITING:
                task.scope.cancel()

    def stop_all(self) -> None:
        """Shutdown deadline: calls still in flight are abandoned and their messages released."""
        self._stopping = True
        for task in list(self._tasks):
            task.scope.cancel()

    # -- the message's path ---------------------------------------------------------------

    async def handle(self, message: Message) -> None:
        """Handle one held message to its end; always frees its slot and lease."""
        task = Task(message)
        self._tasks.add(task)
        started = time.monotonic()
        record = MessageRecord()
        try:
            with (
                tracing.message_span(message, self.settings.queue_url) as trace,
                structlog.contextvars.bound_contextvars(
                    message_id=message.message_id,
                    receive_count=message.receive_count,
                    **trace.log_fields(),
                ),
            ):
                with task.scope:
                    await self._handle(task, record)
                if record.settlement is Settlement.RELEASED:
                    task.phase = Phase.SETTLING
                    await self.settler.release(
                        message, "shutdown" if self._stopping else "cancelled"
                    )
                self.tally[record.settlement] += 1
                trace.finish(record.log_fields())
                log.info(
                    "message.done",
                    duration_ms=round((time.monotonic() - started) * 1000, 1),
                    **record.log_fields(),
                )
        finally:
            self.pause.leave(task)
            self._tasks.discard(task)
            self.leases.remove(message.message_id)
            self._free_slot(task)

    def _free_slot(self, task: Task) -> None:
        """Let the receiver fetch another message in this one's place.

        Done as soon as the message's fate is sealed, before its batched delete lands: waiting
        for the delete would idle the calls for the batch's linger.
        """
        if task.holds_slot:
            task.holds_slot = False
            self.held.release()

    async def _handle(self, task: Task, record: MessageRecord) -> None:
        message = task.message
        try:
            verdict = parse_verdict(message.body)
        except InvalidMessage as exc:
            record.code = exc.code
            await self._dead_letter(task, record, exc.code, exc.message, attempts=0)
            return
        record.pool_id = verdict.user_pool_id
        record.event_id = verdict.event_id
        record.user = username_digest(verdict.username, self.settings.username_hash_key)
        record.feedback = verdict.feedback_value
        key: EventKey = (verdict.user_pool_id, verdict.username, verdict.event_id)
        async with AsyncExitStack() as turns:
            if message.group_id is not None:
                # FIFO: in order within the message group.
                await turns.enter_async_context(
                    self._sequencer.turn(("group", message.group_id), message.sequence_number or 0)
                )
            await turns.enter_async_context(self._sequencer.turn(key, message.sent_at_ms))
            if self._newest.superseded(key, message.sent_at_ms, message.message_id):
                metrics.SUPERSEDED.inc()
                record.settlement = Settlement.SUPERSEDED
                task.phase = Phase.SETTLING
            else:
                await self._attempt_until_settled(task, verdict, key, record)
        # Deleted after the turn is passed on: the next verdict for this event need not wait
        # for the batch (newest-wins already knows about this one).
        if record.settlement in (Settlement.APPLIED, Settlement.SUPERSEDED):
            await self._delete(task)

    async def _attempt_until_settled(
        self, task: Task, verdict: Verdict, key: EventKey, record: MessageRecord
    ) -> None:
        transient_failures = 0
        while True:
            task.phase = Phase.WAITING
            if self._stopping:
                return
            if not self.pause.may_call(task):
                await self._release_paused(task, record)
                return
            outcome = await self.cognito.call(
                verdict,
                may_call=lambda: not self._stopping and self.pause.may_call(task),
                on_call=lambda: setattr(task, "phase", Phase.CALLING),
            )
            task.phase = Phase.WAITING
            if outcome is None:
                continue
            record.attempts += 1
            if outcome.kind is not Kind.SYSTEMIC:
                self.pause.resume(task)
            region_down = self.cognito.region_down(verdict.region)
            if outcome.kind is Kind.TRANSIENT and not region_down:
                transient_failures += 1
            action = decide(
                outcome,
                local_attempts=transient_failures,
                receive_count=task.message.receive_count,
                max_attempts=self.settings.max_attempts,
                region_down=region_down,
            )
            settled = await self._carry_out(
                action, task, verdict, key, record, outcome, transient_failures
            )
            if settled:
                return

    async def _carry_out(
        self,
        action: Action,
        task: Task,
        verdict: Verdict,
        key: EventKey,
        record: MessageRecord,
        outcome: Outcome,
        transient_failures: int,
    ) -> bool:
        """Do what `decide` said: settle (True), or wait before the next attempt (False)."""
        message = task.message
        match action:
            case Ack():
                self._newest.record(key, message.sent_at_ms, message.message_id)
                metrics.APPLIED.labels(verdict.region).inc()
                metrics.AGE_AT_APPLY.observe(max(0.0, time.time() - message.sent_at_ms / 1000))
                record.settlement = Settlement.APPLIED
                # No checkpoint until the shielded delete: a shutdown cannot slip between.
                task.phase = Phase.SETTLING
                return True
            case DeadLetter(code=code, message=text):
                record.code = code
                if code == POOL_WITHOUT_THREAT_PROTECTION:
                    self._warn_pool_without_threat_protection(verdict.user_pool_id)
                attempts = transient_failures + max(message.receive_count - 1, 0)
                await self._dead_letter(task, record, code, text, attempts=max(attempts, 1))
                return True
            case Retry(throttled=True):
                record.throttles += 1
                metrics.RETRIED.labels("throttled").inc()
                delay = backoff.full_jitter(
                    record.throttles, base_s=backoff.THROTTLE_BASE_S, cap_s=backoff.THROTTLE_CAP_S
                )
            case Retry(throttled=False):
                outage = self.cognito.region_down(verdict.region)
                metrics.RETRIED.labels("outage" if outage else "transient").inc()
                record.last_error = outcome.code
                record.retries += 1
                delay = backoff.full_jitter(
                    record.retries, base_s=backoff.RETRY_BASE_S, cap_s=backoff.RETRY_CAP_S
                )
            case Hold():
                self.pause.pause(task, outcome.code, outcome.message)
                record.last_error = outcome.code
                if not self.pause.is_probe(task):
                    await self._release_paused(task, record)
                    return True
                record.probes += 1
                delay = backoff.full_jitter(
                    record.probes, base_s=backoff.PROBE_BASE_S, cap_s=backoff.PROBE_CAP_S
                )
        await anyio.sleep(delay)
        return False

    # -- settling ---------------------------------------------------------------------------

    async def _delete(self, task: Task) -> None:
        task.phase = Phase.SETTLING
        self._free_slot(task)
        await self.settler.delete(task.message)

    async def _release_paused(self, task: Task, record: MessageRecord) -> None:
        task.phase = Phase.SETTLING
        record.settlement = Settlement.RELEASED_PAUSED
        await self.settler.release(task.message, "systemic_pause")

    async def _dead_letter(
        self, task: Task, record: MessageRecord, code: str, text: str, *, attempts: int
    ) -> None:
        task.phase = Phase.SETTLING
        record.settlement = await self.settler.dead_letter(
            task.message, code, text, attempts=attempts, on_copied=lambda: self._free_slot(task)
        )

    def _warn_pool_without_threat_protection(self, pool_id: str) -> None:
        """Every verdict for such a pool will fail: say so loudly, once per pool."""
        if pool_id in self._pools_warned or len(self._pools_warned) >= POOLS_WARNED_LIMIT:
            return
        self._pools_warned.add(pool_id)
        log.error(
            "pool.threat_protection_off",
            pool_id=pool_id,
            note="the pool is not on the Plus plan or threat protection is off: "
            "its verdicts are dead-lettered until it is turned on",
        )
