"""Trace context across the queue, with or without OpenTelemetry: reading it from a message
(W3C ``traceparent``, X-Ray's ``AWSTraceHeader``) and naming it in the ``message.done`` line.

The spans themselves (the ``[otel]`` extra) are tested in test_tracing_otel.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from types_aiobotocore_sqs.client import SQSClient

from feedback_local.stack import LocalStack, QueuePair
from tests.conftest import SeedPool
from tests.support.messages import verdict
from tests.support.worker_process import TEST_WORKER_ENV, WorkerProcess
from worker import tracing
from worker.config import Settings
from worker.message import SYSTEM_ATTRIBUTES, Message
from worker.settle import SQS_MESSAGE_ATTRIBUTE_LIMIT, Settler
from worker.tracing import Incoming, parse_aws_trace_header, parse_traceparent

DRAIN_TIMEOUT_S = 60.0
TRACE_A = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT_A = f"00-{TRACE_A}-b7ad6b7169203331-01"
TRACE_B = "5759e988bd862e3fe1be46a994272793"
XRAY_B = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
TRACE_C = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT_C = f"00-{TRACE_C}-00f067aa0ba902b7-00"
# The worker as it runs where the [otel] extra is not installed: no opentelemetry importable.
WITHOUT_OTEL = (
    "-c",
    "import sys; sys.modules['opentelemetry'] = None; "
    "from worker.cli import main; sys.exit(main())",
)
WITH_OTEL = ("-m", "worker")
# The reason attributes of a dead-letter copy (worker.settle).
REASON = ("ErrorCode", "ErrorMessage", "FailedAt")


# -- reading a context -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (TRACEPARENT_A, Incoming(TRACE_A, "b7ad6b7169203331", True, "traceparent")),
        (TRACEPARENT_C, Incoming(TRACE_C, "00f067aa0ba902b7", False, "traceparent")),
        # A later version may append fields; version 00 may not.
        (
            f"01-{TRACE_A}-b7ad6b7169203331-01-extra",
            Incoming(TRACE_A, "b7ad6b7169203331", True, "traceparent"),
        ),
        (f"00-{TRACE_A}-b7ad6b7169203331-01-extra", None),
        (f"ff-{TRACE_A}-b7ad6b7169203331-01", None),
        (f"00-{'0' * 32}-b7ad6b7169203331-01", None),
        (f"00-{TRACE_A}-{'0' * 16}-01", None),
        (f"00-{TRACE_A.upper()}-b7ad6b7169203331-01", None),
        (f"00-{TRACE_A}-b7ad6b716920333-01", None),
        ("", None),
        ("not a traceparent", None),
    ],
)
def test_a_traceparent_is_read_only_when_it_follows_the_w3c_format(
    value: str, expected: Incoming | None
) -> None:
    assert parse_traceparent(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (XRAY_B, Incoming(TRACE_B, "53995c3f42cd8ad8", True, "AWSTraceHeader")),
        # Any order, extra fields, no Parent (then there is a trace id but no span to parent).
        (
            "Sampled=0;Self=1-aaa;Parent=53995c3f42cd8ad8;Root=1-5759e988-bd862e3fe1be46a994272793",
            Incoming(TRACE_B, "53995c3f42cd8ad8", False, "AWSTraceHeader"),
        ),
        (
            "Root=1-5759e988-bd862e3fe1be46a994272793",
            Incoming(TRACE_B, None, False, "AWSTraceHeader"),
        ),
        (
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=xyz",
            Incoming(TRACE_B, None, False, "AWSTraceHeader"),
        ),
        ("Root=2-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8", None),
        ("Parent=53995c3f42cd8ad8;Sampled=1", None),
        ("", None),
    ],
)
def test_an_aws_trace_header_is_read_from_its_root_parent_and_sampled_fields(
    value: str, expected: Incoming | None
) -> None:
    assert parse_aws_trace_header(value) == expected


def message_with(
    traceparent: str | None = None, xray: str | None = None, tracestate: str | None = None
) -> Message:
    attributes: dict[str, Any] = {}
    if traceparent is not None:
        attributes["traceparent"] = {"DataType": "String", "StringValue": traceparent}
    if tracestate is not None:
        attributes["tracestate"] = {"DataType": "String", "StringValue": tracestate}
    system = {"ApproximateReceiveCount": "1"}
    if xray is not None:
        system["AWSTraceHeader"] = xray
    return Message.from_sqs(
        {
            "MessageId": "m-1",
            "ReceiptHandle": "r-1",
            "Body": "{}",
            "Attributes": system,
            "MessageAttributes": attributes,
        }
    )


def test_the_traceparent_comes_first_and_a_malformed_one_gives_way_to_x_rays_header() -> None:
    both = tracing.incoming(message_with(TRACEPARENT_A, XRAY_B, tracestate="vendor=1"))
    assert [(found.trace_id, found.source) for found in both] == [
        (TRACE_A, "traceparent"),
        (TRACE_B, "AWSTraceHeader"),
    ]
    assert both[0].tracestate == "vendor=1"
    assert [found.trace_id for found in tracing.incoming(message_with("garbage", XRAY_B))] == [
        TRACE_B
    ]
    assert tracing.incoming(message_with()) == []


def test_the_worker_asks_sqs_for_x_rays_header() -> None:
    assert "AWSTraceHeader" in SYSTEM_ATTRIBUTES


def test_without_opentelemetry_the_trace_id_still_reaches_the_log_fields(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the worker as it runs without the [otel] extra
    monkeypatch.setattr(tracing, "_OTEL_INSTALLED", False)

    # Then a message's trace id comes from its traceparent, or else from X-Ray's header
    with tracing.message_span(message_with(TRACEPARENT_A, XRAY_B), "https://q/feedback") as trace:
        trace.finish({"outcome": "applied"})
        assert trace.log_fields() == {"trace_id": TRACE_A}
    with tracing.message_span(message_with(xray=XRAY_B), "https://q/feedback") as trace:
        assert trace.log_fields() == {"trace_id": TRACE_B}
    with tracing.message_span(message_with(), "https://q/feedback") as trace:
        assert trace.log_fields() == {}
    # And the producer adds no attribute, and a call has nothing to record
    assert tracing.outgoing_attributes("https://q/feedback") == {}
    with tracing.cognito_call("us-east-1_x", "us-east-1") as call:
        call.record(object())  # type: ignore[arg-type]


# -- the worker's log line ---------------------------------------------------------------------


def string_attribute(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


async def send(
    sqs: SQSClient, queue_url: str, body: str, *, traceparent: str = "", xray: str = ""
) -> str:
    params: dict[str, Any] = {"QueueUrl": queue_url, "MessageBody": body}
    if traceparent:
        params["MessageAttributes"] = {"traceparent": string_attribute(traceparent)}
    if xray:
        params["MessageSystemAttributes"] = {"AWSTraceHeader": string_attribute(xray)}
    response = await sqs.send_message(**params)
    return response["MessageId"]


@pytest.mark.parametrize("entry", [WITH_OTEL, WITHOUT_OTEL], ids=["with-otel", "without-otel"])
async def test_the_message_done_line_names_the_trace_the_producer_sent(
    entry: tuple[str, ...],
    local_stack: LocalStack,
    queues: QueuePair,
    sqs_client: SQSClient,
    seed_pool: SeedPool,
) -> None:
    # Given verdicts carrying a traceparent, X-Ray's header, both, or neither, and a bad body
    pool = seed_pool(users={"alice": ["ev-1", "ev-2", "ev-3", "ev-4"]})
    sent = {
        "traceparent": await send(
            sqs_client, queues.url, verdict(pool, "alice", "ev-1"), traceparent=TRACEPARENT_A
        ),
        "xray": await send(sqs_client, queues.url, verdict(pool, "alice", "ev-2"), xray=XRAY_B),
        "both": await send(
            sqs_client,
            queues.url,
            verdict(pool, "alice", "ev-3"),
            traceparent=TRACEPARENT_C,
            xray=XRAY_B,
        ),
        "neither": await send(sqs_client, queues.url, verdict(pool, "alice", "ev-4")),
        "bad": await send(
            sqs_client, queues.url, "[not a verdict]", traceparent=TRACEPARENT_A, xray=XRAY_B
        ),
    }

    # When the worker drains the queue
    process = WorkerProcess(
        TEST_WORKER_ENV | local_stack.env(queues),
        [sys.executable, *entry, "run", "--until-empty"],
    ).start()
    assert await process.wait(DRAIN_TIMEOUT_S) == 0, process.log_tail()

    # Then each message's one line names the trace it came with
    done = {line["message_id"]: line for line in process.events("message.done")}
    assert done[sent["traceparent"]]["trace_id"] == TRACE_A
    assert done[sent["xray"]]["trace_id"] == TRACE_B
    assert done[sent["both"]]["trace_id"] == TRACE_C
    assert done[sent["bad"]]["trace_id"] == TRACE_A
    assert done[sent["bad"]]["outcome"] == "dead_lettered"
    # And a message without one has a fresh trace of its own only where spans are recorded
    if entry == WITH_OTEL:
        assert len(done[sent["neither"]]["trace_id"]) == 32
    else:
        assert "trace_id" not in done[sent["neither"]]
    # And the other lines about a message carry its trace id too
    started = [line for line in process.records() if line.get("message_id") == sent["bad"]]
    assert all(line.get("trace_id") == TRACE_A for line in started)

    # And the dead-letter copy keeps both trace contexts
    response = await sqs_client.receive_message(
        QueueUrl=queues.dlq_url,
        MessageAttributeNames=["All"],
        MessageSystemAttributeNames=["AWSTraceHeader"],
        WaitTimeSeconds=1,
    )
    [copy] = response["Messages"]
    assert copy["MessageAttributes"]["traceparent"]["StringValue"] == TRACEPARENT_A
    assert copy.get("Attributes", {}).get("AWSTraceHeader") == XRAY_B


def test_the_module_works_where_opentelemetry_cannot_be_imported() -> None:
    # The same module, imported in a process where opentelemetry is missing.
    script = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "from worker import tracing\n"
        "print(tracing._OTEL_INSTALLED)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().lower()) is False


def test_a_dead_letter_copy_keeps_the_trace_context_before_the_producers_other_attributes() -> None:
    # Given a message whose producer used nine attributes of its own, the trace context last
    attributes = {f"custom-{i}": string_attribute(str(i)) for i in range(8)}
    attributes["traceparent"] = string_attribute(TRACEPARENT_A)
    attributes["tracestate"] = string_attribute("vendor=1")
    message = Message.from_sqs(
        {
            "MessageId": "m-1",
            "ReceiptHandle": "r-1",
            "Body": "[]",
            "Attributes": {"AWSTraceHeader": XRAY_B},
            "MessageAttributes": attributes,
        }
    )
    settings = Settings(queue_url="https://q/feedback", dlq_url="https://q/feedback-dlq")
    settler = Settler(settings, *([None] * 4))  # type: ignore[arg-type]

    # When its DLQ copy is made (six attributes of the worker's own leave room for four)
    reason = {name: {"DataType": "String", "StringValue": "x"} for name in REASON}
    params = settler.copy_params(message, settings.dlq_url, 1, reason)

    # Then the trace context is among the five kept, and X-Ray's header travels beside them
    copied = params["MessageAttributes"]
    assert len(copied) == SQS_MESSAGE_ATTRIBUTE_LIMIT
    assert copied["traceparent"]["StringValue"] == TRACEPARENT_A
    assert copied["tracestate"]["StringValue"] == "vendor=1"
    assert params["MessageSystemAttributes"]["AWSTraceHeader"]["StringValue"] == XRAY_B
