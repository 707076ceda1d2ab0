"""`feedback-worker dlq inspect`: the dead-letter queue's messages counted by ErrorCode, with
sample bodies whose usernames are masked. Reading is the held scan of `worker.ops.dlq_scan`:
every message read is given back at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
from collections import Counter, defaultdict
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from worker import exitcodes
from worker.config import resolve
from worker.errors import ConfigError
from worker.ops.dlq_scan import (
    Held,
    error_code,
    message_attribute,
    queue_attributes,
    scan_dlq,
)
from worker.ops.masking import masked_body

if TYPE_CHECKING:
    from types_aiobotocore_sqs.client import SQSClient
    from types_aiobotocore_sqs.type_defs import MessageTypeDef

INSPECT_VISIBILITY_S = 30
ERROR_MESSAGE_CHARS = 200


@dataclass
class Sample:
    # The id the message had in the source queue (what the worker's logs name), and its id here.
    source_message_id: str
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
        source_message_id=message_attribute(message, "SourceMessageId"),
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
            # Moved by SQS itself (the queue's redrive), a message has no SourceMessageId, and
            # SQS keeps its id.
            ids = (
                f"source {sample.source_message_id} (in the DLQ {sample.message_id})"
                if sample.source_message_id
                else f"{sample.message_id} (moved by SQS: no SourceMessageId)"
            )
            lines.append(f"  {ids}  {'  '.join(details)}".rstrip())
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


def _digest_key(args: argparse.Namespace) -> tuple[bytes, str]:
    key: bytes | None = resolve(args, os.environ, ["username_hash_key"]).get("username_hash_key")
    if key:
        return key, "usernames are shown as user#<digest> under FEEDBACK_USERNAME_HASH_KEY"
    return secrets.token_bytes(32), (
        "usernames are shown as user#<digest> under a key of this run only; set "
        "FEEDBACK_USERNAME_HASH_KEY to match the worker's logs"
    )


def check_inspect_args(args: argparse.Namespace) -> None:
    if args.max_messages < 0:
        raise ConfigError("--max-messages", "must be 0 or more")
    if args.samples < 0:
        raise ConfigError("--samples", "must be 0 or more")


async def inspect_command(args: argparse.Namespace, sqs: SQSClient, dlq_url: str) -> int:
    """`dlq inspect`: print the report; the exit code."""
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
