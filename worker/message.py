"""A message received from SQS, with the system attributes the worker relies on."""

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

    @classmethod
    def from_sqs(cls, raw: dict[str, Any]) -> Message:
        attrs: dict[str, str] = raw.get("Attributes") or {}
        now_ms = int(time.time() * 1000)
        sequence = attrs.get("SequenceNumber")
        return cls(
            message_id=raw["MessageId"],
            receipt_handle=raw["ReceiptHandle"],
            body=raw.get("Body", ""),
            receive_count=_int(attrs.get("ApproximateReceiveCount"), 1),
            sent_at_ms=_int(attrs.get("SentTimestamp"), now_ms),
            first_received_at_ms=_int(attrs.get("ApproximateFirstReceiveTimestamp"), now_ms),
            group_id=attrs.get("MessageGroupId"),
            sequence_number=_int(sequence, 0) if sequence else None,
            attributes=dict(attrs),
            message_attributes=dict(raw.get("MessageAttributes") or {}),
        )


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default
