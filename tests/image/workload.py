"""The demo workload (feedback_local.demo) for the image: verdicts sent through the producer
library with traces on, malformed bodies sent raw, and the end state it should reach."""

from __future__ import annotations

import os
import random
from collections import Counter
from dataclasses import dataclass, field

import anyio
from aiobotocore.session import AioSession
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from feedback_local.demo import FAULTS, QUOTA_PER_REGION, demo_workload, seed_pools, send_bodies
from feedback_local.stack import TEST_ACCESS_KEY, TEST_SECRET_KEY, LocalStack, QueuePair
from worker.contract import parse_verdict
from worker.errors import InvalidMessage
from worker.ops.producer import EnqueueReport, enqueue

APPLIED = "applied"
SEED = 11


@dataclass
class Sent:
    """What was enqueued, and what should become of it."""

    expected: Counter[str] = field(default_factory=Counter)
    usernames: set[str] = field(default_factory=set)
    producer_traces: set[str] = field(default_factory=set)
    traced: int = 0
    raw: int = 0

    @property
    def total(self) -> int:
        return sum(self.expected.values())

    @property
    def dead_letters(self) -> Counter[str]:
        return Counter({code: n for code, n in self.expected.items() if code != APPLIED})


def producer_spans() -> InMemorySpanExporter:
    """This process's tracer provider, recording the producer's create spans in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


def send_demo_workload(
    stack: LocalStack, queues: QueuePair, spans: InMemorySpanExporter, messages: int
) -> Sent:
    rng = random.Random(SEED)
    stack.emulator.configure(quota_per_region=QUOTA_PER_REGION, **FAULTS)
    pools = seed_pools(stack, rng)
    items = demo_workload(messages, pools, rng)
    sent = Sent(expected=Counter(fate for fate, _ in items))
    verdicts: list[str] = []
    raw: list[str] = []
    for _, body in items:
        try:
            sent.usernames.add(parse_verdict(body).username)
            verdicts.append(body)
        except InvalidMessage:
            raw.append(body)
    spans.clear()
    report = anyio.run(_enqueue, stack, queues, verdicts)
    if not report.ok:
        raise RuntimeError(f"the producer could not send the workload: {report}")
    send_bodies(stack, queues, raw)
    creates = [span for span in spans.get_finished_spans() if span.name.startswith("create ")]
    sent.producer_traces = {
        trace.format_trace_id(span.context.trace_id) for span in creates if span.context
    }
    sent.traced, sent.raw = len(verdicts), len(raw)
    return sent


async def _enqueue(stack: LocalStack, queues: QueuePair, lines: list[str]) -> EnqueueReport:
    session = AioSession()
    session.set_config_variable("config_file", os.devnull)
    session.set_config_variable("credentials_file", os.devnull)
    async with session.create_client(
        "sqs",
        region_name=stack.region,
        endpoint_url=stack.sqs_endpoint,
        aws_access_key_id=TEST_ACCESS_KEY,
        aws_secret_access_key=TEST_SECRET_KEY,
    ) as sqs:
        return await enqueue(sqs, queues.url, lines, digest_key=b"image-test-key-0123456789")
