"""Settling a message with SQS: delete, release, change visibility, dead-letter.

Every operation here runs shielded from cancellation, so a shutdown cannot cut one in half.
Deletes and visibility changes go through the batch writers (ten entries per call); a
dead-letter copy is a SendMessage of the original body, byte for byte, with the reason as
message attributes, and the source is deleted only after that send succeeded.
"""

from __future__ import annotations

from collections.abc import Callable
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
from worker.message import Message
from worker.outcome import classify_exception
from worker.record import Settlement
from worker.sqs_batches import SqsBatcher

log = structlog.get_logger()

DLQ_SEND_ATTEMPTS = 4
DLQ_SEND_BACKOFF_CAP_S = 5.0
# When the DLQ itself cannot be written, try the message again this much later.
DLQ_UNAVAILABLE_RETRY_S = 60
SQS_MESSAGE_ATTRIBUTE_LIMIT = 10
ERROR_MESSAGE_LIMIT = 1024
_ATTRIBUTE_VALUE_KEYS = ("DataType", "StringValue", "BinaryValue")
_TRACE_ATTRIBUTES = (tracing.TRACEPARENT, tracing.TRACESTATE)


@dataclass(frozen=True, slots=True)
class Settler:
    """Carries out a message's fate with SQS; one per worker process."""

    settings: Settings
    clients: Clients
    leases: Leases
    deleter: SqsBatcher
    visibility: SqsBatcher

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

    async def release(self, message: Message, reason: str) -> None:
        """Hand the message back to the queue at once (visibility 0), without a call."""
        metrics.RELEASED.labels(reason).inc()
        await self.change_visibility(message, 0)

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
        on_copied: Callable[[], None],
    ) -> Settlement:
        """Copy the original body to the DLQ with its reason; delete the source only after that.

        `on_copied` runs once the copy is safe, before the delete. When the DLQ itself cannot
        be written, the message is kept hidden for a while and comes back to be tried again.
        """
        params = self.dead_letter_params(message, code, text, attempts)
        with anyio.CancelScope(shield=True):
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
                        await self.change_visibility(message, DLQ_UNAVAILABLE_RETRY_S)
                        return Settlement.DLQ_UNAVAILABLE
                    await anyio.sleep(
                        backoff.full_jitter(
                            attempt, base_s=backoff.RETRY_BASE_S, cap_s=DLQ_SEND_BACKOFF_CAP_S
                        )
                    )
            metrics.DEAD_LETTERED.labels(code).inc()
            on_copied()
            await self.delete(message)
        return Settlement.DEAD_LETTERED

    def dead_letter_params(
        self, message: Message, code: str, text: str, attempts: int
    ) -> dict[str, Any]:
        """The SendMessage parameters of a message's DLQ copy."""
        ours: dict[str, Any] = {
            "ErrorCode": _string_attribute(code),
            "ErrorMessage": _string_attribute(text[:ERROR_MESSAGE_LIMIT] or code),
            "SourceMessageId": _string_attribute(message.message_id),
            "Attempts": {"DataType": "Number", "StringValue": str(attempts)},
            "FailedAt": _string_attribute(datetime.now(UTC).isoformat(timespec="milliseconds")),
        }
        # Keep the producer's own attributes while there is room, its trace context first.
        carried = sorted(
            (
                (name, {k: v for k, v in value.items() if k in _ATTRIBUTE_VALUE_KEYS})
                for name, value in message.message_attributes.items()
                if name not in ours
            ),
            key=lambda item: item[0] not in _TRACE_ATTRIBUTES,
        )
        room = SQS_MESSAGE_ATTRIBUTE_LIMIT - len(ours)
        attributes = dict(carried[:room]) | ours
        params: dict[str, Any] = {
            "QueueUrl": self.settings.dlq_url,
            "MessageBody": message.body,
            "MessageAttributes": attributes,
        }
        if xray := message.attributes.get(tracing.AWS_TRACE_HEADER):
            # A system attribute: it travels outside the ten message attributes.
            params["MessageSystemAttributes"] = {tracing.AWS_TRACE_HEADER: _string_attribute(xray)}
        if self.settings.is_fifo:
            params["MessageGroupId"] = message.group_id or "dead-letter"
            params["MessageDeduplicationId"] = message.message_id
        return params


def _string_attribute(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}
