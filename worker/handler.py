"""One message's path, from parse to settle.

parse (contract) → admit into its scopes' share of the held budget, or park it (bulkheads) →
one turn at a time per event (ordering) → skip it if a newer verdict was applied (ordering;
readback for a copy) → call Cognito when no paused scope stops it (cognito, scope_pauses) →
decide (fate) → settle (settle: delete, dead-letter, hand back). This module carries the
message along that path and keeps its attempts (attempts); each step is decided elsewhere.
"""

from __future__ import annotations

import enum
import time
from collections import Counter
from collections.abc import Hashable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import anyio
import structlog

from worker import backoff, metrics, tracing
from worker.attempts import AttemptLedger
from worker.bulkheads import STALLED_HOLD, HeldBudget, ScopesOf, Stall
from worker.cognito import CognitoCaller
from worker.config import Settings
from worker.contract import Verdict, parse_verdict, username_digest
from worker.errors import InvalidMessage
from worker.fate import Ack, Action, DeadLetter, Hold, Retry, counts_as_attempt, decide
from worker.leases import Leases
from worker.message import Message
from worker.ordering import NewestWins, Sequencer
from worker.outcome import Kind, Outcome, Scope
from worker.readback import FeedbackReader
from worker.record import MessageRecord, Settlement
from worker.scope_pauses import ScopeKey, ScopePauses
from worker.settle import Settler

log = structlog.get_logger()

# Cognito's clock and ours may disagree by this much when telling our own feedback apart.
CLOCK_SKEW_S = 1.0
# Pools already warned about; a bound, in case of a flood of bad pool ids.
POOLS_WARNED_LIMIT = 1000

EventKey = tuple[str, str, str]


class Phase(enum.Enum):
    WAITING = "waiting"  # parsed, waiting for its turn, a rate slot, or a retry
    CALLING = "calling"  # a Cognito call is in flight
    SETTLING = "settling"


class Task:
    """One message being handled; shutdown cancels `scope` to stop it waiting or calling."""

    __slots__ = ("message", "phase", "scope", "scopes")

    def __init__(self, message: Message) -> None:
        self.message = message
        self.phase = Phase.WAITING
        self.scope = anyio.CancelScope()
        self.scopes: ScopesOf | None = None  # set once admitted into the budget


@dataclass(eq=False)
class Handler:
    """Handles messages; one instance per worker process."""

    settings: Settings
    cognito: CognitoCaller
    settler: Settler
    leases: Leases
    budget: HeldBudget
    pauses: ScopePauses
    reader: FeedbackReader
    fifo: bool = False
    tally: Counter[Settlement] = field(init=False, default_factory=Counter)
    _ledger: AttemptLedger = field(init=False, default_factory=AttemptLedger)
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
        """Handle one held message to its end; always gives back its room and lease."""
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
                    await self._hand_back(
                        task, record, "shutdown" if self._stopping else "cancelled", 0
                    )
                self.tally[record.settlement] += 1
                trace.finish(record.log_fields())
                log.info(
                    "message.done",
                    duration_ms=round((time.monotonic() - started) * 1000, 1),
                    **record.log_fields(),
                )
        finally:
            self.pauses.leave(task)
            self._tasks.discard(task)
            if task.scopes is not None:
                self.budget.leave(task.scopes)
            self.leases.remove(message.message_id)
            # Only now, with the message settled with SQS, may another take its room.
            self.budget.room.release()

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
        if not await self._admit(task, verdict, record):
            return
        key: EventKey = (verdict.user_pool_id, verdict.username, verdict.event_id)
        async with AsyncExitStack() as turns:
            if self.fifo and message.group_id is not None:
                # FIFO: in order within the message group.
                await turns.enter_async_context(
                    self._sequencer.turn(("group", message.group_id), message.sequence_number or 0)
                )
            await turns.enter_async_context(self._sequencer.turn(key, message.original_sent_ms))
            if await self._superseded(verdict, key, message, record):
                metrics.SUPERSEDED.inc()
                record.settlement = Settlement.SUPERSEDED
                task.phase = Phase.SETTLING
            else:
                await self._attempt_until_settled(task, verdict, key, record)
        # Deleted after the turn is passed on: the next verdict for this event need not wait
        # for the batch (newest-wins already knows about this one).
        if record.settlement in (Settlement.APPLIED, Settlement.SUPERSEDED):
            task.phase = Phase.SETTLING
            self._ledger.forget(message)
            await self.settler.delete(message)

    async def _admit(self, task: Task, verdict: Verdict, record: MessageRecord) -> bool:
        """Hold the message within its scopes' share, or park it; True when held."""
        scopes = ScopesOf(
            region=verdict.region,
            pool=verdict.user_pool_id,
            tenant=self._tenant(task.message, verdict),
            user=(verdict.user_pool_id, verdict.username),
            fair_queue_group=self._fair_queue_group(task.message),
        )
        park = self.budget.admit(
            scopes, region_rate=self.cognito.rate(verdict.region), stall=self._stall(verdict)
        )
        if park is None:
            task.scopes = scopes
            return True
        await self._hand_back(task, record, park.reason, park.seconds)
        return False

    def _tenant(self, message: Message, verdict: Verdict) -> Hashable:
        """Whose share of the region a call comes from: a fair queue's message group (a
        tenant, on a standard queue), or else the pool. FIFO groups are an order, not a
        tenant."""
        if self._fair_queue_group(message):
            return ("group", message.group_id)
        return ("pool", verdict.user_pool_id)

    def _fair_queue_group(self, message: Message) -> bool:
        return not self.fifo and message.group_id is not None

    def _stall(self, verdict: Verdict) -> Stall | None:
        pause = self.pauses.blocking(verdict.region, verdict.user_pool_id)
        if pause is not None:
            wait = self.pauses.park_for_s(verdict.region, verdict.user_pool_id)
            return Stall(pause.key.scope, wait)
        outage = self.cognito.region_stall_s(verdict.region)
        return None if outage is None else Stall(Scope.REGION, outage)

    async def _superseded(
        self, verdict: Verdict, key: EventKey, message: Message, record: MessageRecord
    ) -> bool:
        """A newer verdict for the event was applied: in this process, or (for a copy that
        went back through the queue) by anyone, as Cognito's feedback date tells."""
        if self._newest.superseded(key, message.original_sent_ms, message.message_id):
            return True
        if not message.is_copy:
            return False
        readback = await self.reader.read(verdict)
        if readback.error is not None:
            record.readback = f"failed: {readback.error.code}"
            log.warning(
                "readback.failed",
                code=readback.error.code,
                error=readback.error.message,
                note="applying the verdict without knowing whether a newer one was given",
            )
            return False
        newer = readback.supersedes(message.original_sent_ms)
        ours = self._newest.last_applied(key)
        if newer and ours is not None and ours.sent_at_ms < message.original_sent_ms:
            # The feedback shown may be an older verdict this process applied: ours, if it is
            # dated no later than our apply.
            assert readback.feedback_date is not None
            newer = readback.feedback_date.timestamp() > ours.applied_at_s + CLOCK_SKEW_S
        record.readback = "newer feedback" if newer else "ok"
        return newer

    async def _attempt_until_settled(
        self, task: Task, verdict: Verdict, key: EventKey, record: MessageRecord
    ) -> None:
        region, pool = verdict.region, verdict.user_pool_id
        while True:
            task.phase = Phase.WAITING
            if self._stopping:
                return
            if not self.pauses.may_call(task, region, pool):
                await self._hand_back(task, record, "paused", self._pause_park_s(verdict))
                return
            outcome = await self.cognito.call(
                verdict,
                tenant=task.scopes.tenant if task.scopes else pool,
                message_id=task.message.message_id,
                may_call=lambda: not self._stopping and self.pauses.may_call(task, region, pool),
                on_call=lambda: setattr(task, "phase", Phase.CALLING),
            )
            task.phase = Phase.WAITING
            if outcome is None:
                continue
            record.attempts += 1
            if outcome.kind is not Kind.SYSTEMIC:
                self.pauses.answered(region, pool)
            region_down = self.cognito.region_down(region)
            if counts_as_attempt(outcome, region_down=region_down):
                attempts = self._ledger.failed(task.message)
            else:
                attempts = self._ledger.count(task.message)
            action = decide(
                outcome,
                attempts=attempts,
                max_attempts=self.settings.max_attempts,
                region_down=region_down,
            )
            if await self._carry_out(action, task, verdict, key, record, outcome):
                return

    async def _carry_out(
        self,
        action: Action,
        task: Task,
        verdict: Verdict,
        key: EventKey,
        record: MessageRecord,
        outcome: Outcome,
    ) -> bool:
        """Do what `decide` said: settle (True), or wait before the next attempt (False)."""
        message = task.message
        match action:
            case Ack():
                self._newest.record(
                    key, message.original_sent_ms, message.message_id, now=time.time()
                )
                metrics.APPLIED.labels(verdict.region).inc()
                metrics.AGE_AT_APPLY.observe(max(0.0, time.time() - message.sent_at_ms / 1000))
                record.settlement = Settlement.APPLIED
                # No checkpoint until the shielded delete: a shutdown cannot slip between.
                task.phase = Phase.SETTLING
                return True
            case DeadLetter(code=code, message=text):
                record.code = code
                if outcome.scope is Scope.POOL:
                    self._warn_pool_setup(verdict.user_pool_id, code)
                attempts = self._ledger.count(message) + (outcome.kind is Kind.PERMANENT)
                await self._dead_letter(task, record, code, text, attempts=attempts)
                return True
            case Retry(throttled=True):
                record.throttles += 1
                metrics.RETRIED.labels("throttled").inc()
                delay = backoff.full_jitter(
                    record.throttles, base_s=backoff.THROTTLE_BASE_S, cap_s=backoff.THROTTLE_CAP_S
                )
            case Retry(throttled=False):
                return await self._retry_later(task, verdict, record, outcome)
            case Hold(scope=scope):
                record.last_error = outcome.code
                names = {Scope.POOL: verdict.user_pool_id, Scope.REGION: verdict.region}
                paused = ScopeKey(scope, names.get(scope, ""))
                delay = self.pauses.failed(task, paused, outcome.code, outcome.message)
                if not self.pauses.may_call(task, verdict.region, verdict.user_pool_id):
                    await self._hand_back(task, record, "paused", self._pause_park_s(verdict))
                    return True
                record.probes += 1
        await anyio.sleep(delay)
        return False

    async def _retry_later(
        self, task: Task, verdict: Verdict, record: MessageRecord, outcome: Outcome
    ) -> bool:
        """A transient failure: back off and retry here, or, while the region is down and it
        holds more than a few messages, park this one until the outage may be over."""
        record.last_error = outcome.code
        record.retries += 1
        outage = self.cognito.region_stall_s(verdict.region)
        metrics.RETRIED.labels("outage" if outage is not None else "transient").inc()
        if outage is not None and self.budget.held_in(verdict.region) > STALLED_HOLD:
            await self._hand_back(task, record, "region_stalled", max(1, round(outage)))
            return True
        await anyio.sleep(
            backoff.full_jitter(
                record.retries, base_s=backoff.RETRY_BASE_S, cap_s=backoff.RETRY_CAP_S
            )
        )
        return False

    def _pause_park_s(self, verdict: Verdict) -> int:
        return max(1, round(self.pauses.park_for_s(verdict.region, verdict.user_pool_id)))

    # -- settling ---------------------------------------------------------------------------

    async def _hand_back(self, task: Task, record: MessageRecord, reason: str, delay: int) -> None:
        task.phase = Phase.SETTLING
        requeued = await self.settler.hand_back(
            task.message, reason, delay_s=delay, attempts=self._ledger.count(task.message)
        )
        if requeued:
            self._ledger.forget(task.message)
            record.settlement = Settlement.REQUEUED
        elif delay:
            record.settlement = Settlement.PARKED
        record.park_reason = reason
        record.parked_for_s = delay

    async def _dead_letter(
        self, task: Task, record: MessageRecord, code: str, text: str, *, attempts: int
    ) -> None:
        task.phase = Phase.SETTLING
        record.settlement = await self.settler.dead_letter(
            task.message, code, text, attempts=attempts
        )
        if record.settlement is Settlement.DEAD_LETTERED:
            self._ledger.forget(task.message)

    def _warn_pool_setup(self, pool_id: str, code: str) -> None:
        """Every verdict for such a pool will fail: say so loudly, once per pool."""
        if pool_id in self._pools_warned or len(self._pools_warned) >= POOLS_WARNED_LIMIT:
            return
        self._pools_warned.add(pool_id)
        log.error(
            "pool.threat_protection_unavailable",
            pool_id=pool_id,
            code=code,
            note="the pool is not on the Plus plan, threat protection is off, or the feature "
            "is not available to it: its verdicts are dead-lettered until that is fixed, "
            "then redrive them",
        )
