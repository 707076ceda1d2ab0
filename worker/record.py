"""The record of one message's handling: how it was settled, and what its log line says.

Every message ends in exactly one Settlement; the handler fills a MessageRecord on the way and
logs it once, as the canonical ``message.done`` line.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class Settlement(enum.StrEnum):
    """How a message left this process; the ``outcome`` of its log line."""

    APPLIED = "applied"  # Cognito accepted the verdict; the message is deleted
    SUPERSEDED = "superseded"  # a newer verdict for the event was applied; deleted
    DEAD_LETTERED = "dead_lettered"  # copied to the DLQ with its reason, then deleted
    DLQ_UNAVAILABLE = "dlq_unavailable"  # the DLQ could not be written: kept for later
    RELEASED = "released"  # handed back at once, unprocessed (shutdown)
    PARKED = "parked"  # handed back for a while: its scope is paused, down or over its share
    REQUEUED = "requeued"  # sent back as a fresh copy at its last receive, with its history

    @property
    def deletes(self) -> bool:
        """Whether the message leaves the source queue."""
        return self in (Settlement.APPLIED, Settlement.SUPERSEDED, Settlement.DEAD_LETTERED)


@dataclass(slots=True)
class MessageRecord:
    """What happened to one message; starts as released, which is also what a cancel means."""

    settlement: Settlement = Settlement.RELEASED
    attempts: int = 0
    code: str | None = None
    pool_id: str | None = None
    event_id: str | None = None
    user: str | None = None
    feedback: str | None = None
    throttles: int = 0
    retries: int = 0
    probes: int = 0
    last_error: str | None = None
    parked_for_s: int = 0
    park_reason: str | None = None
    readback: str | None = None

    def log_fields(self) -> dict[str, Any]:
        """The fields of the ``message.done`` line: outcome and attempts always, the rest when
        they say something."""
        fields: dict[str, Any] = {"outcome": self.settlement.value, "attempts": self.attempts}
        optional = {
            "code": self.code,
            "pool_id": self.pool_id,
            "event_id": self.event_id,
            "user": self.user,
            "feedback": self.feedback,
            "throttles": self.throttles,
            "retries": self.retries,
            "probes": self.probes,
            "last_error": self.last_error,
            "parked_for_s": self.parked_for_s,
            "park_reason": self.park_reason,
            "readback": self.readback,
        }
        fields.update({name: value for name, value in optional.items() if value})
        return fields
