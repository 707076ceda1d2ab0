"""Batched SQS writes (DeleteMessageBatch, ChangeMessageVisibilityBatch) with per-entry results.

Callers submit one entry and wait for its own outcome; a background loop gathers entries into
batches of up to ten, flushed as soon as ten are ready or a short linger has passed. SQS can
fail single entries of a batch (``Failed[]``): each caller learns its own result.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import structlog
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from worker import backoff
from worker.errors import BatchEntryFailed
from worker.outcome import classify_exception

log = structlog.get_logger()

SQS_BATCH_LIMIT = 10
# How long a batch waits for more entries: long enough to fill batches of ten at Cognito's
# 25 calls/s (each call to SQS is billed), short enough to flush promptly. Nothing waits on it
# but the delete itself: the message's slot is freed before.
DEFAULT_LINGER_S = 0.5
# Whole-batch failures (network, 5xx) are retried this many times before the entries fail.
BATCH_CALL_ATTEMPTS = 4
# Entries waiting for a batch: bounded, since callers are bounded by the held-message limit.
QUEUE_SIZE = 1024
FLUSHES_IN_FLIGHT = 4

SendBatch = Callable[[list[dict[str, Any]]], Awaitable[Any]]


class _Pending:
    __slots__ = ("done", "entry", "error")

    def __init__(self, entry: dict[str, Any]) -> None:
        self.entry = entry
        self.done = anyio.Event()
        self.error: BatchEntryFailed | None = None


class SqsBatcher:
    """Gathers single entries into SQS batch calls; run `run()` in the service's task group."""

    def __init__(self, name: str, send_batch: SendBatch, *, linger_s: float | None = None) -> None:
        self.name = name
        self.linger_s = DEFAULT_LINGER_S if linger_s is None else linger_s
        self._send_batch = send_batch
        self._ids = itertools.count()
        send, receive = anyio.create_memory_object_stream[_Pending](QUEUE_SIZE)
        self._send: MemoryObjectSendStream[_Pending] = send
        self._receive: MemoryObjectReceiveStream[_Pending] = receive
        self.finished = anyio.Event()
        self._gathering: list[_Pending] = []

    async def submit(self, entry: dict[str, Any]) -> None:
        """Queue `entry` (no Id) and wait until SQS accepted it; raises BatchEntryFailed."""
        pending = _Pending({**entry, "Id": str(next(self._ids))})
        await self._send.send(pending)
        await pending.done.wait()
        if pending.error is not None:
            raise pending.error

    def close(self) -> None:
        """No more entries: `run()` flushes what it holds and returns."""
        self._send.close()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        # A semaphore, not a CapacityLimiter: the flush task releases what this loop acquired.
        limiter = anyio.Semaphore(FLUSHES_IN_FLIGHT)
        try:
            async with anyio.create_task_group() as tg:
                task_status.started()
                while batch := await self._gather():
                    await limiter.acquire()
                    tg.start_soon(self._flush, batch, limiter)
        finally:
            self._fail_unsent()
            self._receive.close()
            self.finished.set()

    def _fail_unsent(self) -> None:
        """If the loop is cancelled, nobody may wait forever for an entry it never sent."""
        unsent = self._gathering
        self._gathering = []
        while True:
            try:
                unsent.append(self._receive.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
        for pending in unsent:
            if not pending.done.is_set():
                pending.error = BatchEntryFailed(
                    "NotSent", f"{self.name} stopped before sending", sender_fault=False
                )
                pending.done.set()

    async def _gather(self) -> list[_Pending]:
        batch: list[_Pending] = []
        self._gathering = batch
        try:
            batch.append(await self._receive.receive())
        except anyio.EndOfStream:
            return batch
        with anyio.move_on_after(self.linger_s):
            while len(batch) < SQS_BATCH_LIMIT:
                try:
                    batch.append(await self._receive.receive())
                except anyio.EndOfStream:
                    break
        return batch

    async def _flush(self, batch: list[_Pending], limiter: anyio.Semaphore) -> None:
        try:
            # Settling must not be cut in half by a shutdown.
            with anyio.CancelScope(shield=True):
                await self._flush_once(batch)
        finally:
            limiter.release()
            for pending in batch:
                pending.done.set()

    async def _flush_once(self, batch: list[_Pending]) -> None:
        by_id = {p.entry["Id"]: p for p in batch}
        for attempt in range(1, BATCH_CALL_ATTEMPTS + 1):
            try:
                response = await self._send_batch([p.entry for p in batch])
                break
            except Exception as exc:  # every failure is reported per entry
                outcome = classify_exception(exc)
                if attempt == BATCH_CALL_ATTEMPTS:
                    log.warning(
                        "sqs.batch_failed",
                        operation=self.name,
                        code=outcome.code,
                        error=outcome.message,
                        entries=len(batch),
                    )
                    for pending in batch:
                        pending.error = BatchEntryFailed(
                            outcome.code, outcome.message, sender_fault=False
                        )
                    return
                await anyio.sleep(
                    backoff.full_jitter(attempt, base_s=backoff.RETRY_BASE_S, cap_s=2.0)
                )
        for failed in response.get("Failed", []):
            refused = by_id.get(failed.get("Id", ""))
            if refused is not None:
                refused.error = BatchEntryFailed(
                    str(failed.get("Code", "")),
                    str(failed.get("Message", "")),
                    sender_fault=bool(failed.get("SenderFault", False)),
                )
