"""A message received from SQS, with the system and message attributes the worker relies on.

Copies the worker sends itself (a message requeued at its last receive, a dead-letter copy
that an operator redrove) carry their history as message attributes: the verdict's original
``SentTimestamp``, the failed attempts so far, and the first message id.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

# Asked for on every receive (FACTS.md): counts across deliveries, enqueue time, FIFO order,
# and X-Ray's trace header (worker.tracing).
SYSTEM_ATTRIBUTES = (
    "ApproximateReceiveCount",
    "SentTimestamp",
    "ApproximateFirstReceiveTimestamp",
    "MessageGroupId",
    "SequenceNumber",
    "MessageDeduplicationId",
    "AWSTraceHeader",
)


# Message attributes of the copies the worker sends.
ATTEMPTS = "Attempts"
ORIGINAL_SENT_TIMESTAMP = "OriginalSentTimestamp"
SOURCE_MESSAGE_ID = "SourceMessageId"
# Set on dead-letter copies only: a copy redriven from the DLQ starts its attempts afresh.
ERROR_CODE = "ErrorCode"


@dataclass(slots=True)
class Message:
    """One delivery of a message. `receipt_handle` is replaced when SQS redelivers it."""

    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    sent_at_ms: int
    first_received_at_ms: int
    group_id: str | None = None
    sequence_number: int | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    message_attributes: dict[str, Any] = field(default_factory=dict)
    received_at: float = field(default_factory=time.monotonic)
    # The verdict's first SentTimestamp, kept through requeues and redrives: its order.
    original_sent_ms: int = 0
    # Failed attempts of earlier copies (a requeued copy's); 0 for a first or redriven one.
    carried_attempts: int = 0
    # The id of the verdict's first message, kept through requeues and redrives.
    source_message_id: str = ""

    @property
    def is_copy(self) -> bool:
        """Whether the worker sent this message itself (a requeue, or a redriven DLQ copy)."""
        return ORIGINAL_SENT_TIMESTAMP in self.message_attributes

    @classmethod
    def from_sqs(cls, raw: dict[str, Any]) -> Message:
        attrs: dict[str, str] = raw.get("Attributes") or {}
        now_ms = int(time.time() * 1000)
        sequence = attrs.get("SequenceNumber")
        ours: dict[str, Any] = dict(raw.get("MessageAttributes") or {})
        sent_at_ms = _int(attrs.get("SentTimestamp"), now_ms)
        redriven = ERROR_CODE in ours
        return cls(
            message_id=raw["MessageId"],
            receipt_handle=raw["ReceiptHandle"],
            body=raw.get("Body", ""),
            receive_count=_int(attrs.get("ApproximateReceiveCount"), 1),
            sent_at_ms=sent_at_ms,
            first_received_at_ms=_int(attrs.get("ApproximateFirstReceiveTimestamp"), now_ms),
            group_id=attrs.get("MessageGroupId"),
            sequence_number=_int(sequence, 0) if sequence else None,
            attributes=dict(attrs),
            message_attributes=ours,
            original_sent_ms=_int(_string(ours, ORIGINAL_SENT_TIMESTAMP), sent_at_ms),
            carried_attempts=0 if redriven else max(0, _int(_string(ours, ATTEMPTS), 0)),
            source_message_id=_string(ours, SOURCE_MESSAGE_ID) or raw["MessageId"],
        )


def _string(attributes: dict[str, Any], name: str) -> str | None:
    value = attributes.get(name)
    return (
        str(value.get("StringValue"))
        if isinstance(value, dict) and "StringValue" in value
        else None
    )


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default
