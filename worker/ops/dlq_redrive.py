"""`dlq redrive`'s move: dead-lettered messages back to the source queue.

Redrive prefers SQS's own StartMessageMoveTask. It cannot filter, so ``--error-code``,
``--max-messages`` and ``--client-side`` (or an endpoint without it) use a client-side move that
never loses a message: the original body goes to the source queue byte for byte, and the DLQ copy
is deleted only after that send succeeded. A crash between the two leaves a duplicate in the
source queue, which is harmless: feedback is idempotent.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import botocore.exceptions
from botocore.config import Config

from worker import exitcodes
from worker.errors import ConfigError
from worker.ops.aws_calls import AWS_CALL_ERRORS, describe_error, open_sqs
from worker.ops.dlq_plan import plan
from worker.ops.dlq_scan import (
    DEAD_LETTER_ATTRIBUTES,
    DlqClients,
    Held,
    error_code,
    queue_arn,
    scan_dlq,
)

if TYPE_CHECKING:
    from types_aiobotocore_sqs.client import SQSClient
    from types_aiobotocore_sqs.type_defs import MessageTypeDef

MOVE_VISIBILITY_S = 60
# One attempt for StartMessageMoveTask: a retried start could race a task the first one started.
ONE_ATTEMPT = Config(retries={"total_max_attempts": 1})
MOVE_TASK_MAX_RATE = 500  # SQS's ceiling for StartMessageMoveTask
MOVE_TASK_POLL_S = 5.0
MOVE_TASK_DONE = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
# How far our clock may be ahead of SQS's when a finished task is told apart by its start.
CLOCK_SKEW_MS = 60_000
PROGRESS_EVERY = 100
# Errors of one message (too big for the destination, say): the move goes on without it.
MESSAGE_ERROR_CODES = frozenset(
    {"InvalidParameterValue", "InvalidMessageContents", "MessageTooLong", "InvalidAttributeName"}
)
# Answers of endpoints that do not know StartMessageMoveTask; botocore reports an error
# without an SQS error type (moto's HTML 500) by its HTTP status.
UNSUPPORTED_CODES = frozenset(
    {
        "UnsupportedOperation",
        "AWS.SimpleQueueService.UnsupportedOperation",
        "InvalidAction",
        "UnknownOperationException",
        "NotImplemented",
        "NotImplementedException",
    }
)


# -- client-side move ------------------------------------------------------------------------


@dataclass
class MoveReport:
    moved: int = 0
    skipped: int = 0
    failed: int = 0
    undeleted: int = 0  # sent, but the DLQ copy could not be deleted: a harmless duplicate
    stopped: str | None = None
    errors: list[str] = field(default_factory=list)
    moved_by_code: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        text = f"moved {self.moved}, skipped {self.skipped}, failed {self.failed}"
        text += f", left in the DLQ too {self.undeleted}" if self.undeleted else ""
        by_code = ", ".join(f"{code} {n}" for code, n in self.moved_by_code.most_common())
        return text + (f" (moved by ErrorCode: {by_code})" if by_code else "")


class _Pace:
    """At most `rate` sends per second, evenly spaced."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next = 0.0

    async def wait(self) -> None:
        now = anyio.current_time()
        if self._next > now:
            await anyio.sleep(self._next - now)
            now = self._next
        self._next = now + self._interval


def _send_params(message: MessageTypeDef, queue_url: str, *, fifo: bool) -> dict[str, Any]:
    """The original body byte for byte, the producer's attributes without our dead-letter ones,
    and its message group (a FIFO queue's order, or a fair queue's tenant)."""
    carried = {
        name: {k: v for k, v in value.items() if k in ("DataType", "StringValue", "BinaryValue")}
        for name, value in message.get("MessageAttributes", {}).items()
        if name not in DEAD_LETTER_ATTRIBUTES
    }
    params: dict[str, Any] = {"QueueUrl": queue_url, "MessageBody": message.get("Body", "")}
    if carried:
        params["MessageAttributes"] = carried
    group = message.get("Attributes", {}).get("MessageGroupId")
    if fifo:
        params["MessageGroupId"] = group or "redrive"
        # Moving the same DLQ message twice (a crash after the send) stores it once.
        params["MessageDeduplicationId"] = message["MessageId"]
    elif group is not None:
        # A fair queue's tenant: the copy stays in its tenant's share.
        params["MessageGroupId"] = group
    return params


async def move_client_side(
    sqs: SQSClient,
    *,
    dlq_url: str,
    queue_url: str,
    error_codes: Iterable[str] = (),
    max_messages: int = 0,
    rate: float,
) -> MoveReport:
    """Move matching DLQ messages to `queue_url`: send, then delete; never the other way."""
    wanted = frozenset(error_codes)
    mover = _Mover(sqs, dlq_url, queue_url)
    pace = _Pace(rate)
    try:
        scan = scan_dlq(sqs, dlq_url, mover.held, visibility_s=MOVE_VISIBILITY_S)
        async with aclosing(scan) as messages:
            async for message in messages:
                if wanted and error_code(message) not in wanted:
                    # Held, not released, until the end: the scan must get past it.
                    mover.report.skipped += 1
                    continue
                await pace.wait()
                if not await mover.move(message):
                    break
                moved = mover.report.moved
                if moved and moved % PROGRESS_EVERY == 0:
                    print(f"… {mover.report.summary()}")
                if 0 < max_messages <= moved:
                    break
    finally:
        await mover.held.release_all()
    return mover.report


class _Mover:
    """Moves one DLQ message at a time to the source queue."""

    def __init__(self, sqs: SQSClient, dlq_url: str, queue_url: str) -> None:
        self.sqs = sqs
        self.dlq_url = dlq_url
        self.queue_url = queue_url
        self.fifo = queue_url.endswith(".fifo")
        self.held = Held(sqs, dlq_url)
        self.report = MoveReport()

    async def move(self, message: MessageTypeDef) -> bool:
        """Send, then delete; False when the move must stop (the destination refuses all)."""
        # Shielded: an interrupt must not leave a sent message undeleted in the DLQ.
        with anyio.CancelScope(shield=True):
            go_on = await self._move(message)
        return go_on

    async def _move(self, message: MessageTypeDef) -> bool:
        report = self.report
        try:
            await self.sqs.send_message(**_send_params(message, self.queue_url, fifo=self.fifo))
        except AWS_CALL_ERRORS as exc:
            report.failed += 1
            text = describe_error(
                exc,
                action="sqs:SendMessage",
                resource=self.queue_url,
                endpoint=self.sqs.meta.endpoint_url,
            )
            report.errors.append(f"{message['MessageId']}: {text}")
            if _is_message_error(exc):
                return True  # it stays held, and is given back at the end
            report.stopped = text
            return False
        try:
            await self.sqs.delete_message(
                QueueUrl=self.dlq_url, ReceiptHandle=message["ReceiptHandle"]
            )
        except AWS_CALL_ERRORS as exc:
            report.undeleted += 1
            report.errors.append(f"{message['MessageId']}: sent, but not deleted: {exc}")
        else:
            self.held.forget(message["MessageId"])
        report.moved += 1
        report.moved_by_code[error_code(message)] += 1
        return True


def _is_message_error(exc: BaseException) -> bool:
    if not isinstance(exc, botocore.exceptions.ClientError):
        return False
    return str(exc.response.get("Error", {}).get("Code", "")) in MESSAGE_ERROR_CODES


# -- StartMessageMoveTask ---------------------------------------------------------------------


def _unsupported(exc: botocore.exceptions.ClientError) -> bool:
    code = str(exc.response.get("Error", {}).get("Code") or "")
    return not code or code.isdigit() or code in UNSUPPORTED_CODES


def _is_ours(task: Mapping[str, Any], handle: str, started_ms: int) -> bool:
    """Whether a listed task is the one just started: only a running task shows its handle,
    so a finished one is recognised by its start time (a queue runs one task at a time)."""
    if "TaskHandle" in task:
        return bool(task["TaskHandle"] == handle)
    return int(task.get("StartedTimestamp", 0)) >= started_ms - CLOCK_SKEW_MS


async def move_task(sqs: SQSClient, *, dlq_arn: str, source_arn: str, rate: float) -> int | None:
    """Move everything with StartMessageMoveTask and follow it; None if the endpoint lacks it."""
    started_ms = int(time.time() * 1000)
    try:
        started = await sqs.start_message_move_task(
            SourceArn=dlq_arn,
            DestinationArn=source_arn,
            MaxNumberOfMessagesPerSecond=max(1, min(MOVE_TASK_MAX_RATE, int(rate))),
        )
    except botocore.exceptions.ClientError as exc:
        if _unsupported(exc):
            return None
        raise
    handle = started["TaskHandle"]
    print(f"started move task {handle} ({dlq_arn} → {source_arn})")
    print("interrupting stops following it, not the task (CancelMessageMoveTask stops it)")
    while True:
        await anyio.sleep(MOVE_TASK_POLL_S)
        try:
            response = await sqs.list_message_move_tasks(SourceArn=dlq_arn, MaxResults=1)
        except AWS_CALL_ERRORS as exc:
            print(f"could not read the task's progress ({exc}); trying again", file=sys.stderr)
            continue
        results = response.get("Results", [])
        if not results or not _is_ours(results[0], handle, started_ms):
            continue  # not listed yet
        task = results[0]
        status = task.get("Status", "?")
        moved = task.get("ApproximateNumberOfMessagesMoved", 0)
        to_move = task.get("ApproximateNumberOfMessagesToMove", "?")
        print(f"{status}: moved {moved} of about {to_move}")
        if status in MOVE_TASK_DONE:
            if status == "COMPLETED":
                return exitcodes.OK
            print(f"the move task ended {status}: {task.get('FailureReason', '')}", file=sys.stderr)
            return exitcodes.FAILURE


# -- the command ----------------------------------------------------------------------------


def check_redrive_args(args: argparse.Namespace) -> None:
    if args.max_messages < 0:
        raise ConfigError("--max-messages", "must be 0 or more")
    if not args.rate > 0:
        raise ConfigError("--rate", "must be a number of messages per second above 0")


async def redrive_command(
    args: argparse.Namespace, aws: DlqClients, *, queue_url: str, dlq_url: str
) -> int:
    """`dlq redrive`: StartMessageMoveTask, or the client-side move; the exit code."""
    sqs = aws.sqs
    source_arn = await queue_arn(sqs, queue_url)
    dlq_arn = await queue_arn(sqs, dlq_url)
    reasons = [
        reason
        for reason, applies in (
            ("--client-side", args.client_side),
            ("--error-code", bool(args.error_code)),
            ("--max-messages", args.max_messages > 0),
        )
        if applies
    ]
    method = f"client-side move ({', '.join(reasons)})" if reasons else "StartMessageMoveTask"
    stop = await plan(args, sqs, dlq_url=dlq_url, queue_url=queue_url, method=method)
    if stop is not None:
        return stop
    if reasons:
        print(f"client-side move ({', '.join(reasons)}): send to the source, then delete")
    else:
        control = await open_sqs(aws.stack, aws.session, connections=1, config=ONE_ATTEMPT)
        code = await move_task(control, dlq_arn=dlq_arn, source_arn=source_arn, rate=args.rate)
        if code is not None:
            return code
        print("the endpoint has no StartMessageMoveTask; falling back to a client-side move")
    report = await move_client_side(
        sqs,
        dlq_url=dlq_url,
        queue_url=queue_url,
        error_codes=args.error_code,
        max_messages=args.max_messages,
        rate=args.rate,
    )
    for error in report.errors:
        print(error, file=sys.stderr)
    if report.stopped is not None:
        print(f"stopped: {report.stopped}", file=sys.stderr)
    print(report.summary())
    return exitcodes.OK if not report.failed and report.stopped is None else exitcodes.FAILURE
