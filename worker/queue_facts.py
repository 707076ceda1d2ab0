"""What the source queue says of itself at start-up: FIFO or not, and its redrive policy.

Only a FIFO queue (``FifoQueue``) orders messages within a group; on a standard queue a
``MessageGroupId`` names a fair-queue tenant, never an ordering lock. The redrive policy's
``maxReceiveCount`` tells which receive is a message's last: handed back then, SQS would move
it to the DLQ by itself, without a reason (worker.settle requeues it instead).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import structlog

from worker.config import Settings
from worker.outcome import AWS_CALL_ERRORS, classify_exception

log = structlog.get_logger()

# Below this, a message may reach SQS's redrive after a crash or two with its attempts
# unused: SQS counts every receive, the worker only its real attempts.
MIN_SAFE_RECEIVE_COUNT = 3


@dataclass(frozen=True, slots=True)
class QueueFacts:
    fifo: bool
    max_receive_count: int | None  # None: no redrive policy


async def read_queue_facts(sqs: Any, settings: Settings) -> QueueFacts:
    """The source queue's facts; from its URL alone (and a warning) when they cannot be read."""
    try:
        response = await sqs.get_queue_attributes(
            QueueUrl=settings.queue_url, AttributeNames=["FifoQueue", "RedrivePolicy"]
        )
    except AWS_CALL_ERRORS as exc:
        outcome = classify_exception(exc)
        log.warning(
            "queue.attributes_unread",
            code=outcome.code,
            error=outcome.message,
            note="FIFO is told from the queue URL, and messages are not requeued at their last "
            "receive; allow sqs:GetQueueAttributes on the queue",
        )
        return QueueFacts(fifo=settings.is_fifo, max_receive_count=None)
    attributes = response.get("Attributes", {})
    facts = QueueFacts(
        fifo=attributes.get("FifoQueue") == "true",
        max_receive_count=_max_receive_count(attributes.get("RedrivePolicy")),
    )
    _warn_about(facts, settings)
    return facts


def _max_receive_count(raw: str | None) -> int | None:
    if not raw:
        return None
    try:
        return int(json.loads(raw)["maxReceiveCount"])
    except (ValueError, KeyError, TypeError):
        return None


def _warn_about(facts: QueueFacts, settings: Settings) -> None:
    if facts.max_receive_count is None:
        log.warning(
            "queue.no_redrive_policy",
            note="a message that crashes the worker would be received forever; give the queue "
            "a RedrivePolicy to the DLQ",
        )
    elif facts.max_receive_count < MIN_SAFE_RECEIVE_COUNT:
        log.warning(
            "queue.max_receive_count_low",
            max_receive_count=facts.max_receive_count,
            max_attempts=settings.max_attempts,
            note="a message retried across a restart may be moved to the DLQ by SQS, without "
            "a reason, before its --max-attempts are used, and every hand-back at this count "
            f"is a requeue; use {MIN_SAFE_RECEIVE_COUNT} or more",
        )
