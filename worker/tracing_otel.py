"""OpenTelemetry spans for `worker.tracing`; importable only with the ``[otel]`` extra.

Names follow OpenTelemetry's messaging and RPC conventions: a ``create`` span per message on
the producer's side, a ``process`` span per message in the worker (a child of the producer's,
linked to X-Ray's context when that names another trace), and a client span per Cognito call.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from worker.errors import ConfigError
from worker.outcome import Kind, Outcome

if TYPE_CHECKING:
    from worker.message import Message
    from worker.tracing import Incoming

TRACER_NAME = "cognito-feedback-worker"
MESSAGING_SYSTEM = "aws_sqs"
RPC_SERVICE = "CognitoIdentityProvider"
RPC_METHOD = "AdminUpdateAuthEventFeedback"
# Settlements that mean the verdict will never reach Cognito from this message.
FAILED_SETTLEMENTS = frozenset({"dead_lettered", "dlq_unavailable"})
# message.done fields that a span may carry, and the attribute each becomes. The user's hash
# is left out on purpose: spans never carry anything about the username.
MESSAGE_DONE_ATTRIBUTES = {
    "outcome": "feedback.outcome",
    "attempts": "feedback.attempts",
    "code": "error.type",
    "pool_id": "aws.cognito.user_pool_id",
    "event_id": "aws.cognito.event_id",
    "feedback": "feedback.value",
    "throttles": "feedback.throttles",
    "retries": "feedback.retries",
}
OTLP_HINT = (
    "the [otel] extra exports OTLP over HTTP: set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf "
    "(or OTEL_TRACES_EXPORTER=otlp_proto_http), or install opentelemetry-exporter-otlp-proto-grpc"
)

# Only W3C Trace Context crosses the queue, whatever OTEL_PROPAGATORS says: baggage and other
# formats would spend SQS's ten message attributes.
_PROPAGATOR = TraceContextTextMapPropagator()


@functools.cache
def _tracer() -> trace.Tracer:
    # One for the process: the SDK builds a new tracer on every get_tracer call, a cost paid
    # per message. One taken before the provider is set delegates to it once it is.
    return trace.get_tracer(TRACER_NAME)


def configure() -> None:
    """The SDK's own set-up from the standard ``OTEL_*`` variables (what
    ``opentelemetry-instrument`` runs), unless a tracer provider is already in place."""
    try:
        from opentelemetry.sdk._configuration import _OTelSDKConfigurator
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError:  # the API without the SDK: every span stays a no-op
        return
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return
    try:
        _OTelSDKConfigurator().configure()  # type: ignore[no-untyped-call]
    except (RuntimeError, ValueError) as exc:
        raise ConfigError("OTEL_TRACES_EXPORTER / OTEL_*", f"{exc}; {OTLP_HINT}") from None


def trace_id(span: Span) -> str | None:
    context = span.get_span_context()
    return trace.format_trace_id(context.trace_id) if context.is_valid else None


def _span_context(found: Incoming) -> SpanContext | None:
    if found.span_id is None:
        return None
    if found.source == "traceparent":  # tracing.TRACEPARENT; the propagator reads tracestate
        carrier = {"traceparent": f"00-{found.trace_id}-{found.span_id}-{int(found.sampled):02x}"}
        if found.tracestate:
            carrier["tracestate"] = found.tracestate
        context = trace.get_current_span(_PROPAGATOR.extract(carrier)).get_span_context()
        return context if context.is_valid else None
    flags = TraceFlags(TraceFlags.SAMPLED if found.sampled else TraceFlags.DEFAULT)
    return SpanContext(
        int(found.trace_id, 16), int(found.span_id, 16), is_remote=True, trace_flags=flags
    )


@contextmanager
def message_span(message: Message, queue: str, found: Sequence[Incoming]) -> Iterator[Span]:
    """The ``process`` span of one message: a child of its first context, linked to others."""
    parent: SpanContext | None = None
    links: list[Link] = []
    for item in found:
        context = _span_context(item)
        if context is None:
            continue
        if parent is None:
            parent = context
        elif context.trace_id != parent.trace_id:
            links.append(Link(context, {"feedback.trace_source": item.source}))
    # A fresh root unless the producer sent a context: never a child of whatever is current.
    start = otel_context.Context()
    if parent is not None:
        start = trace.set_span_in_context(NonRecordingSpan(parent), start)
    span = _tracer().start_span(
        f"process {queue}",
        context=start,
        kind=SpanKind.CONSUMER,
        links=links,
        attributes={
            "messaging.system": MESSAGING_SYSTEM,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": queue,
            "messaging.message.id": message.message_id,
            "feedback.receive_count": message.receive_count,
        },
    )
    with trace.use_span(span, end_on_exit=True):
        yield span


def finish_message(span: Span, fields: Mapping[str, Any]) -> None:
    for field, attribute in MESSAGE_DONE_ATTRIBUTES.items():
        value = fields.get(field)
        if value is not None and value != "":
            span.set_attribute(attribute, value)
    if fields.get("outcome") in FAILED_SETTLEMENTS:
        span.set_status(Status(StatusCode.ERROR, str(fields.get("code") or fields["outcome"])))


@contextmanager
def call_span(pool_id: str, region: str) -> Iterator[Span]:
    """The client span of one Cognito call, a child of the current (message) span."""
    with _tracer().start_as_current_span(
        f"{RPC_SERVICE}/{RPC_METHOD}",
        kind=SpanKind.CLIENT,
        attributes={
            "rpc.system": "aws-api",
            "rpc.service": RPC_SERVICE,
            "rpc.method": RPC_METHOD,
            "cloud.region": region,
            "aws.cognito.user_pool_id": pool_id,
        },
    ) as span:
        yield span


def record_call(span: Span, outcome: Outcome) -> None:
    span.set_attribute("feedback.call_outcome", outcome.kind.value)
    if outcome.kind is not Kind.SUCCESS:
        span.set_attribute("error.type", outcome.code or outcome.kind.value)
        span.set_status(Status(StatusCode.ERROR, outcome.code or outcome.kind.value))


def inject_new_message(queue: str) -> dict[str, str]:
    """Start and end a ``create`` span for one message (a child of the current span) and
    return the W3C headers naming it; empty when no tracer records and nothing is current."""
    with _tracer().start_as_current_span(
        f"create {queue}",
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": MESSAGING_SYSTEM,
            "messaging.operation.type": "create",
            "messaging.operation.name": "create",
            "messaging.destination.name": queue,
        },
    ):
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier)
    return carrier
