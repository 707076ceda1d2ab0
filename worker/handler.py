"""Everything that happens to one message, from parse to settle.

parse → sequence per event → pace (region, user) → call Cognito → classify → decide → settle.
The decision itself lives in fate.decide; this module carries it out. Settling (delete,
dead-letter, release) runs shielded, so a shutdown cannot cut it in half.
"""

from __future__ import annotations

import enum
import time
from collections import Counter
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

import anyio
import structlog

from worker import backoff, metrics
from worker.batching import BatchEntryFailed, Batcher
from worker.clients import Clients
from worker.config import Settings
from worker.contract import Verdict, parse_verdict, username_digest
from worker.errors import InvalidMessage
from worker.fate import Ack, DeadLetter, Hold, Retry, decide
from worker.gate import SystemicGate
from worker.leases import Leases
from worker.message import Message
from worker.ordering import NewestWins, Sequencer
from worker.outage import RegionHealth
from worker.outcome import SUCCESS, Kind, Outcome, classify_exception
from worker.ratelimit import AdaptiveRate, KeyedSpacing, Pacer

log = structlog.get_logger()

DLQ_SEND_ATTEMPTS = 4
# When the DLQ itself cannot be written, try the message again this much later.
DLQ_UNAVAILABLE_RETRY_S = 60
SQS_MESSAGE_ATTRIBUTE_LIMIT = 10
ERROR_MESSAGE_LIMIT = 1024
POOL_WITHOUT_THREAT_PROTECTION = "UserPoolAddOnNotEnabledException"
# Pools already warned about; a bound, in case of a flood of bad pool ids.
POOLS_WARNED_LIMIT = 1000


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


class Handler:
    """Handles messages; shared state lives here, one instance per worker process."""

    def __init__(
        self,
        settings: Settings,
        clients: Clients,
        leases: Leases,
        deleter: Batcher,
        visibility: Batcher,
        gate: SystemicGate,
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.leases = leases
        self.deleter = deleter
        self.visibility = visibility
        self.gate = gate
        self.sequencer = Sequencer()
        self.newest = NewestWins()
        self.users = KeyedSpacing(settings.user_rate_limit)
        self.regions: dict[str, RegionHealth] = {}
        self.pacers: dict[str, Pacer] = {}
        self.calls = anyio.CapacityLimiter(settings.concurrency)
        self.slots = anyio.Semaphore(settings.max_held)
        self.tasks: set[Task] = set()
        self.stopping = False
        self.tally: Counter[str] = Counter()
        self._pools_warned: set[str] = set()

    # -- shutdown -------------------------------------------------------------------------

    def stop_waiting(self) -> None:
        """First phase of shutdown: every task not in a call gives its message back."""
        self.stopping = True
        for task in list(self.tasks):
            if task.phase is Phase.WAITING:
                task.scope.cancel()

    def stop_all(self) -> None:
        """Shutdown deadline: calls still in flight are abandoned and their messages released."""
        self.stopping = True
        for task in list(self.tasks):
            task.scope.cancel()

    # -- the message's path ---------------------------------------------------------------

    async def handle(self, message: Message) -> None:
        """Handle one held message to its end; always frees its slot and lease."""
        task = Task(message)
        self.tasks.add(task)
        started = time.monotonic()
        result: dict[str, Any] = {"outcome": "released", "attempts": 0}
        try:
            with structlog.contextvars.bound_contextvars(
                message_id=message.message_id, receive_count=message.receive_count
            ):
                with task.scope:
                    await self._handle(task, result)
                if result["outcome"] == "released":
                    await self._release(task, "shutdown" if self.stopping else "cancelled")
                self.tally[result["outcome"]] += 1
                log.info(
                    "message.done",
                    duration_ms=round((time.monotonic() - started) * 1000, 1),
                    **result,
                )
        finally:
            self.gate.leave(task)
            self.tasks.discard(task)
            self.leases.remove(message.message_id)
            self._free_slot(task)

    def _free_slot(self, task: Task) -> None:
        """Let the receiver fetch another message in this one's place.

        Done as soon as the message's fate is sealed, before its batched delete lands: waiting
        for the delete would idle the calls for the batch's linger.
        """
        if task.holds_slot:
            task.holds_slot = False
            self.slots.release()

    async def _handle(self, task: Task, result: dict[str, Any]) -> None:
        message = task.message
        try:
            verdict = parse_verdict(message.body)
        except InvalidMessage as exc:
            result["code"] = exc.code
            result["outcome"] = await self._dead_letter(task, exc.code, exc.message, attempts=0)
            return
        result.update(
            pool_id=verdict.user_pool_id,
            event_id=verdict.event_id,
            user=username_digest(verdict.username, self.settings.username_hash_key),
            feedback=verdict.feedback_value,
        )
        key = (verdict.user_pool_id, verdict.username, verdict.event_id)
        async with AsyncExitStack() as turns:
            if message.group_id is not None:
                # FIFO: in order within the message group.
                await turns.enter_async_context(
                    self.sequencer.turn(("group", message.group_id), message.sequence_number or 0)
                )
            await turns.enter_async_context(self.sequencer.turn(key, message.sent_at_ms))
            if self.newest.superseded(key, message.sent_at_ms, message.message_id):
                metrics.SUPERSEDED.inc()
                result["outcome"] = "superseded"
                task.phase = Phase.SETTLING
            else:
                await self._attempt_until_settled(task, verdict, key, result)
        # Deleted after the turn is passed on: the next verdict for this event need not wait
        # for the batch (newest-wins already knows about this one).
        if result["outcome"] in ("applied", "superseded"):
            await self._delete(task)

    async def _attempt_until_settled(
        self, task: Task, verdict: Verdict, key: tuple[str, str, str], result: dict[str, Any]
    ) -> None:
        message = task.message
        region = verdict.region
        rate, pacer = self._region(region)
        user = (verdict.user_pool_id, verdict.username)
        transient_failures = 0
        throttles = 0
        while True:
            task.phase = Phase.WAITING
            if self.stopping:
                return
            if not self.gate.may_call(task):
                await self._release(task, "systemic_pause")
                result["outcome"] = "released_paused"
                return
            # Wait for the user before taking a region slot, so a busy user does not hold one.
            await self.users.wait(user)
            await pacer.acquire()
            async with self.calls:
                # Another call to this user may have started meanwhile: wait and mark with no
                # checkpoint in between, so two calls to one user are never closer than allowed.
                await self.users.wait(user)
                if self.stopping or not self.gate.may_call(task):
                    continue
                task.phase = Phase.CALLING
                self.users.mark(user)
                call_started = time.monotonic()
                outcome = await self._call(verdict)
            task.phase = Phase.WAITING
            result["attempts"] += 1
            if outcome.kind is not Kind.SYSTEMIC:
                self.gate.resume(task)
            self._adapt(region, rate, outcome, call_started)
            region_down = self._region_health(region).record(outcome)
            if outcome.kind is Kind.TRANSIENT and not region_down:
                transient_failures += 1
            action = decide(
                outcome,
                local_attempts=transient_failures,
                receive_count=message.receive_count,
                max_attempts=self.settings.max_attempts,
                region_down=region_down,
            )
            match action:
                case Ack():
                    self.newest.record(key, message.sent_at_ms, message.message_id)
                    metrics.APPLIED.labels(region).inc()
                    metrics.AGE_AT_APPLY.observe(max(0.0, time.time() - message.sent_at_ms / 1000))
                    result["outcome"] = "applied"
                    # No checkpoint until the shielded delete: a shutdown cannot slip between.
                    task.phase = Phase.SETTLING
                    return
                case DeadLetter(code=code, message=text):
                    result["code"] = code
                    if code == POOL_WITHOUT_THREAT_PROTECTION:
                        self._warn_pool_without_threat_protection(verdict.user_pool_id)
                    attempts = transient_failures + max(message.receive_count - 1, 0)
                    result["outcome"] = await self._dead_letter(
                        task, code, text, attempts=max(attempts, 1)
                    )
                    return
                case Retry(throttled=True):
                    throttles += 1
                    metrics.RETRIED.labels("throttled").inc()
                    result["throttles"] = throttles
                    await anyio.sleep(
                        backoff.full_jitter(
                            throttles, base_s=backoff.THROTTLE_BASE_S, cap_s=backoff.THROTTLE_CAP_S
                        )
                    )
                case Retry(throttled=False):
                    metrics.RETRIED.labels("outage" if region_down else "transient").inc()
                    result["last_error"] = outcome.code
                    retries = result.get("retries", 0) + 1
                    result["retries"] = retries
                    await anyio.sleep(
                        backoff.full_jitter(
                            retries,
                            base_s=backoff.RETRY_BASE_S,
                            cap_s=backoff.RETRY_CAP_S,
                        )
                    )
                case Hold():
                    self.gate.pause(task, outcome.code, outcome.message)
                    result["last_error"] = outcome.code
                    if not self.gate.is_probe(task):
                        await self._release(task, "systemic_pause")
                        result["outcome"] = "released_paused"
                        return
                    probes = result.get("probes", 0) + 1
                    result["probes"] = probes
                    await anyio.sleep(
                        backoff.full_jitter(
                            probes, base_s=backoff.PROBE_BASE_S, cap_s=backoff.PROBE_CAP_S
                        )
                    )

    async def _call(self, verdict: Verdict) -> Outcome:
        metrics.IN_FLIGHT.inc()
        started = time.monotonic()
        try:
            client = await self.clients.cognito(verdict.region)
            await client.admin_update_auth_event_feedback(
                UserPoolId=verdict.user_pool_id,
                Username=verdict.username,
                EventId=verdict.event_id,
                FeedbackValue=verdict.feedback_value,  # type: ignore[arg-type]
            )
        except Exception as exc:
            outcome = classify_exception(exc)
            metrics.COGNITO_ERRORS.labels(outcome.code).inc()
            return outcome
        else:
            return SUCCESS
        finally:
            metrics.IN_FLIGHT.dec()
            metrics.CALL_LATENCY.observe(time.monotonic() - started)

    def _region_health(self, region: str) -> RegionHealth:
        health = self.regions.get(region)
        if health is None:
            health = self.regions[region] = RegionHealth(region)
        return health

    def regions_down(self) -> list[str]:
        """'region: last error' for each region whose calls all fail (for readiness)."""
        return [f"{h.region}: {h.last_error}" for h in self.regions.values() if h.down]

    def _region(self, region: str) -> tuple[AdaptiveRate, Pacer]:
        pacer = self.pacers.get(region)
        if pacer is None:
            rate = AdaptiveRate(self.settings.rate_limit)
            pacer = Pacer(rate)
            self.pacers[region] = pacer
            metrics.ALLOWED_RATE.labels(region).set(rate.rate)
        return pacer.rate, pacer

    def _adapt(
        self, region: str, rate: AdaptiveRate, outcome: Outcome, call_started: float
    ) -> None:
        if outcome.kind is Kind.SUCCESS:
            rate.on_success()
        elif outcome.kind is Kind.THROTTLED:
            metrics.THROTTLES.labels(region).inc()
            rate.on_throttle(call_started)
        else:
            return
        metrics.ALLOWED_RATE.labels(region).set(rate.rate)
        reported = rate.take_report()
        if reported is not None:
            log.info("rate.changed", region=region, allowed_per_s=round(reported, 2))

    # -- settling (always shielded) -------------------------------------------------------

    async def _delete(self, task: Task) -> None:
        task.phase = Phase.SETTLING
        self._free_slot(task)
        with anyio.CancelScope(shield=True):
            try:
                await self.deleter.submit(
                    {"ReceiptHandle": self.leases.receipt_handle(task.message)}
                )
            except BatchEntryFailed as exc:
                metrics.SETTLE_ERRORS.labels("delete").inc()
                # The verdict is applied; SQS will deliver the message again and the repeat
                # is harmless (feedback is idempotent), so this is worth a warning only.
                log.warning("message.delete_failed", code=exc.code, error=exc.message)

    async def _release(self, task: Task, reason: str) -> None:
        """Hand the message back to the queue at once (visibility 0), without a call."""
        task.phase = Phase.SETTLING
        metrics.RELEASED.labels(reason).inc()
        await self._change_visibility(task.message, 0)

    async def _change_visibility(self, message: Message, timeout_s: int) -> None:
        with anyio.CancelScope(shield=True):
            try:
                await self.visibility.submit(
                    {
                        "ReceiptHandle": self.leases.receipt_handle(message),
                        "VisibilityTimeout": timeout_s,
                    }
                )
            except BatchEntryFailed as exc:
                metrics.SETTLE_ERRORS.labels("change_visibility").inc()
                log.warning("message.visibility_change_failed", code=exc.code, error=exc.message)

    async def _dead_letter(self, task: Task, code: str, text: str, *, attempts: int) -> str:
        """Copy the original body byte for byte to the DLQ; delete the source only after that.

        Returns the outcome for the log line: dead-lettered, or kept for later when the DLQ
        itself cannot be written.
        """
        task.phase = Phase.SETTLING
        message = task.message
        with anyio.CancelScope(shield=True):
            params = self._dead_letter_params(message, code, text, attempts)
            sqs = await self.clients.sqs()
            for attempt in range(1, DLQ_SEND_ATTEMPTS + 1):
                try:
                    await sqs.send_message(**params)
                    break
                except Exception as exc:
                    outcome = classify_exception(exc)
                    metrics.SETTLE_ERRORS.labels("dead_letter").inc()
                    log.error(
                        "dlq.send_failed", code=outcome.code, error=outcome.message, attempt=attempt
                    )
                    if attempt == DLQ_SEND_ATTEMPTS:
                        # Keep the message: it comes back later and is tried again.
                        await self._change_visibility(message, DLQ_UNAVAILABLE_RETRY_S)
                        return "dlq_unavailable"
                    await anyio.sleep(
                        backoff.full_jitter(attempt, base_s=backoff.RETRY_BASE_S, cap_s=5.0)
                    )
            metrics.DEAD_LETTERED.labels(code).inc()
            await self._delete(task)
        return "dead_lettered"

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

    def _dead_letter_params(
        self, message: Message, code: str, text: str, attempts: int
    ) -> dict[str, Any]:
        ours: dict[str, Any] = {
            "ErrorCode": _string_attribute(code),
            "ErrorMessage": _string_attribute(text[:ERROR_MESSAGE_LIMIT] or code),
            "SourceMessageId": _string_attribute(message.message_id),
            "Attempts": {"DataType": "Number", "StringValue": str(attempts)},
            "FailedAt": _string_attribute(datetime.now(UTC).isoformat(timespec="milliseconds")),
        }
        # Keep the producer's own attributes (trace ids and the like) while there is room.
        carried = {
            name: {
                k: v for k, v in value.items() if k in ("DataType", "StringValue", "BinaryValue")
            }
            for name, value in message.message_attributes.items()
            if name not in ours
        }
        room = SQS_MESSAGE_ATTRIBUTE_LIMIT - len(ours)
        attributes = dict(list(carried.items())[:room]) | ours
        params: dict[str, Any] = {
            "QueueUrl": self.settings.dlq_url,
            "MessageBody": message.body,
            "MessageAttributes": attributes,
        }
        if self.settings.is_fifo:
            params["MessageGroupId"] = message.group_id or "dead-letter"
            params["MessageDeduplicationId"] = message.message_id
        return params


def _string_attribute(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}
