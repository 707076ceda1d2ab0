"""`feedback-worker status`: the queues and the workers on one screen (or as JSON).

- The source queue: messages visible, in flight and delayed (its attributes), and the age of
  its oldest message, which only CloudWatch knows (`ApproximateAgeOfOldestMessage`).
- The dead-letter queue: its depth, and a sampled count by ErrorCode (a held scan whose
  messages are all given back, as `dlq inspect` does).
- The readiness of each worker it can reach (`/readyz`).

A part that cannot be read is shown with the reason and the rest is still shown; exit code 1
says that a queue could not be read.
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import aioboto3
import aiohttp
import anyio
from botocore.config import Config

from worker import exitcodes
from worker.clients import sqs_region
from worker.ops.aws_calls import AWS_CALL_ERRORS, describe_error, is_aws_endpoint, open_sqs
from worker.ops.dlq_inspect import inspect
from worker.ops.dlq_scan import QueueError, queue_attributes

if TYPE_CHECKING:
    from types_aiobotocore_sqs.client import SQSClient

CloudWatchClient = Any  # no type stubs for CloudWatch are installed

DEFAULT_DLQ_SAMPLE = 100
READY_TIMEOUT_S = 3.0
CLOUDWATCH_CONFIG = Config(
    retries={"total_max_attempts": 2, "mode": "standard"}, connect_timeout=3, read_timeout=5
)
# SQS sends its metrics to CloudWatch every minute; look back far enough to find the last one.
AGE_LOOKBACK = timedelta(minutes=15)
AGE_PERIOD_S = 60
_COUNTERS = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)


@dataclass
class QueueStatus:
    url: str
    visible: int | None = None
    in_flight: int | None = None
    delayed: int | None = None
    oldest_age_s: float | None = None
    oldest_age_note: str = ""
    by_error_code: dict[str, int] = field(default_factory=dict)
    sampled: int = 0
    breakdown_note: str = ""
    error: str = ""


@dataclass
class WorkerStatus:
    url: str
    ready: bool
    reason: str


@dataclass
class Status:
    source: QueueStatus
    dead_letter: QueueStatus
    workers: list[WorkerStatus]

    @property
    def readable(self) -> bool:
        return not self.source.error and not self.dead_letter.error


async def _counters(sqs: SQSClient, status: QueueStatus) -> bool:
    try:
        attributes = await queue_attributes(sqs, status.url, list(_COUNTERS))  # type: ignore[arg-type]
    except QueueError as exc:
        status.error = str(exc)
        return False
    status.visible, status.in_flight, status.delayed = (
        int(attributes.get(name, "0")) for name in _COUNTERS
    )
    return True


async def _oldest_age(cloudwatch: CloudWatchClient | None, status: QueueStatus) -> None:
    if cloudwatch is None:
        status.oldest_age_note = "unknown: the queue is not on AWS, so CloudWatch has no metric"
        return
    name = status.url.rstrip("/").rpartition("/")[2]
    end = datetime.now(UTC)
    try:
        response = await cloudwatch.get_metric_data(
            MetricDataQueries=[
                {
                    "Id": "age",
                    "MetricStat": {
                        "Metric": {
                            "Namespace": "AWS/SQS",
                            "MetricName": "ApproximateAgeOfOldestMessage",
                            "Dimensions": [{"Name": "QueueName", "Value": name}],
                        },
                        "Period": AGE_PERIOD_S,
                        "Stat": "Maximum",
                    },
                }
            ],
            StartTime=end - AGE_LOOKBACK,
            EndTime=end,
            ScanBy="TimestampDescending",
        )
    except AWS_CALL_ERRORS as exc:
        status.oldest_age_note = "unknown: " + describe_error(
            exc,
            action="cloudwatch:GetMetricData",
            resource="AWS/SQS",
            endpoint=cloudwatch.meta.endpoint_url,
        )
        return
    results = response.get("MetricDataResults", [])
    values = results[0].get("Values", []) if results else []
    if not values:
        status.oldest_age_note = "unknown: CloudWatch has no data point in the last 15 minutes"
        return
    status.oldest_age_s = float(values[0])


async def _breakdown(sqs: SQSClient, status: QueueStatus, sample: int) -> None:
    if sample < 1:
        return
    try:
        report = await inspect(sqs, status.url, max_messages=sample, samples=0, digest_key=b"")
    except QueueError as exc:
        status.breakdown_note = f"unknown: {exc}"
        return
    except AWS_CALL_ERRORS as exc:
        status.breakdown_note = "unknown: " + describe_error(
            exc, action="sqs:ReceiveMessage", resource=status.url, endpoint=sqs.meta.endpoint_url
        )
        return
    status.by_error_code = dict(report.counts.most_common())
    status.sampled = report.read


async def _readiness(http: aiohttp.ClientSession, base: str) -> WorkerStatus:
    url = base.rstrip("/") + "/readyz"
    try:
        async with http.get(url) as response:
            body = await response.json(content_type=None)
            reason = str(body.get("reason", "")) if isinstance(body, dict) else ""
            return WorkerStatus(base, response.status == 200, reason)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return WorkerStatus(base, False, f"not reachable: {exc or type(exc).__name__}")


async def collect(*, queue_url: str, dlq_url: str, workers: list[str], dlq_sample: int) -> Status:
    """Read everything status shows; a part that fails carries its reason."""
    status = Status(QueueStatus(queue_url), QueueStatus(dlq_url), [])
    session = aioboto3.Session(region_name=sqs_region(queue_url))
    async with AsyncExitStack() as stack:
        sqs = await open_sqs(stack, session, connections=4, queue_url=queue_url)
        cloudwatch: CloudWatchClient | None = await stack.enter_async_context(
            session.client("cloudwatch", config=CLOUDWATCH_CONFIG)
        )
        if (
            cloudwatch is not None
            and is_aws_endpoint(cloudwatch.meta.endpoint_url)
            and not is_aws_endpoint(sqs.meta.endpoint_url)
        ):
            cloudwatch = None  # a local queue: AWS's CloudWatch knows nothing of it
        http = await stack.enter_async_context(
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=READY_TIMEOUT_S))
        )
        results: list[WorkerStatus | None] = [None] * len(workers)

        async def ready(index: int, base: str) -> None:
            results[index] = await _readiness(http, base)

        async with anyio.create_task_group() as tasks:
            for index, base in enumerate(workers):
                tasks.start_soon(ready, index, base)
            if await _counters(sqs, status.source):
                tasks.start_soon(_oldest_age, cloudwatch, status.source)
            if await _counters(sqs, status.dead_letter):
                await _breakdown(sqs, status.dead_letter, dlq_sample)
        status.workers = [r for r in results if r is not None]
    return status


def _age(seconds: float | None, note: str) -> str:
    if seconds is None:
        return note
    return str(timedelta(seconds=round(seconds)))


def render_text(status: Status) -> str:
    source, dead = status.source, status.dead_letter
    lines = [f"source queue       {source.url}"]
    if source.error:
        lines.append(f"  cannot read it: {source.error}")
    else:
        lines.append(
            f"  visible {source.visible}   in flight {source.in_flight}   delayed {source.delayed}"
        )
        lines.append(f"  oldest message    {_age(source.oldest_age_s, source.oldest_age_note)}")
    lines.append(f"dead-letter queue  {dead.url}")
    if dead.visible is not None:
        lines.append(f"  visible {dead.visible}   in flight {dead.in_flight}")
    if dead.by_error_code:
        counts = ", ".join(f"{code} {n}" for code, n in dead.by_error_code.items())
        lines.append(f"  by ErrorCode (sample of {dead.sampled}): {counts}")
    if dead.breakdown_note:
        lines.append(f"  by ErrorCode: {dead.breakdown_note}")
    if dead.error:
        lines.append(f"  cannot read it: {dead.error}")
    lines.append("workers")
    for worker in status.workers:
        state = "ready" if worker.ready else "NOT READY"
        lines.append(f"  {worker.url}  {state}" + (f": {worker.reason}" if worker.reason else ""))
    if not status.workers:
        lines.append("  none given (--worker URL)")
    return "\n".join(lines)


def render_json(status: Status) -> str:
    document = asdict(status) | {"read_at": int(time.time())}
    return json.dumps(document, indent=2)


async def status_command(
    args: argparse.Namespace, *, queue_url: str, dlq_url: str, workers: list[str]
) -> int:
    """`status`: print the screen (or JSON); exit 1 if a queue could not be read."""
    status = await collect(
        queue_url=queue_url, dlq_url=dlq_url, workers=workers, dlq_sample=args.dlq_sample
    )
    print(render_json(status) if args.json else render_text(status))
    return exitcodes.OK if status.readable else exitcodes.FAILURE
