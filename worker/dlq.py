"""`feedback-worker dlq inspect|redrive`: look into the dead-letter queue, and move messages back.

Inspect counts the DLQ's messages by ErrorCode and shows samples with every username masked;
reading is the held scan of `worker.dlq_scan`. Redrive's move lives in `worker.redrive`: this
module picks StartMessageMoveTask or the client-side move and reports the outcome.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import sys
from collections import Counter, defaultdict
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aioboto3
import botocore.exceptions

from worker import exitcodes
from worker.clients import sqs_config
from worker.config import resolve
from worker.contract import parse_verdict, username_digest
from worker.dlq_scan import (
    IDENTITY,
    Held,
    QueueError,
    error_code,
    message_attribute,
    queue_arn,
    queue_attributes,
    scan_dlq,
)
from worker.errors import ConfigError, InvalidMessage
from worker.preflight import AWS_CALL_ERRORS, describe_error
from worker.redrive import ONE_ATTEMPT, move_client_side, move_task

if TYPE_CHECKING:
    from types_aiobotocore_sqs.client import SQSClient
    from types_aiobotocore_sqs.type_defs import MessageTypeDef

INSPECT_VISIBILITY_S = 30
SAMPLE_CHARS = 300
ERROR_MESSAGE_CHARS = 200
USER_MASK = "user#"
_USERNAME = "username"  # matched in any case: a producer's "username" is one too
_KEYED_USERNAME = re.compile(r'\\*"Username\\*"\s*:\s*', re.IGNORECASE)
_SIMPLE_STRING = re.compile(r'(\\*")([^"\\]*)(\\*")')


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
    attributes = await queue_attributes(
        sqs, dlq_url, ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )
    report = InspectReport(
        dlq_url,
        approximate=int(attributes.get("ApproximateNumberOfMessages", "0")),
        in_flight=int(attributes.get("ApproximateNumberOfMessagesNotVisible", "0")),
    )
    held = Held(sqs, dlq_url)
    try:
        if max_messages < 1:
            return report
        scan = scan_dlq(sqs, dlq_url, held, visibility_s=INSPECT_VISIBILITY_S)
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
    error_message = message_attribute(message, "ErrorMessage")
    if len(error_message) > ERROR_MESSAGE_CHARS:
        error_message = error_message[:ERROR_MESSAGE_CHARS] + "…"
    return Sample(
        message_id=message["MessageId"],
        body=masked_body(message.get("Body", ""), key),
        error_message=error_message,
        attempts=message_attribute(message, "Attempts"),
        failed_at=message_attribute(message, "FailedAt"),
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
        except QueueError as exc:
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
