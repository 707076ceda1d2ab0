"""Messages held by this process, and the heartbeat that keeps them hidden while they are.

SQS hides a received message for the visibility timeout only. Retries, throttling, a probe
during a pause or a slow call can all outlast it, so one loop extends every held message that
nears its expiry, in batches, up to SQS's 12-hour cap, which counts from the receive that gave
the current receipt handle.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import anyio
import structlog

from worker import metrics
from worker.errors import BatchEntryFailed
from worker.message import Message
from worker.sqs_batches import SqsBatcher

log = structlog.get_logger()

# SQS never keeps a message hidden longer than 12 hours after a receive.
MAX_HIDDEN_S = 12 * 60 * 60
# Leave room for clock skew and the extension call itself.
CAP_MARGIN_S = 60.0
# Extend when less than this fraction of the visibility timeout remains.
EXTEND_WHEN_REMAINING = 0.5
HEARTBEAT_MIN_PERIOD_S = 0.5
HEARTBEAT_MAX_PERIOD_S = 10.0


@dataclass(slots=True)
class Lease:
    """A held message and when (monotonic clock) it would become visible again."""

    message: Message
    visible_until: float
    lost: bool = False


class Leases:
    """The messages this process holds, keyed by message id."""

    def __init__(self, visibility_timeout_s: float) -> None:
        self.visibility_timeout_s = visibility_timeout_s
        self._leases: dict[str, Lease] = {}
        self.changed = anyio.Event()

    def __len__(self) -> int:
        return len(self._leases)

    def __iter__(self) -> Iterator[Lease]:
        return iter(list(self._leases.values()))

    def add(self, message: Message) -> bool:
        """Hold `message`; False if it is already held (a duplicate delivery).

        Only the latest receipt handle is valid, so a duplicate refreshes the held one.
        """
        held = self._leases.get(message.message_id)
        if held is not None:
            held.message.receipt_handle = message.receipt_handle
            held.message.received_at = message.received_at
            held.visible_until = message.received_at + self.visibility_timeout_s
            held.lost = False
            return False
        self._leases[message.message_id] = Lease(
            message, message.received_at + self.visibility_timeout_s
        )
        metrics.HELD.set(len(self._leases))
        return True

    def get(self, message_id: str) -> Lease | None:
        return self._leases.get(message_id)

    def remove(self, message_id: str) -> None:
        self._leases.pop(message_id, None)
        metrics.HELD.set(len(self._leases))
        self.changed.set()
        self.changed = anyio.Event()

    def receipt_handle(self, message: Message) -> str:
        lease = self._leases.get(message.message_id)
        return lease.message.receipt_handle if lease else message.receipt_handle

    async def heartbeat(self, visibility: SqsBatcher) -> None:
        """Extend every held message nearing expiry, forever (cancel to stop)."""
        period = min(
            HEARTBEAT_MAX_PERIOD_S,
            max(HEARTBEAT_MIN_PERIOD_S, self.visibility_timeout_s * EXTEND_WHEN_REMAINING / 3),
        )
        while True:
            await anyio.sleep(period)
            due = [
                lease
                for lease in self
                if not lease.lost
                and lease.visible_until - time.monotonic()
                < self.visibility_timeout_s * EXTEND_WHEN_REMAINING
            ]
            if due:
                async with anyio.create_task_group() as tg:
                    for lease in due:
                        tg.start_soon(self._extend, visibility, lease)

    async def _extend(self, visibility: SqsBatcher, lease: Lease) -> None:
        message = lease.message
        # SQS caps a message's hidden time at 12 h from the receive that gave this handle.
        hidden_for_s = time.monotonic() - message.received_at
        left = min(self.visibility_timeout_s, MAX_HIDDEN_S - CAP_MARGIN_S - hidden_for_s)
        # Whole seconds, rounded down; never 0, which would release a message still held.
        timeout = math.floor(left)
        if timeout < 1:
            lease.lost = True
            log.warning(
                "visibility.cap_reached",
                message_id=message.message_id,
                note="held 12 h: SQS will deliver it again",
            )
            return
        started = time.monotonic()
        try:
            await visibility.submit(
                {"ReceiptHandle": message.receipt_handle, "VisibilityTimeout": timeout}
            )
        except BatchEntryFailed as exc:
            metrics.SETTLE_ERRORS.labels("extend_visibility").inc()
            # An invalid receipt handle means SQS already gave the message to someone else.
            lease.lost = exc.sender_fault
            log.warning(
                "visibility.extend_failed",
                message_id=message.message_id,
                code=exc.code,
                error=exc.message,
            )
            return
        lease.visible_until = started + timeout
