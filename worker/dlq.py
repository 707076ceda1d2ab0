"""`feedback-worker dlq inspect|redrive`: look into the dead-letter queue, and move messages back.

The DLQ has no consumer, so reading it means holding its messages for a short visibility timeout
and giving them back (visibility 0) at the end; they are held, not released batch by batch,
because a released message is the first thing the next receive returns and the scan would never
get past the first ten. Every release runs shielded, so an interrupted run gives back what it held.

Redrive prefers SQS's own StartMessageMoveTask. It cannot filter, so ``--error-code``,
``--max-messages`` and ``--client-side`` (or an endpoint without it) use a client-side move that
never loses a message: the original body goes to the source queue byte for byte, and the DLQ copy
is deleted only after that send succeeded. A crash between the two leaves a duplicate in the
source queue, which is harmless: feedback is idempotent.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncGenerator, Iterable, Mapping
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aioboto3
import anyio
import botocore.exceptions
from botocore.config import Config

from worker import exitcodes
from worker.clients import sqs_config
from worker.config import resolve
from worker.contract import parse_verdict, username_digest
from worker.errors import ConfigError, InvalidMessage
from worker.preflight import AWS_CALL_ERRORS, describe_error

if TYPE_CHECKING:
    from types_aiobotocore_sqs.client import SQSClient
    from types_aiobotocore_sqs.literals import (
        MessageSystemAttributeNameType,
        QueueAttributeFilterType,
    )
    from types_aiobotocore_sqs.type_defs import MessageTypeDef

# The attributes the worker adds when it dead-letters a message (see worker.handler).
DEAD_LETTER_ATTRIBUTES = frozenset(
    {"ErrorCode", "ErrorMessage", "SourceMessageId", "Attempts", "FailedAt"}
)
# Messages SQS moved by itself (the queue's RedrivePolicy) carry no ErrorCode.
UNKNOWN_CODE = "unknown"
SQS_BATCH_LIMIT = 10
INSPECT_VISIBILITY_S = 30
MOVE_VISIBILITY_S = 60
# A short long poll: a zero-wait receive samples only some SQS servers and may come back
# empty while messages remain.
RECEIVE_WAIT_S = 1
# One attempt for StartMessageMoveTask: a retried start could race a task the first one started.
ONE_ATTEMPT = Config(retries={"total_max_attempts": 1})
MOVE_TASK_MAX_RATE = 500  # SQS's ceiling for StartMessageMoveTask
MOVE_TASK_POLL_S = 5.0
MOVE_TASK_DONE = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
# How far our clock may be ahead of SQS's when a finished task is told apart by its start.
CLOCK_SKEW_MS = 60_000
PROGRESS_EVERY = 100
SAMPLE_CHARS = 300
ERROR_MESSAGE_CHARS = 200
USER_MASK = "user#"
IDENTITY = "in use here"  # how errors name the caller: this tool does not ask STS
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
_USERNAME = "username"  # matched in any case: a producer's "username" is one too
_KEYED_USERNAME = re.compile(r'\\*"Username\\*"\s*:\s*', re.IGNORECASE)
_SIMPLE_STRING = re.compile(r'(\\*")([^"\\]*)(\\*")')
_SYSTEM_ATTRIBUTES: list[MessageSystemAttributeNameType] = ["MessageGroupId"]


# -- shared: reading the DLQ -------------------------------------------------------------


def _attribute(message: MessageTypeDef, name: str) -> str:
    attribute = message.get("MessageAttributes", {}).get(name)
    return attribute.get("StringValue", "") if attribute is not None else ""


def error_code(message: MessageTypeDef) -> str:
    return _attribute(message, "ErrorCode") or UNKNOWN_CODE


class _Held:
    """Messages this run holds hidden in the DLQ; `release_all` gives them back, shielded."""

    def __init__(self, sqs: SQSClient, url: str) -> None:
        self._sqs = sqs
        self._url = url
        self._handles: dict[str, str] = {}

    def hold(self, message: MessageTypeDef) -> None:
        self._handles[message["MessageId"]] = message["ReceiptHandle"]

    def forget(self, message_id: str) -> None:
        self._handles.pop(message_id, None)

    async def release_all(self) -> None:
        handles = list(self._handles.values())
        self._handles.clear()
        with anyio.CancelScope(shield=True):
            for start in range(0, len(handles), SQS_BATCH_LIMIT):
                entries = handles[start : start + SQS_BATCH_LIMIT]
                try:
                    await self._sqs.change_message_visibility_batch(
                        QueueUrl=self._url,
                        Entries=[
                            {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                            for i, handle in enumerate(entries)
                        ],
                    )
                except AWS_CALL_ERRORS:
                    # They come back by themselves when their visibility timeout ends.
                    print(
                        f"could not give back {len(entries)} messages at once; they reappear "
                        "in the DLQ within a minute",
                        file=sys.stderr,
                    )


async def _scan(
    sqs: SQSClient, url: str, held: _Held, *, visibility_s: int
) -> AsyncGenerator[MessageTypeDef]:
    """Each message of the DLQ once, held hidden; ends when a receive brings nothing new."""
    seen: set[str] = set()
    while True:
        response = await sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=SQS_BATCH_LIMIT,
            VisibilityTimeout=visibility_s,
            WaitTimeSeconds=RECEIVE_WAIT_S,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=_SYSTEM_ATTRIBUTES,
        )
        messages = response.get("Messages", [])
        # All held before any is handed out, so a consumer that stops early gives back all.
        # A message seen before is back because its visibility ran out: it is held again.
        for message in messages:
            held.hold(message)
        fresh = [m for m in messages if m["MessageId"] not in seen]
        if not fresh:
            return
        for message in fresh:
            seen.add(message["MessageId"])
            yield message


class _QueueError(Exception):
    """A queue call failed; the text says what and why in plain words."""


async def _queue_attributes(
    sqs: SQSClient, url: str, names: list[QueueAttributeFilterType]
) -> dict[str, str]:
    try:
        response = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)
    except AWS_CALL_ERRORS as exc:
        raise _QueueError(
            describe_error(
                exc,
                action="sqs:GetQueueAttributes",
                resource=url,
                endpoint=sqs.meta.endpoint_url,
                identity=IDENTITY,
            )
        ) from exc
    return {str(name): value for name, value in response.get("Attributes", {}).items()}


async def _queue_arn(sqs: SQSClient, url: str) -> str:
    return (await _queue_attributes(sqs, url, ["QueueArn"]))["QueueArn"]


# -- inspect ----------------------------------------------------------------------------------


def masked_body(body: str, key: bytes) -> str:
    """The body fit to print: a verdict with its username replaced by its keyed digest, or a
    truncated, JSON-escaped prefix with every Username value masked."""
    try:
        verdict = parse_verdict(body)
    except InvalidMessage:
        pass
    else:
        shown = verdict.to_request() | {"Username": _mask(verdict.username, key)}
        return json.dumps(shown, ensure_ascii=False)
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        text = json.dumps(_masked_text(body, key), ensure_ascii=False)
    else:
        text = json.dumps(_masked_json(document, key), ensure_ascii=False)
    return text[:SAMPLE_CHARS] + ("…" if len(text) > SAMPLE_CHARS else "")


def _mask(username: str, key: bytes) -> str:
    return f"{USER_MASK}{username_digest(username, key)}"


def _masked_json(value: Any, key: bytes) -> Any:
    """`value` with every username member masked, inside JSON-in-a-string (SNS) too."""
    if isinstance(value, dict):
        return {
            name: (
                _mask(str(member), key) if name.lower() == _USERNAME else _masked_json(member, key)
            )
            for name, member in value.items()
        }
    if isinstance(value, list):
        return [_masked_json(item, key) for item in value]
    if isinstance(value, str) and _USERNAME in value.lower():
        try:
            inner = json.loads(value)
        except (ValueError, RecursionError):
            return _masked_text(value, key)
        return json.dumps(_masked_json(inner, key), ensure_ascii=False)
    return value


def _masked_text(text: str, key: bytes) -> str:
    """Text that is not JSON, with each username value masked.

    A simple quoted value is replaced by its digest; where a value cannot be told apart from
    what follows it, everything from there on is cut: better a short sample than a leak.
    """
    out: list[str] = []
    position = 0
    while (found := _KEYED_USERNAME.search(text, position)) is not None:
        out.append(text[position : found.end()])
        value = _SIMPLE_STRING.match(text, found.end())
        if value is None or value.group(1) != value.group(3):
            out.append("<masked>")
            return "".join(out)
        out.append(f"{value.group(1)}{_mask(value.group(2), key)}{value.group(3)}")
        position = value.end()
    out.append(text[position:])
    return "".join(out)


@dataclass
class Sample:
    message_id: str
    body: str
    error_message: str
    attempts: str
    failed_at: str


@dataclass
class InspectReport:
    queue_url: str
    approximate: int
    in_flight: int
    counts: Counter[str] = field(default_factory=Counter)
    samples: dict[str, list[Sample]] = field(default_factory=lambda: defaultdict(list))

    @property
    def read(self) -> int:
        return sum(self.counts.values())


async def inspect(
    sqs: SQSClient, dlq_url: str, *, max_messages: int, samples: int, digest_key: bytes
) -> InspectReport:
    """Counts by ErrorCode of up to `max_messages` DLQ messages, with masked sample bodies."""
    attributes = await _queue_attributes(
        sqs, dlq_url, ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )
    report = InspectReport(
        dlq_url,
        approximate=int(attributes.get("ApproximateNumberOfMessages", "0")),
        in_flight=int(attributes.get("ApproximateNumberOfMessagesNotVisible", "0")),
    )
    held = _Held(sqs, dlq_url)
    try:
        if max_messages < 1:
            return report
        scan = _scan(sqs, dlq_url, held, visibility_s=INSPECT_VISIBILITY_S)
        async with aclosing(scan) as messages:
            async for message in messages:
                code = error_code(message)
                report.counts[code] += 1
                if len(report.samples[code]) < samples:
                    report.samples[code].append(_sample(message, digest_key))
                if report.read >= max_messages:
                    break
    finally:
        await held.release_all()
    return report


def _sample(message: MessageTypeDef, key: bytes) -> Sample:
    error_message = _attribute(message, "ErrorMessage")
    if len(error_message) > ERROR_MESSAGE_CHARS:
        error_message = error_message[:ERROR_MESSAGE_CHARS] + "…"
    return Sample(
        message_id=message["MessageId"],
        body=masked_body(message.get("Body", ""), key),
        error_message=error_message,
        attempts=_attribute(message, "Attempts"),
        failed_at=_attribute(message, "FailedAt"),
    )


def render_text(report: InspectReport, *, key_note: str) -> str:
    lines = [
        f"dead-letter queue {report.queue_url}",
        f"about {report.approximate} messages visible, {report.in_flight} in flight",
        f"read {report.read} messages; by ErrorCode:",
    ]
    width = max((len(code) for code in report.counts), default=0)
    lines += [f"  {code:<{width}}  {count}" for code, count in report.counts.most_common()]
    for code, count in report.counts.most_common():
        lines.append(f"{code} ({count}):")
        for sample in report.samples.get(code, []):
            details = [f"attempts {sample.attempts}"] if sample.attempts else []
            details += [f"failed {sample.failed_at}"] if sample.failed_at else []
            lines.append(f"  {sample.message_id}  {'  '.join(details)}".rstrip())
            if sample.error_message:
                lines.append(f"    error: {sample.error_message}")
            lines.append(f"    body: {sample.body}")
    lines.append(key_note)
    return "\n".join(lines)


def render_json(report: InspectReport) -> str:
    return json.dumps(
        {
            "queue_url": report.queue_url,
            "approximate_messages": report.approximate,
            "in_flight": report.in_flight,
            "read": report.read,
            "counts": dict(report.counts.most_common()),
            "samples": {
                code: [vars(s) for s in report.samples.get(code, [])] for code in report.counts
            },
        },
        ensure_ascii=False,
        indent=2,
    )


# -- redrive: client-side move ------------------------------------------------------------


@dataclass
class MoveReport:
    moved: int = 0
    skipped: int = 0
    failed: int = 0
    undeleted: int = 0  # sent, but the DLQ copy could not be deleted: a harmless duplicate
    stopped: str | None = None
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"moved {self.moved}, skipped {self.skipped}, failed {self.failed}"
        return text + (f", left in the DLQ too {self.undeleted}" if self.undeleted else "")


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
    """The original body byte for byte, the producer's attributes without our dead-letter ones."""
    carried = {
        name: {k: v for k, v in value.items() if k in ("DataType", "StringValue", "BinaryValue")}
        for name, value in message.get("MessageAttributes", {}).items()
        if name not in DEAD_LETTER_ATTRIBUTES
    }
    params: dict[str, Any] = {"QueueUrl": queue_url, "MessageBody": message.get("Body", "")}
    if carried:
        params["MessageAttributes"] = carried
    if fifo:
        params["MessageGroupId"] = message.get("Attributes", {}).get("MessageGroupId", "redrive")
        # Moving the same DLQ message twice (a crash after the send) stores it once.
        params["MessageDeduplicationId"] = message["MessageId"]
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
        scan = _scan(sqs, dlq_url, mover.held, visibility_s=MOVE_VISIBILITY_S)
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
        self.held = _Held(sqs, dlq_url)
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
                identity=IDENTITY,
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
        return True


def _is_message_error(exc: BaseException) -> bool:
    if not isinstance(exc, botocore.exceptions.ClientError):
        return False
    return str(exc.response.get("Error", {}).get("Code", "")) in MESSAGE_ERROR_CODES


# -- redrive: StartMessageMoveTask ----------------------------------------------------------


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


def _check_args(args: argparse.Namespace) -> None:
    if args.max_messages < 0:
        raise ConfigError("--max-messages", "must be 0 or more")
    if args.dlq_command == "inspect" and args.samples < 0:
        raise ConfigError("--samples", "must be 0 or more")
    if args.dlq_command == "redrive" and not args.rate > 0:
        raise ConfigError("--rate", "must be a number of messages per second above 0")


def _digest_key(args: argparse.Namespace) -> tuple[bytes, str]:
    key: bytes | None = resolve(args, os.environ, ["username_hash_key"]).get("username_hash_key")
    if key:
        return key, "usernames are shown as user#<digest> under FEEDBACK_USERNAME_HASH_KEY"
    return secrets.token_bytes(32), (
        "usernames are shown as user#<digest> under a key of this run only; set "
        "FEEDBACK_USERNAME_HASH_KEY to match the worker's logs"
    )


async def dlq_command(args: argparse.Namespace, queue_url: str, dlq_url: str) -> int:
    """`dlq inspect` or `dlq redrive`; the exit code."""
    _check_args(args)
    session = aioboto3.Session()
    async with AsyncExitStack() as stack:
        try:
            sqs: SQSClient = await stack.enter_async_context(
                session.client("sqs", config=sqs_config(max_connections=2))
            )
        except botocore.exceptions.NoRegionError:
            raise ConfigError("AWS_REGION / AWS_DEFAULT_REGION", "no AWS region is set") from None
        try:
            if args.dlq_command == "inspect":
                return await _inspect_command(args, sqs, dlq_url)
            return await _redrive_command(args, session, stack, sqs, queue_url, dlq_url)
        except _QueueError as exc:
            print(f"dlq: {exc}", file=sys.stderr)
        except AWS_CALL_ERRORS as exc:
            # The scans work on the DLQ; the sends have their own reporting.
            text = describe_error(
                exc,
                action=f"sqs:{_operation(exc)}",
                resource=dlq_url,
                endpoint=sqs.meta.endpoint_url,
                identity=IDENTITY,
            )
            print(f"dlq: {text}", file=sys.stderr)
        return exitcodes.FAILURE


def _operation(exc: BaseException) -> str:
    return str(getattr(exc, "operation_name", "") or "a queue operation")


async def _inspect_command(args: argparse.Namespace, sqs: SQSClient, dlq_url: str) -> int:
    key, key_note = _digest_key(args)
    report = await inspect(
        sqs, dlq_url, max_messages=args.max_messages, samples=args.samples, digest_key=key
    )
    print(
        render_json(report)
        if getattr(args, "json", False)
        else render_text(report, key_note=key_note)
    )
    return exitcodes.OK


async def _redrive_command(
    args: argparse.Namespace,
    session: Any,
    stack: AsyncExitStack,
    sqs: SQSClient,
    queue_url: str,
    dlq_url: str,
) -> int:
    source_arn = await _queue_arn(sqs, queue_url)
    dlq_arn = await _queue_arn(sqs, dlq_url)
    reasons = [
        reason
        for reason, applies in (
            ("--client-side", args.client_side),
            ("--error-code", bool(args.error_code)),
            ("--max-messages", args.max_messages > 0),
        )
        if applies
    ]
    if reasons:
        print(f"client-side move ({', '.join(reasons)}): send to the source, then delete")
    else:
        control: SQSClient = await stack.enter_async_context(
            session.client("sqs", config=sqs_config(max_connections=1).merge(ONE_ATTEMPT))
        )
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
