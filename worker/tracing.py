"""Trace context across the queue: from the producer's message to the Cognito call.

A producer puts a W3C ``traceparent`` (and any ``tracestate``) among the message's attributes;
AWS services that trace with X-Ray set the ``AWSTraceHeader`` system attribute instead. The
worker continues that trace: each message gets a span, and each Cognito call a child span of
it. The trace id also goes into the message's log lines, with or without OpenTelemetry.

OpenTelemetry is the optional ``[otel]`` extra (``worker.tracing_otel``). Without it nothing is
recorded, but the trace id read from the message still reaches the logs.

The attribute budget (SQS allows 10 message attributes): tracing uses at most two,
``traceparent`` and ``tracestate``; ``AWSTraceHeader`` is a system attribute and does not count.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from worker.message import Message

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from worker.outcome import Outcome

try:
    from worker import tracing_otel as _otel

    _OTEL_INSTALLED = True
except ImportError:  # the [otel] extra is not installed
    _OTEL_INSTALLED = False

__all__ = [
    "AWS_TRACE_HEADER",
    "TRACEPARENT",
    "TRACESTATE",
    "CallTrace",
    "Incoming",
    "MessageTrace",
    "cognito_call",
    "configure",
    "incoming",
    "message_span",
    "outgoing_attributes",
    "parse_aws_trace_header",
    "parse_traceparent",
]

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
AWS_TRACE_HEADER = "AWSTraceHeader"
LOG_FIELD = "trace_id"

# W3C Trace Context: version-traceid-parentid-flags; later versions may append fields.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_INVALID_VERSION = "ff"
_ZERO_TRACE_ID = "0" * 32
_ZERO_SPAN_ID = "0" * 16
_SAMPLED_FLAG = 0x01
# X-Ray: Root=1-{8 hex epoch}-{24 hex};Parent={16 hex};Sampled={0|1}, in any order.
_XRAY_ROOT = re.compile(r"1-([0-9a-f]{8})-([0-9a-f]{24})")
_XRAY_PARENT = re.compile(r"[0-9a-f]{16}")


@dataclass(frozen=True, slots=True)
class Incoming:
    """A trace context read from a message: which trace it belongs to, and where it came from.

    `span_id` is the producer's span, the parent of the worker's; X-Ray headers may lack one.
    """

    trace_id: str
    span_id: str | None
    sampled: bool
    source: str
    tracestate: str = ""


def parse_traceparent(value: str, tracestate: str = "") -> Incoming | None:
    """The context of a W3C ``traceparent`` value; None if it is not a valid one."""
    match = _TRACEPARENT.fullmatch(value.strip())
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == _INVALID_VERSION or (version == "00" and rest):
        return None
    if trace_id == _ZERO_TRACE_ID or span_id == _ZERO_SPAN_ID:
        return None
    sampled = bool(int(flags, 16) & _SAMPLED_FLAG)
    return Incoming(trace_id, span_id, sampled, TRACEPARENT, tracestate.strip())


def parse_aws_trace_header(value: str) -> Incoming | None:
    """The context of an X-Ray ``AWSTraceHeader`` value; None without a valid ``Root``."""
    fields: dict[str, str] = {}
    for part in value.split(";"):
        key, _, item = part.strip().partition("=")
        fields[key.strip()] = item.strip()
    root = _XRAY_ROOT.fullmatch(fields.get("Root", "").lower())
    if root is None:
        return None
    trace_id = root.group(1) + root.group(2)
    if trace_id == _ZERO_TRACE_ID:
        return None
    parent = fields.get("Parent", "").lower()
    span_id = parent if _XRAY_PARENT.fullmatch(parent) and parent != _ZERO_SPAN_ID else None
    return Incoming(trace_id, span_id, fields.get("Sampled") == "1", AWS_TRACE_HEADER)


def incoming(message: Message) -> list[Incoming]:
    """The trace contexts a message carries: its ``traceparent`` first, then X-Ray's."""
    found: list[Incoming] = []
    traceparent = _string_attribute(message.message_attributes, TRACEPARENT)
    if traceparent:
        tracestate = _string_attribute(message.message_attributes, TRACESTATE)
        if (parsed := parse_traceparent(traceparent, tracestate)) is not None:
            found.append(parsed)
    xray = message.attributes.get(AWS_TRACE_HEADER)
    if isinstance(xray, str) and (parsed := parse_aws_trace_header(xray)) is not None:
        found.append(parsed)
    return found


def _string_attribute(attributes: Mapping[str, Any], name: str) -> str:
    value = attributes.get(name)
    if isinstance(value, Mapping):
        text = value.get("StringValue")
        return text if isinstance(text, str) else ""
    return ""


# -- the worker's side -----------------------------------------------------------------------


class MessageTrace:
    """The trace one message's handling belongs to; `log_fields` names it in the logs."""

    __slots__ = ("_span", "trace_id")

    def __init__(self, trace_id: str | None, span: Span | None = None) -> None:
        self.trace_id = trace_id
        self._span = span

    def log_fields(self) -> dict[str, str]:
        return {LOG_FIELD: self.trace_id} if self.trace_id else {}

    def finish(self, fields: Mapping[str, Any]) -> None:
        """Put the message's end (its ``message.done`` fields) on its span."""
        if self._span is not None:
            _otel.finish_message(self._span, fields)


class CallTrace:
    """One Cognito call's span; `record` puts the call's outcome on it."""

    __slots__ = ("_span",)

    def __init__(self, span: Span | None = None) -> None:
        self._span = span

    def record(self, outcome: Outcome) -> None:
        if self._span is not None:
            _otel.record_call(self._span, outcome)


@contextmanager
def message_span(message: Message, queue_url: str) -> Iterator[MessageTrace]:
    """A span for one message's handling, continuing the producer's trace; current inside."""
    contexts = incoming(message)
    first = contexts[0].trace_id if contexts else None
    if not _OTEL_INSTALLED:
        yield MessageTrace(first)
        return
    with _otel.message_span(message, _queue_name(queue_url), contexts) as span:
        yield MessageTrace(_otel.trace_id(span) or first, span)


@contextmanager
def cognito_call(pool_id: str, region: str) -> Iterator[CallTrace]:
    """A child span of the current message's span for one AdminUpdateAuthEventFeedback call.

    It carries the pool, the region and the outcome, never the username.
    """
    if not _OTEL_INSTALLED:
        yield CallTrace()
        return
    with _otel.call_span(pool_id, region) as span:
        yield CallTrace(span)


# -- the producer's side ---------------------------------------------------------------------


def outgoing_attributes(queue_url: str) -> dict[str, Any]:
    """Message attributes carrying the current trace to the worker: ``traceparent`` (and
    ``tracestate``) of a new producer span, or nothing when there is no trace to carry."""
    if not _OTEL_INSTALLED:
        return {}
    return {
        name: {"DataType": "String", "StringValue": value}
        for name, value in _otel.inject_new_message(_queue_name(queue_url)).items()
    }


def configure() -> None:
    """Set up OpenTelemetry's SDK from the standard ``OTEL_*`` variables, if it is installed.

    Spans are exported only when those variables say so (``OTEL_TRACES_EXPORTER=otlp``).
    """
    if _OTEL_INSTALLED:
        _otel.configure()


def _queue_name(queue_url: str) -> str:
    return queue_url.rstrip("/").rsplit("/", 1)[-1]
