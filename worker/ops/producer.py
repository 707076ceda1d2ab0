"""The producer side: validate verdicts and send them to the queue in batches of ten.

Each line of the input (JSONL) is checked with the worker's own parser before it is sent, so a
bad line is reported with its number and reason and never reaches the queue; the others still
go. What is sent is the canonical body of the verdict, not the line as written. SQS can refuse
single entries of a batch: those it refuses through no fault of ours (SenderFault false) are
retried with backoff a bounded number of times, the rest are reported.

With the ``[otel]`` extra, each message carries the producer's trace as a W3C
``traceparent`` message attribute (see worker.tracing), under a span of its own.

FIFO queues get one message group per (pool, user), named without the username, and a
deduplication id derived from the canonical body, so a verdict re-sent within SQS's five
minute window is stored once. Batches to a FIFO queue go one at a time, in input order, and a
retry goes out before the next batch; an entry retried after a later entry of its own batch
was taken can still land behind that entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import anyio
import botocore.exceptions
from aiohttp import ClientError as AiohttpClientError
from anyio.streams.memory import MemoryObjectReceiveStream

from worker import backoff, tracing
from worker.contract import MAX_BODY_BYTES, Verdict, parse_verdict, username_digest
from worker.contract import verdict_from_fields as verdict_from_fields
from worker.errors import InvalidMessage
from worker.outcome import Kind, classify_exception

if TYPE_CHECKING:
    from types_aiobotocore_sqs.client import SQSClient
    from types_aiobotocore_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

__all__ = [
    "EnqueueReport",
    "Problem",
    "enqueue",
    "fifo_group_id",
    "open_jsonl",
    "verdict_from_fields",
]

SQS_BATCH_LIMIT = 10
DEFAULT_CONCURRENCY = 4  # batch calls in flight on a standard queue
DEFAULT_SEND_ATTEMPTS = 5  # per entry, counting the first send
FIFO_SUFFIX = ".fifo"
STDIN = "-"
READ_CHUNK_BYTES = 64 * 1024
# A line longer than a body can be (plus its CR) is cut here: the parser rejects it as too
# large, and memory stays bounded whatever the input holds.
MAX_LINE_BYTES = MAX_BODY_BYTES + 1
_BOM = "\ufeff"
_BOM_BYTES = _BOM.encode()
# Whole-call failures: a client-side status (4xx) would fail every later batch the same way.
_SERVER_STATUS = 500
_CALL_ERRORS = (
    botocore.exceptions.ClientError,
    botocore.exceptions.BotoCoreError,
    AiohttpClientError,
    OSError,
)


class Problem(NamedTuple):
    """A line that was not sent: its number in the input (1-based), a code and a reason."""

    line_no: int
    code: str
    message: str


@dataclass
class EnqueueReport:
    """What happened to the input. `aborted` is set when SQS refused the calls themselves
    (unknown queue, no permission): reading stopped after `lines_read` lines."""

    sent: int = 0
    lines_read: int = 0
    invalid: list[Problem] = field(default_factory=list)
    failed: list[Problem] = field(default_factory=list)
    aborted: str | None = None

    @property
    def ok(self) -> bool:
        return not self.invalid and not self.failed and self.aborted is None


@dataclass(slots=True)
class _Entry:
    line_no: int
    request: SendMessageBatchRequestEntryTypeDef
    last_error: tuple[str, str] = ("", "")


def fifo_group_id(verdict: Verdict, digest_key: bytes) -> str:
    """One FIFO message group per (pool, user), without the username in clear."""
    return f"{verdict.user_pool_id}:{username_digest(verdict.username, digest_key)}"


def _entry(line_no: int, verdict: Verdict, *, fifo: bool, digest_key: bytes) -> _Entry:
    body = verdict.to_body()
    request: SendMessageBatchRequestEntryTypeDef = {"Id": str(line_no), "MessageBody": body}
    if fifo:
        request["MessageGroupId"] = fifo_group_id(verdict, digest_key)
        request["MessageDeduplicationId"] = hashlib.sha256(body.encode()).hexdigest()
    return _Entry(line_no, request)


async def _numbered(
    lines: AsyncIterable[str | bytes] | Iterable[str | bytes],
) -> AsyncGenerator[tuple[int, str | bytes]]:
    if isinstance(lines, AsyncIterable):
        line_no = 0
        async for line in lines:
            line_no += 1
            yield line_no, line
    else:
        for line_no, line in enumerate(lines, start=1):
            yield line_no, line


def _strip_line(line_no: int, line: str | bytes) -> str | bytes:
    """The line without its one line ending (and a first line's byte-order mark)."""
    if isinstance(line, str):
        line = line.removesuffix("\n").removesuffix("\r")
        return line.removeprefix(_BOM) if line_no == 1 else line
    line = line.removesuffix(b"\n").removesuffix(b"\r")
    return line.removeprefix(_BOM_BYTES) if line_no == 1 else line


@dataclass(frozen=True)
class _Sender:
    """Sends batches, retrying what SQS did not take through no fault of ours."""

    sqs: SQSClient
    queue_url: str
    report: EnqueueReport
    attempts: int

    async def drain(self, batches: MemoryObjectReceiveStream[list[_Entry]]) -> None:
        async with batches:
            async for batch in batches:
                await self._send(batch)

    async def _send(self, batch: list[_Entry]) -> None:
        pending = batch
        for attempt in range(1, self.attempts + 1):
            if attempt > 1:
                await anyio.sleep(
                    backoff.full_jitter(
                        attempt - 1, base_s=backoff.RETRY_BASE_S, cap_s=backoff.RETRY_CAP_S
                    )
                )
            pending = await self._send_once(pending)
            if not pending:
                return
        self.report.failed.extend(Problem(e.line_no, *e.last_error) for e in pending)

    async def _send_once(self, batch: list[_Entry]) -> list[_Entry]:
        """Send `batch` once; the entries worth another try."""
        try:
            response = await self.sqs.send_message_batch(
                QueueUrl=self.queue_url, Entries=[e.request for e in batch]
            )
        except _CALL_ERRORS as exc:
            outcome = classify_exception(exc)
            for entry in batch:
                entry.last_error = (outcome.code, outcome.message)
            if _call_retryable(exc, outcome.kind):
                return batch
            self.report.aborted = f"{outcome.code}: {outcome.message}"
            self.report.failed.extend(
                Problem(e.line_no, outcome.code, outcome.message) for e in batch
            )
            return []
        self.report.sent += len(response.get("Successful", []))
        by_id = {e.request["Id"]: e for e in batch}
        retry: list[_Entry] = []
        for failure in response.get("Failed", []):
            if (refused := by_id.get(failure["Id"])) is None:
                continue
            code, message = failure["Code"], failure.get("Message", "")
            if failure["SenderFault"]:
                self.report.failed.append(Problem(refused.line_no, code, message))
            else:
                refused.last_error = (code, message)
                retry.append(refused)
        return retry


def _call_retryable(exc: Exception, kind: Kind) -> bool:
    """Whether a failed call may pass on its own (throttling, 5xx, network)."""
    if kind is Kind.THROTTLED:
        return True
    if isinstance(exc, botocore.exceptions.ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return status >= _SERVER_STATUS
    return kind is Kind.TRANSIENT


async def enqueue(
    sqs: SQSClient,
    queue_url: str,
    lines: AsyncIterable[str | bytes] | Iterable[str | bytes],
    *,
    digest_key: bytes,
    concurrency: int = DEFAULT_CONCURRENCY,
    attempts: int = DEFAULT_SEND_ATTEMPTS,
) -> EnqueueReport:
    """Validate and send one verdict body per line; blank lines are skipped.

    The input is streamed: at most `concurrency` batches are held at a time (one for a FIFO
    queue, to keep the order). `digest_key`
    names FIFO message groups (see `fifo_group_id`); every producer of a FIFO queue must use
    the same key, or one user's verdicts land in different groups and lose their order.
    """
    if concurrency < 1 or attempts < 1:
        raise ValueError("concurrency and attempts must be at least 1")
    fifo = queue_url.endswith(FIFO_SUFFIX)
    report = EnqueueReport()
    sender = _Sender(sqs, queue_url, report, attempts)
    # No buffer: the reader waits for a free sender, so memory does not grow with the input.
    send, receive = anyio.create_memory_object_stream[list[_Entry]](0)
    async with anyio.create_task_group() as tasks:
        # FIFO keeps the input order only if one batch at a time is in flight.
        for _ in range(1 if fifo else concurrency):
            tasks.start_soon(sender.drain, receive.clone())
        receive.close()
        async with send, contextlib.aclosing(_numbered(lines)) as numbered:
            batch: list[_Entry] = []
            async for line_no, line in numbered:
                if report.aborted is not None:
                    break
                report.lines_read = line_no
                body = _strip_line(line_no, line)
                if not body or body.isspace():
                    continue
                try:
                    verdict = parse_verdict(body)
                except InvalidMessage as exc:
                    report.invalid.append(Problem(line_no, exc.code, exc.message))
                    continue
                entry = _entry(line_no, verdict, fifo=fifo, digest_key=digest_key)
                if attributes := tracing.outgoing_attributes(queue_url):
                    entry.request["MessageAttributes"] = attributes
                batch.append(entry)
                if len(batch) == SQS_BATCH_LIMIT:
                    await send.send(batch)
                    batch = []
            if batch:  # even after an abort: its entries then fail and are reported
                await send.send(batch)
    report.failed.sort()
    return report


async def _file_lines(file: anyio.AsyncFile[bytes]) -> AsyncGenerator[bytes]:
    """The lines of `file` without their LF, each cut to MAX_LINE_BYTES + 1 (bounded memory)."""
    pending = bytearray()
    overlong = False  # inside a line that was already passed on, cut
    # read1 returns what is available: a producer piping into stdin is not held back.
    while chunk := await file.read1(READ_CHUNK_BYTES):
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            if not overlong:
                pending += chunk[start:end]
                yield bytes(pending)
            pending.clear()
            overlong = False
            start = end + 1
        if not overlong:
            pending += chunk[start:]
            if len(pending) > MAX_LINE_BYTES:
                yield bytes(pending[: MAX_LINE_BYTES + 1])
                pending.clear()
                overlong = True
    if pending and not overlong:
        yield bytes(pending)


@contextlib.asynccontextmanager
async def open_jsonl(source: str) -> AsyncIterator[AsyncIterator[bytes]]:
    """The lines of a JSONL file, or of stdin for ``-``, read in chunks off the event loop.

    ``async with open_jsonl(path) as lines: report = await enqueue(sqs, url, lines, ...)``
    """
    if source == STDIN:
        # stdin stays open: it is not ours to close.
        async with contextlib.aclosing(_file_lines(anyio.wrap_file(sys.stdin.buffer))) as lines:
            yield lines
        return
    async with (
        await anyio.open_file(source, "rb") as file,
        contextlib.aclosing(_file_lines(file)) as lines,
    ):
        yield lines
