"""Settling a message with SQS: delete, hand back (release or park), requeue, dead-letter.

Every operation here runs shielded from cancellation, so a shutdown cannot cut one in half.
Deletes and visibility changes go through the batch writers (ten entries per call). A copy
(dead-letter or requeue) is a SendMessage of the original body, byte for byte, with the
message's history as attributes, and the source is deleted only after that send succeeded.

A message handed back at its last receive (``maxReceiveCount`` of the queue's redrive policy)
would be moved to the DLQ by SQS itself, without a reason, at its next receive. So it is
requeued instead: a fresh copy carrying its attempts and original ``SentTimestamp`` goes to
the back of the queue, and the old one is deleted. Only a worker that crashes while holding a
message leaves it to SQS's redrive policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
import structlog

from worker import backoff, metrics, tracing
from worker.clients import Clients
from worker.config import Settings
from worker.errors import BatchEntryFailed
from worker.leases import Leases
from worker.message import ATTEMPTS, ORIGINAL_SENT_TIMESTAMP, SOURCE_MESSAGE_ID, Message
from worker.outcome import classify_exception
from worker.record import Settlement
from worker.sqs_batches import SqsBatcher

log = structlog.get_logger()

COPY_SEND_ATTEMPTS = 4
COPY_SEND_BACKOFF_CAP_S = 5.0
# When the DLQ itself cannot be written, try the message again this much later.
DLQ_UNAVAILABLE_RETRY_S = 60
SQS_MESSAGE_ATTRIBUTE_LIMIT = 10
ERROR_MESSAGE_LIMIT = 1024
# SQS's longest per-message delay on a standard queue.
MAX_DELAY_S = 900
_ATTRIBUTE_VALUE_KEYS = ("DataType", "StringValue", "BinaryValue")
_REASON_ATTRIBUTES = frozenset({"ErrorCode", "ErrorMessage", "FailedAt"})
_TRACE_ATTRIBUTES = (tracing.TRACEPARENT, tracing.TRACESTATE)


@dataclass(frozen=True, slots=True)
class Settler:
    """Carries out a message's fate with SQS; one per worker process."""

    settings: Settings
    clients: Clients
    leases: Leases
    deleter: SqsBatcher
    visibility: SqsBatcher
    # The source queue's maxReceiveCount (None: no redrive policy).
    max_receive_count: int | None = None

    async def delete(self, message: Message) -> None:
        """Delete the message (batched). A failure is logged: SQS delivers it again later."""
        with anyio.CancelScope(shield=True):
            try:
                await self.deleter.submit({"ReceiptHandle": self.leases.receipt_handle(message)})
            except BatchEntryFailed as exc:
                metrics.SETTLE_ERRORS.labels("delete").inc()
                # The fate is sealed (applied or copied to the DLQ); a repeat delivery is
                # harmless, since feedback is idempotent, so this is worth a warning only.
                log.warning("message.delete_failed", code=exc.code, error=exc.message)

    async def hand_back(
        self, message: Message, reason: str, *, delay_s: int = 0, attempts: int = 0
    ) -> bool:
        """Give the message back to the queue, visible again in `delay_s`, without a call.

        At its last receive it is requeued instead; returns True when it was (it then has a
        new message id, and this one is gone).
        """
        metrics.RELEASED.labels(reason).inc()
        if self.at_last_receive(message) and await self.requeue(
            message, attempts=attempts, delay_s=delay_s
        ):
            return True
        await self.change_visibility(message, delay_s)
        return False

    def at_last_receive(self, message: Message) -> bool:
        """Whether SQS would move the message to the DLQ at its next receive."""
        limit = self.max_receive_count
        return limit is not None and message.receive_count >= limit

    async def requeue(self, message: Message, *, attempts: int, delay_s: int = 0) -> bool:
        """Send a fresh copy with the message's history, then delete this one; False (and the
        message kept as it is) when the copy could not be sent."""
        params = self.copy_params(message, self.settings.queue_url, attempts, {})
        if self.settings.is_fifo:
            # A new deduplication id per receive: the copy is a new message, not a duplicate.
            params["MessageDeduplicationId"] = f"{message.message_id}-{message.receive_count}"
        elif delay_s:
            params["DelaySeconds"] = min(MAX_DELAY_S, delay_s)
        with anyio.CancelScope(shield=True):
            if not await self._send_copy(params, "requeue"):
                return False
            metrics.REQUEUED.inc()
            await self.delete(message)
        log.info("message.requeued", receive_count=message.receive_count, attempts=attempts)
        return True

    async def change_visibility(self, message: Message, timeout_s: int) -> None:
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

    async def dead_letter(
        self,
        message: Message,
        code: str,
        text: str,
        *,
        attempts: int,
    ) -> Settlement:
        """Copy the original body to the DLQ with its reason; delete the source only after that.

        When the DLQ itself cannot be written, the message is kept hidden for a while and comes
        back to be tried again.
        """
        reason = {
            "ErrorCode": _string_attribute(code),
            "ErrorMessage": _string_attribute(text[:ERROR_MESSAGE_LIMIT] or code),
            "FailedAt": _string_attribute(datetime.now(UTC).isoformat(timespec="milliseconds")),
        }
        params = self.copy_params(message, self.settings.dlq_url, attempts, reason)
        if self.settings.is_fifo:
            params["MessageDeduplicationId"] = message.message_id
        with anyio.CancelScope(shield=True):
            if not await self._send_copy(params, "dead_letter"):
                await self.change_visibility(message, DLQ_UNAVAILABLE_RETRY_S)
                return Settlement.DLQ_UNAVAILABLE
            metrics.DEAD_LETTERED.labels(code).inc()
            await self.delete(message)
        return Settlement.DEAD_LETTERED

    async def _send_copy(self, params: dict[str, Any], operation: str) -> bool:
        sqs = await self.clients.sqs()
        for attempt in range(1, COPY_SEND_ATTEMPTS + 1):
            try:
                await sqs.send_message(**params)
            except Exception as exc:
                outcome = classify_exception(exc)
                metrics.SETTLE_ERRORS.labels(operation).inc()
                log.error(
                    f"{operation}.send_failed",
                    code=outcome.code,
                    error=outcome.message,
                    attempt=attempt,
                )
                if attempt < COPY_SEND_ATTEMPTS:
                    await anyio.sleep(
                        backoff.full_jitter(
                            attempt, base_s=backoff.RETRY_BASE_S, cap_s=COPY_SEND_BACKOFF_CAP_S
                        )
                    )
            else:
                return True
        return False

    def copy_params(
        self, message: Message, queue_url: str, attempts: int, reason: dict[str, Any]
    ) -> dict[str, Any]:
        """A copy of the message for `queue_url`: the body byte for byte, its history (and
        `reason`) as attributes, and as many of the producer's own attributes as fit."""
        ours: dict[str, Any] = {
            **reason,
            SOURCE_MESSAGE_ID: _string_attribute(message.source_message_id),
            ATTEMPTS: _number_attribute(attempts),
            ORIGINAL_SENT_TIMESTAMP: _number_attribute(message.original_sent_ms),
        }
        # The producer's own attributes while there is room, its trace context first; the
        # reason of an earlier dead-lettering is not carried to a new copy.
        carried = sorted(
            (
                (name, {k: v for k, v in value.items() if k in _ATTRIBUTE_VALUE_KEYS})
                for name, value in message.message_attributes.items()
                if name not in ours and name not in _REASON_ATTRIBUTES
            ),
            key=lambda item: item[0] not in _TRACE_ATTRIBUTES,
        )
        room = SQS_MESSAGE_ATTRIBUTE_LIMIT - len(ours)
        params: dict[str, Any] = {
            "QueueUrl": queue_url,
            "MessageBody": message.body,
            "MessageAttributes": dict(carried[:room]) | ours,
        }
        if xray := message.attributes.get(tracing.AWS_TRACE_HEADER):
            # A system attribute: it travels outside the ten message attributes.
            params["MessageSystemAttributes"] = {tracing.AWS_TRACE_HEADER: _string_attribute(xray)}
        if self.settings.is_fifo:
            params["MessageGroupId"] = message.group_id or "dead-letter"
        elif message.group_id is not None:
            # A fair queue's tenant: the copy stays in its group.
            params["MessageGroupId"] = message.group_id
        return params


def _number_attribute(value: int) -> dict[str, str]:
    return {"DataType": "Number", "StringValue": str(value)}


def _string_attribute(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}
