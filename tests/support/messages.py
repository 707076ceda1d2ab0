"""Verdicts into a queue, and what became of them: the DLQ, the queue's depth, the writes the
Cognito emulator applied."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from types_aiobotocore_sqs.client import SQSClient

SQS_BATCH = 10  # the most one SendMessageBatch carries
DLQ_READ_VISIBILITY_S = 600  # a copy once read stays hidden for the rest of a test or run
EMPTY_RECEIVES_TO_STOP = 3


async def send_bodies(sqs: SQSClient, queue_url: str, bodies: Sequence[str]) -> list[str]:
    """Send each body (batches of ten); returns the message ids in order, raises if any fails."""
    ids: list[str] = []
    for start in range(0, len(bodies), SQS_BATCH):
        chunk = bodies[start : start + SQS_BATCH]
        response = await sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(chunk)],
        )
        if failed := response.get("Failed"):
            raise RuntimeError(f"SendMessageBatch failed for {len(failed)} entries: {failed[0]}")
        by_id = {int(e["Id"]): e["MessageId"] for e in response["Successful"]}
        ids += [by_id[i] for i in range(len(chunk))]
    return ids


async def drain_dlq(sqs: SQSClient, dlq_url: str) -> list[dict[str, Any]]:
    """Every message in the DLQ, left in place but hidden for a while, so none is read twice."""
    seen: dict[str, dict[str, Any]] = {}
    empty_reads = 0
    while empty_reads < EMPTY_RECEIVES_TO_STOP:
        response = await sqs.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["MessageGroupId", "SentTimestamp"],
            VisibilityTimeout=DLQ_READ_VISIBILITY_S,
            WaitTimeSeconds=0,
        )
        fresh = [m for m in response.get("Messages", []) if m["MessageId"] not in seen]
        empty_reads = 0 if fresh else empty_reads + 1
        for message in fresh:
            seen[message["MessageId"]] = dict(message)
    return list(seen.values())


def error_code(dlq_message: Mapping[str, Any]) -> str:
    return str(dlq_message.get("MessageAttributes", {}).get("ErrorCode", {}).get("StringValue"))


async def queue_depth(sqs: SQSClient, queue_url: str) -> tuple[int, int]:
    """(visible, in flight) messages of a queue, as SQS approximates them."""
    response = await sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )
    attributes = response.get("Attributes", {})
    return (
        int(attributes.get("ApproximateNumberOfMessages", "0")),
        int(attributes.get("ApproximateNumberOfMessagesNotVisible", "0")),
    )


def verdict(pool: str, user: str, event: str, value: str = "Valid") -> str:
    return json.dumps(
        {"UserPoolId": pool, "Username": user, "EventId": event, "FeedbackValue": value}
    )


def applied(writes: Mapping[str, Any]) -> dict[tuple[str, str], str]:
    """(username, event id) → current feedback value, for events written at least once."""
    return {
        (row["username"], row["event_id"]): row["feedback_value"]
        for row in writes["events"]
        if row["writes"] > 0
    }
