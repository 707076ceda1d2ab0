"""Reading the dead-letter queue: the held-message scan and the queue facts both DLQ commands need.

The DLQ has no consumer, so reading it means holding its messages for a short visibility timeout
and giving them back (visibility 0) at the end; they are held, not released batch by batch,
because a released message is the first thing the next receive returns and the scan would never
get past the first ten. Every release runs shielded, so an interrupted run gives back what it held.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aioboto3
import anyio

from worker.ops.aws_calls import AWS_CALL_ERRORS, describe_error

if TYPE_CHECKING:
    from types_aiobotocore_sqs.client import SQSClient
    from types_aiobotocore_sqs.literals import (
        MessageSystemAttributeNameType,
        QueueAttributeFilterType,
    )
    from types_aiobotocore_sqs.type_defs import MessageTypeDef

# The attributes the worker adds when it dead-letters a message (see worker.settle).
DEAD_LETTER_ATTRIBUTES = frozenset(
    {"ErrorCode", "ErrorMessage", "SourceMessageId", "Attempts", "FailedAt"}
)
# Messages SQS moved by itself (the queue's RedrivePolicy) carry no ErrorCode.
UNKNOWN_CODE = "unknown"
SQS_BATCH_LIMIT = 10
# A short long poll: a zero-wait receive samples only some SQS servers and may come back
# empty while messages remain.
RECEIVE_WAIT_S = 1
_SYSTEM_ATTRIBUTES: list[MessageSystemAttributeNameType] = ["MessageGroupId"]


def message_attribute(message: MessageTypeDef, name: str) -> str:
    attribute = message.get("MessageAttributes", {}).get(name)
    return attribute.get("StringValue", "") if attribute is not None else ""


def error_code(message: MessageTypeDef) -> str:
    return message_attribute(message, "ErrorCode") or UNKNOWN_CODE


class Held:
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


async def scan_dlq(
    sqs: SQSClient, url: str, held: Held, *, visibility_s: int
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


class QueueError(Exception):
    """A queue call failed; the text says what and why in plain words."""


async def queue_attributes(
    sqs: SQSClient, url: str, names: list[QueueAttributeFilterType]
) -> dict[str, str]:
    try:
        response = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)
    except AWS_CALL_ERRORS as exc:
        raise QueueError(
            describe_error(
                exc,
                action="sqs:GetQueueAttributes",
                resource=url,
                endpoint=sqs.meta.endpoint_url,
            )
        ) from exc
    return {str(name): value for name, value in response.get("Attributes", {}).items()}


async def queue_arn(sqs: SQSClient, url: str) -> str:
    return (await queue_attributes(sqs, url, ["QueueArn"]))["QueueArn"]


@dataclass(frozen=True)
class DlqClients:
    """What a DLQ command works with: the session, an exit stack for more clients, and SQS."""

    session: aioboto3.Session
    stack: AsyncExitStack
    sqs: SQSClient
