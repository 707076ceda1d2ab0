"""The receive loop: long polls for as many messages as there is room to hold, never dies.

A silently stopped poller is the most reported failure of SQS consumers, so every receive
error is caught, counted, logged and followed by a jittered backoff, and the loop ticks the
liveness clock on every turn, including while it waits for room or for a pause to end.

A poll is never cut off mid-request. SQS cannot be told to end a long poll, and it can hand
messages to a request whose client has gone: they would stay hidden for the whole visibility
timeout. So each ReceiveMessage runs shielded until it answers, and whatever a poll brings
after the stop is released at once (visibility 0), never started. How soon an idle worker
stops is therefore the poll's wait (FEEDBACK_WAIT_TIME), which keeps that wait short.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup

from worker import backoff, metrics
from worker.bulkheads import HeldBudget
from worker.clients import Clients
from worker.config import Settings
from worker.handler import Handler
from worker.health import HealthState
from worker.leases import Leases
from worker.message import SYSTEM_ATTRIBUTES, Message
from worker.outcome import classify_exception
from worker.scope_pauses import ScopePauses

log = structlog.get_logger()

SQS_RECEIVE_LIMIT = 10
# In --until-empty mode a short poll ends the run promptly once the queue is drained.
UNTIL_EMPTY_WAIT_S = 2
# How often the loop wakes to tick the liveness clock while it waits.
IDLE_TICK_S = 5.0
# The queue's counters are approximate and lag: read them twice, this far apart.
EMPTY_CONFIRM_DELAY_S = 1.0
# A poll that has not answered this long after its wait is given up on (SQS itself is stuck).
RECEIVE_GRACE_S = 5.0
QUEUE_COUNTERS = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)


@dataclass(eq=False)
class Receiver:
    """Receives messages and starts one handler task per message in `work`."""

    settings: Settings
    clients: Clients
    handler: Handler
    leases: Leases
    budget: HeldBudget
    pauses: ScopePauses
    health: HealthState
    _scope: anyio.CancelScope = field(init=False, default_factory=anyio.CancelScope)
    _idle: anyio.CancelScope = field(init=False, default_factory=anyio.CancelScope)
    _stopped: bool = field(init=False, default=False)
    _poll_over: anyio.Event = field(init=False, default_factory=anyio.Event)
    polling_since: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._poll_over.set()

    @property
    def stopping(self) -> bool:
        return self._stopped or self.handler.stopping

    def stop(self) -> None:
        """Receive no more; a poll in progress ends by itself and its messages are released."""
        self._stopped = True
        self._idle.cancel()

    def abandon(self) -> None:
        """Stop the loop at once; a poll in progress still ends first (see the module doc)."""
        self.stop()
        self._scope.cancel()

    async def poll_over(self) -> None:
        """Return once no poll is in progress."""
        await self._poll_over.wait()

    async def run(self, work: TaskGroup) -> None:
        with self._scope:
            await self._run(work)

    async def _run(self, work: TaskGroup) -> None:
        failures = 0
        wait_s = self.settings.wait_time_s
        if self.settings.until_empty:
            wait_s = min(wait_s, UNTIL_EMPTY_WAIT_S)
        while not self.stopping:
            self.health.tick()
            if not await self._wait_until_receiving():
                continue
            room = await self._take_room()
            if room == 0:
                continue
            try:
                messages = await self._receive(room, wait_s)
            except Exception as exc:
                self._give_back(room)
                failures += 1
                outcome = classify_exception(exc)
                metrics.RECEIVE_ERRORS.labels(outcome.code).inc()
                self.health.receive_failed(f"{outcome.code}: {outcome.message}")
                delay = backoff.full_jitter(
                    failures, base_s=backoff.RECEIVE_BASE_S, cap_s=backoff.RECEIVE_CAP_S
                )
                log.warning(
                    "receive.failed",
                    code=outcome.code,
                    error=outcome.message,
                    failures=failures,
                    retry_in_s=round(delay, 2),
                )
                await self._idle_for(delay)
                continue
            failures = 0
            self.health.receive_ok()
            self._give_back(room - len(messages))
            for raw in messages:
                await self._start(work, Message.from_sqs(raw))
            drain_check = self.settings.until_empty and not messages and not self.stopping
            if drain_check and await self._drained():
                log.info("receive.drained")
                break

    async def _receive(self, room: int, wait_s: float) -> list[dict[str, Any]]:
        """One ReceiveMessage, shielded until it answers; after a stop, its messages are
        released at once and none is returned."""
        sqs = await self.clients.sqs()
        messages: list[dict[str, Any]] | None = None
        self._poll_over = anyio.Event()
        self.polling_since = anyio.current_time()
        deadline = self.polling_since + wait_s + RECEIVE_GRACE_S
        try:
            with anyio.CancelScope(shield=True, deadline=deadline):
                response = await sqs.receive_message(
                    QueueUrl=self.settings.queue_url,
                    MaxNumberOfMessages=room,
                    WaitTimeSeconds=int(wait_s),
                    VisibilityTimeout=int(self.settings.visibility_timeout_s),
                    MessageSystemAttributeNames=list(SYSTEM_ATTRIBUTES),  # type: ignore[arg-type]
                    MessageAttributeNames=["All"],
                )
                messages = [dict(raw) for raw in response.get("Messages", [])]
                if self.stopping:
                    await self._release_unstarted(messages)
                    messages = []
        finally:
            self.polling_since = None
            self._poll_over.set()
        if messages is None:
            raise TimeoutError(f"ReceiveMessage did not answer in {wait_s + RECEIVE_GRACE_S:g} s")
        return messages

    async def _release_unstarted(self, messages: list[dict[str, Any]]) -> None:
        """Hand back at once what a poll brought after the stop (one batch of at most ten)."""
        if not messages:
            return
        sqs = await self.clients.sqs()
        entries = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
            for i, m in enumerate(messages)
        ]
        try:
            response = await sqs.change_message_visibility_batch(
                QueueUrl=self.settings.queue_url,
                Entries=entries,  # type: ignore[arg-type]
            )
        except Exception as exc:
            metrics.SETTLE_ERRORS.labels("change_visibility").inc()
            log.warning("receive.release_failed", messages=len(messages), error=str(exc))
            return
        failed = len(response.get("Failed", []))
        metrics.RELEASED.labels("shutdown").inc(len(messages) - failed)
        log.info("receive.released_after_stop", released=len(messages) - failed, failed=failed)

    async def _idle_for(self, seconds: float) -> None:
        with self._idle_scope(seconds):
            await anyio.sleep(seconds)

    def _idle_scope(self, seconds: float) -> anyio.CancelScope:
        """A wait that `stop()` ends at once; a fresh scope each time, since they are one-shot."""
        self._idle = anyio.move_on_after(seconds)
        if self.stopping:
            self._idle.cancel()
        return self._idle

    async def _wait_until_receiving(self) -> bool:
        """While the worker is paused with a probe out, or receiving only feeds parking,
        receive nothing for a while; True when receiving may go on."""
        paused = self.pauses.worker_paused
        if paused is not None and paused.probe is not None:
            with self._idle_scope(IDLE_TICK_S):
                await self.pauses.changed()
            return False
        if spinning := self.budget.receive_pause_s():
            # Most of what came lately was parked: the queue is full of a stalled scope's
            # messages; receiving at full speed would only spin them through.
            log.info("receive.backing_off", parked_lately=True, wait_s=spinning)
            await self._idle_for(spinning)
            return False
        return True

    async def _take_room(self) -> int:
        """Claim held-message slots for one receive: a full batch of ten while enough work is
        on hand, so each receive (a billed request) brings as many messages as it can; fewer
        at once when the calls would otherwise starve."""
        slots = self.budget.room
        # While the worker is paused, only one message is needed: the probe.
        limit = 1 if self.pauses.worker_paused else SQS_RECEIVE_LIMIT
        room = 0
        with self._idle_scope(IDLE_TICK_S):
            await slots.acquire()
            room = 1
            while room < limit:
                if slots.value > 0:
                    slots.acquire_nowait()
                elif len(self.leases) < self.settings.concurrency:
                    break
                else:
                    await slots.acquire()
                room += 1
        if self.stopping:
            self._give_back(room)
            return 0
        return room

    def _give_back(self, count: int) -> None:
        for _ in range(count):
            self.budget.room.release()

    async def _start(self, work: TaskGroup, message: Message) -> None:
        metrics.RECEIVED.inc()
        if not self.leases.add(message):
            # Already held here (SQS delivers at least once): the held copy will settle it.
            log.info("receive.duplicate", message_id=message.message_id)
            self._give_back(1)
            return
        work.start_soon(self.handler.handle, message, name=f"message {message.message_id}")

    async def _drained(self) -> bool:
        """Nothing held here and the queue reports nothing visible or in flight, twice."""
        sqs = await self.clients.sqs()
        for read in range(2):
            if len(self.leases) or self.handler.in_progress:
                return False
            try:
                response = await sqs.get_queue_attributes(
                    QueueUrl=self.settings.queue_url,
                    AttributeNames=list(QUEUE_COUNTERS),  # type: ignore[arg-type]
                )
            except Exception as exc:
                log.warning("receive.queue_attributes_failed", error=str(exc))
                return False
            counts = response.get("Attributes", {})
            if any(int(counts.get(name, "0")) for name in QUEUE_COUNTERS):  # type: ignore[call-overload]
                return False
            if read == 0:
                await anyio.sleep(EMPTY_CONFIRM_DELAY_S)
        return True
