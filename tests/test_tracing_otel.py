"""Spans with the ``[otel]`` extra: from the producer's message through the queue to the Cognito
call, recorded with the SDK's in-memory exporter, and exported over OTLP by the real worker
process when the standard ``OTEL_*`` variables say so."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

pytest.importorskip("opentelemetry.sdk", reason="the [otel] extra is not installed")

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from types_aiobotocore_sqs.client import SQSClient

from feedback_local.stack import LocalStack, QueuePair
from tests.conftest import SeedPool
from tests.support.messages import verdict
from tests.support.otlp import Collector, otlp_collector
from tests.support.worker_process import WorkerProcess, local_worker
from worker.config import Settings
from worker.ops.producer import enqueue
from worker.supervisor import serve

KEY = b"tracing-test-key-0123456789abcdef"
DRAIN_TIMEOUT_S = 60.0
SQS_MESSAGE_ATTRIBUTE_LIMIT = 10
XRAY_TRACE = "5759e988bd862e3fe1be46a994272793"
XRAY_PARENT = "53995c3f42cd8ad8"
XRAY = f"Root=1-5759e988-bd862e3fe1be46a994272793;Parent={XRAY_PARENT};Sampled=1"
CALL_SPAN = "CognitoIdentityProvider/AdminUpdateAuthEventFeedback"
_EXPORTER = InMemorySpanExporter()
_PROCESSOR_ADDED: list[bool] = []


@pytest.fixture(scope="module")
def _provider() -> TracerProvider:
    """The process's tracer provider, exporting to memory too. OpenTelemetry allows one per
    process: an earlier test may have set it (the CLI's commands configure the SDK)."""
    current = trace.get_tracer_provider()
    if not isinstance(current, TracerProvider):
        current = TracerProvider()
        trace.set_tracer_provider(current)
    if not _PROCESSOR_ADDED:
        current.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        _PROCESSOR_ADDED.append(True)
    return current


@pytest.fixture
def spans(_provider: TracerProvider) -> Iterator[InMemorySpanExporter]:
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


async def drain_in_process(queues: QueuePair) -> None:
    """The worker's own serve(), in this process, until the queue is empty."""
    settings = Settings(
        queue_url=queues.url,
        dlq_url=queues.dlq_url,
        metrics_port=0,
        wait_time_s=1,
        until_empty=True,
        username_hash_key=KEY,
        # The emulator serves every region (aws_env names it the same way).
        cognito_endpoints=(("*", os.environ["AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER"]),),
    )
    with anyio.fail_after(DRAIN_TIMEOUT_S):
        assert await serve(settings) == 0


def named(finished: tuple[ReadableSpan, ...], prefix: str) -> list[ReadableSpan]:
    return [span for span in finished if span.name.startswith(prefix)]


def hex_trace(span: ReadableSpan) -> str:
    assert span.context is not None
    return trace.format_trace_id(span.context.trace_id)


def all_attribute_values(finished: tuple[ReadableSpan, ...]) -> list[str]:
    return [str(value) for span in finished for value in (span.attributes or {}).values()]


async def test_each_verdict_is_traced_from_the_producer_through_the_queue_to_cognito(
    aws_env: dict[str, str],
    queues: QueuePair,
    sqs_client: SQSClient,
    seed_pool: SeedPool,
    spans: InMemorySpanExporter,
) -> None:
    # Given verdicts enqueued by the producer library inside a span of the caller's
    pool = seed_pool("eu-west-1", {"alice@example.com": ["ev-1", "ev-2"]})
    lines = [verdict(pool, "alice@example.com", event) for event in ("ev-1", "ev-2", "ev-404")]
    with trace.get_tracer("test").start_as_current_span("review batch") as caller:
        report = await enqueue(sqs_client, queues.url, lines, digest_key=KEY)
    assert report.ok
    assert report.sent == len(lines)
    creates = named(spans.get_finished_spans(), "create ")
    assert len(creates) == len(lines)

    # When the worker drains the queue
    await drain_in_process(queues)

    # Then each message's process span continues its own create span, in the caller's trace
    finished = spans.get_finished_spans()
    processes = named(finished, "process ")
    assert len(processes) == len(lines)
    create_ids = {span.context.span_id for span in creates if span.context is not None}
    for create in creates:
        assert create.kind is SpanKind.PRODUCER
        assert create.parent is not None
        assert create.parent.span_id == caller.get_span_context().span_id
    for process in processes:
        assert process.kind is SpanKind.CONSUMER
        assert process.parent is not None
        assert process.parent.is_remote
        assert process.parent.span_id in create_ids
        assert hex_trace(process) == trace.format_trace_id(caller.get_span_context().trace_id)
        assert (process.attributes or {})["messaging.system"] == "aws_sqs"
    # And each Cognito call is a child of its message's span with outcome, pool and region
    calls = named(finished, CALL_SPAN)
    process_ids = {span.context.span_id for span in processes if span.context is not None}
    assert len(calls) == len(lines)
    for call in calls:
        attributes = call.attributes or {}
        assert call.kind is SpanKind.CLIENT
        assert call.parent is not None
        assert call.parent.span_id in process_ids
        assert attributes["aws.cognito.user_pool_id"] == pool
        assert attributes["cloud.region"] == "eu-west-1"
        assert attributes["rpc.method"] == "AdminUpdateAuthEventFeedback"
    outcomes = sorted(str((call.attributes or {})["feedback.call_outcome"]) for call in calls)
    assert outcomes == ["permanent", "success", "success"]
    [failed] = [call for call in calls if call.status.status_code is StatusCode.ERROR]
    assert (failed.attributes or {})["error.type"] == "ResourceNotFoundException"
    settled = sorted(str((p.attributes or {})["feedback.outcome"]) for p in processes)
    assert settled == ["applied", "applied", "dead_lettered"]
    # And no span carries the username, in clear or in any other attribute
    assert not [value for value in all_attribute_values(finished) if "alice" in value]


async def test_the_producer_spends_at_most_two_of_the_ten_message_attributes(
    queues: QueuePair, sqs_client: SQSClient, spans: InMemorySpanExporter
) -> None:
    # Given a verdict sent by the producer library with no span of the caller's
    line = verdict("us-east-1_Pool", "alice", "ev-1")
    report = await enqueue(sqs_client, queues.url, [line], digest_key=KEY)
    assert report.ok

    # Then it carries a traceparent of its own create span, and nothing else of tracing's
    response = await sqs_client.receive_message(
        QueueUrl=queues.url, MessageAttributeNames=["All"], WaitTimeSeconds=1
    )
    [message] = response["Messages"]
    attributes = message.get("MessageAttributes", {})
    assert set(attributes) <= {"traceparent", "tracestate"}
    assert len(attributes) <= SQS_MESSAGE_ATTRIBUTE_LIMIT
    [create] = named(spans.get_finished_spans(), "create ")
    assert create.parent is None
    assert create.context is not None
    version, trace_id, span_id, flags = attributes["traceparent"]["StringValue"].split("-")
    assert (version, trace_id, span_id) == (
        "00",
        hex_trace(create),
        trace.format_span_id(create.context.span_id),
    )
    assert int(flags, 16) & 0x01, "sampled"


async def test_x_rays_header_is_continued_alone_and_linked_beside_a_traceparent(
    aws_env: dict[str, str],
    queues: QueuePair,
    sqs_client: SQSClient,
    seed_pool: SeedPool,
    spans: InMemorySpanExporter,
) -> None:
    # Given one verdict traced only by X-Ray, and one by both X-Ray and another W3C trace
    pool = seed_pool(users={"bob": ["ev-1", "ev-2"]})
    other = "4bf92f3577b34da6a3ce929d0e0e4736"
    xray: dict[Any, Any] = {"AWSTraceHeader": {"DataType": "String", "StringValue": XRAY}}
    await sqs_client.send_message(
        QueueUrl=queues.url, MessageBody=verdict(pool, "bob", "ev-1"), MessageSystemAttributes=xray
    )
    await sqs_client.send_message(
        QueueUrl=queues.url,
        MessageBody=verdict(pool, "bob", "ev-2"),
        MessageSystemAttributes=xray,
        MessageAttributes={
            "traceparent": {"DataType": "String", "StringValue": f"00-{other}-00f067aa0ba902b7-01"}
        },
    )

    # When the worker drains the queue
    await drain_in_process(queues)

    # Then the first continues X-Ray's trace; the second continues the W3C one, linked to X-Ray's
    processes = {hex_trace(span): span for span in named(spans.get_finished_spans(), "process ")}
    assert set(processes) == {XRAY_TRACE, other}
    alone = processes[XRAY_TRACE]
    assert alone.parent is not None
    assert trace.format_span_id(alone.parent.span_id) == XRAY_PARENT
    assert not alone.links
    [link] = processes[other].links
    assert trace.format_trace_id(link.context.trace_id) == XRAY_TRACE
    assert (link.attributes or {})["feedback.trace_source"] == "AWSTraceHeader"


# -- OTLP export by the real process -----------------------------------------------------------


@pytest.fixture
def collector() -> Iterator[Collector]:
    with otlp_collector() as receiver:
        yield receiver


def worker_with(stack: LocalStack, queues: QueuePair, **env: str) -> WorkerProcess:
    return local_worker(stack, queues, "--until-empty", **env)


@pytest.mark.parametrize("exporter", ["otlp", ""], ids=["OTEL_TRACES_EXPORTER=otlp", "unset"])
async def test_the_worker_exports_over_otlp_only_when_the_otel_variables_say_so(
    exporter: str,
    local_stack: LocalStack,
    queues: QueuePair,
    sqs_client: SQSClient,
    seed_pool: SeedPool,
    collector: Collector,
) -> None:
    # Given a verdict sent with a traceparent
    pool = seed_pool(users={"carol": ["ev-1"]})
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    await sqs_client.send_message(
        QueueUrl=queues.url,
        MessageBody=verdict(pool, "carol", "ev-1"),
        MessageAttributes={
            "traceparent": {
                "DataType": "String",
                "StringValue": f"00-{trace_id}-b7ad6b7169203331-01",
            }
        },
    )
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_SERVICE_NAME": "feedback-test",
    }
    if exporter:
        env["OTEL_TRACES_EXPORTER"] = exporter

    # When the real worker process drains the queue (and flushes its spans as it exits)
    process = worker_with(local_stack, queues, **env).start()
    assert await process.wait(DRAIN_TIMEOUT_S) == 0, process.log_tail()

    # Then its spans reached the collector in the producer's trace only if asked for
    received = collector.received()
    if not exporter:
        assert received == []
        return
    process_name = f"process {queues.url.rsplit('/', 1)[-1]}"
    names = {span.name: span for span in received if span.trace_id == trace_id}
    assert set(names) >= {process_name, CALL_SPAN}
    assert {span.service for span in received} == {"feedback-test"}
    assert names[process_name].parent_span_id == "b7ad6b7169203331"
    assert names[CALL_SPAN].parent_span_id == names[process_name].span_id
    assert names[CALL_SPAN].attributes["aws.cognito.user_pool_id"] == pool
    assert not [span for span in received if "carol" in repr(span)]


async def test_an_otlp_exporter_the_extra_does_not_hold_stops_the_worker_at_start_up(
    local_stack: LocalStack, queues: QueuePair
) -> None:
    # Given OTLP asked for without a protocol: the SDK's default is gRPC, which [otel] lacks
    process = worker_with(local_stack, queues, OTEL_TRACES_EXPORTER="otlp").start()

    # Then the worker stops at once with a configuration error that says what to set
    assert await process.wait(DRAIN_TIMEOUT_S) == 2
    assert "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf" in process.log_path.read_text()
