"""`dlq inspect` and `dlq redrive` against moto's SQS (and, for StartMessageMoveTask, which moto
lacks, a scripted SQS endpoint on loopback), through real aiobotocore clients."""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus, urlencode

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from types_aiobotocore_sqs.client import SQSClient
from types_aiobotocore_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

from feedback_local.stack import TEST_ACCESS_KEY, TEST_SECRET_KEY, LocalStack, QueuePair
from tests.test_cli import drain, restore_logging, run_cli
from worker import exitcodes
from worker.cli import build_parser
from worker.contract import username_digest
from worker.ops import dlq_inspect, dlq_redrive, dlq_scan
from worker.ops.dlq_command import dlq_command
from worker.ops.masking import USER_MASK, masked_body

pytestmark = pytest.mark.usefixtures(restore_logging.__name__)

POOL = "us-east-1_DlqTest1"
HASH_KEY = "dlq-test-hash-key-0123456789"
# Bodies SQS accepts but a careless copy would change: CRLF, tabs, trailing blanks, astral
# characters, escapes that JSON would normalise, and text that is no JSON at all.
ODD_BODIES = (
    '{"UserPoolId": "us-east-1_DlqTest1",\r\n\t"Username": "odd", "EventId": "e", '
    '"FeedbackValue": "Valid"}  ',
    '{"UserPoolId":"us-east-1_DlqTest1","Username":"\\u00e9mile","EventId":"e2",'
    '"FeedbackValue":"valid"}',
    "not json at all: 🦆 \t\r\n trailing ",
)


def verdict_body(user: str, event: str) -> str:
    return json.dumps(
        {"UserPoolId": POOL, "Username": user, "EventId": event, "FeedbackValue": "Valid"}
    )


def dead_letter_attributes(code: str | None) -> dict[str, Any]:
    """What worker.handler adds to a dead-letter copy, plus one attribute of the producer."""
    attributes: dict[str, Any] = {"TraceId": {"DataType": "String", "StringValue": "trace-1"}}
    if code is not None:
        attributes |= {
            "ErrorCode": {"DataType": "String", "StringValue": code},
            "ErrorMessage": {"DataType": "String", "StringValue": f"{code}: it failed"},
            "SourceMessageId": {"DataType": "String", "StringValue": "source-1"},
            "Attempts": {"DataType": "Number", "StringValue": "1"},
            "FailedAt": {"DataType": "String", "StringValue": "2026-01-01T00:00:00.000+00:00"},
        }
    return attributes


async def dead_letter(
    sqs: SQSClient,
    url: str,
    bodies: Sequence[str],
    code: str | None,
    *,
    group: str | None = None,
) -> None:
    for start in range(0, len(bodies), 10):
        entries: list[SendMessageBatchRequestEntryTypeDef] = []
        for i, body in enumerate(bodies[start : start + 10], start=start):
            entry: SendMessageBatchRequestEntryTypeDef = {
                "Id": str(i),
                "MessageBody": body,
                "MessageAttributes": dead_letter_attributes(code),
            }
            if group is not None:
                entry["MessageGroupId"] = group
                entry["MessageDeduplicationId"] = f"{group}-{i}"
            entries.append(entry)
        response = await sqs.send_message_batch(QueueUrl=url, Entries=entries)
        assert not response.get("Failed")


# -- inspect --------------------------------------------------------------------------------------


async def test_inspect_counts_by_error_code_and_never_prints_a_username_in_clear(
    aws_env: dict[str, str],
    queues: QueuePair,
    sqs_client: SQSClient,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a DLQ with verdicts of two error codes, a broken body, and one moved by SQS itself
    monkeypatch.setenv("FEEDBACK_USERNAME_HASH_KEY", HASH_KEY)
    users = [f"secret.user{n}@example.com" for n in range(7)]
    await dead_letter(
        sqs_client, queues.dlq_url, [verdict_body(u, "e") for u in users[:4]], "UserNotFound"
    )
    await dead_letter(sqs_client, queues.dlq_url, [verdict_body(users[4], "e")], "InvalidParameter")
    broken = '{"Username": "' + users[5] + '", "EventId": '
    await dead_letter(sqs_client, queues.dlq_url, [broken], "MalformedJson")
    await dead_letter(sqs_client, queues.dlq_url, [verdict_body(users[6], "e")], None)
    # When it is inspected
    assert await run_cli("dlq", "inspect", "--samples", "10") == exitcodes.OK
    # Then the counts are per ErrorCode ("unknown" without one) and usernames are digests
    out, err = capsys.readouterr()
    assert "read 7 messages" in out
    counts = [line.split() for line in out.splitlines() if re.fullmatch(r"  \S+ +\d+", line)]
    assert sorted(counts) == [
        ["InvalidParameter", "1"],
        ["MalformedJson", "1"],
        ["UserNotFound", "4"],
        ["unknown", "1"],
    ]
    for user in users:
        assert user not in out + err
        assert f"{USER_MASK}{username_digest(user, HASH_KEY.encode())}" in out
    assert "UserNotFound: it failed" in out


async def test_inspect_gives_every_message_back_and_reads_at_most_max_messages(
    aws_env: dict[str, str], queues: QueuePair, sqs_client: SQSClient
) -> None:
    bodies = [verdict_body("u", f"e{n}") for n in range(25)]
    await dead_letter(sqs_client, queues.dlq_url, bodies, "X")
    report = await dlq_inspect.inspect(
        sqs_client, queues.dlq_url, max_messages=12, samples=1, digest_key=b"k" * 16
    )
    assert (report.read, dict(report.counts)) == (12, {"X": 12})
    assert report.approximate == 25
    # Nothing stays hidden: all 25 can be received at once again.
    assert len(await drain(sqs_client, queues.dlq_url)) == 25


async def test_inspect_as_json_has_counts_and_masked_samples(
    aws_env: dict[str, str],
    queues: QueuePair,
    sqs_client: SQSClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await dead_letter(sqs_client, queues.dlq_url, [verdict_body("zoe@example.com", "e")], "Gone")
    args = build_parser().parse_args(["dlq", "inspect"])
    args.json = True  # what a --json flag would set
    assert await dlq_command(args, queues.url, queues.dlq_url) == exitcodes.OK
    document = json.loads(capsys.readouterr().out)
    assert document["counts"] == {"Gone": 1}
    [sample] = document["samples"]["Gone"]
    assert json.loads(sample["body"])["Username"].startswith(USER_MASK)
    assert "zoe@example.com" not in json.dumps(document)


# -- masking, for any username -------------------------------------------------------------------

USERNAMES = st.text(
    alphabet=st.characters(codec="utf-8", categories=("L", "M", "S", "N", "P")),
    min_size=1,
    max_size=30,
).map(lambda text: f"QZX{text}")


def _forms(username: str) -> set[str]:
    """The username as it could appear in output: raw, JSON-escaped once or twice, or
    form-encoded."""
    once = json.dumps(username, ensure_ascii=False)[1:-1]
    twice = json.dumps(once, ensure_ascii=False)[1:-1]
    return {username, once, twice, json.dumps(username)[1:-1], quote_plus(username)}


def _bodies(username: str) -> list[str]:
    verdict = {"UserPoolId": POOL, "Username": username, "EventId": "e", "FeedbackValue": "Valid"}
    partial = {"UserPoolId": POOL, "username": username, "FeedbackValue": "Valid"}
    sns = {"Type": "Notification", "Message": json.dumps(verdict)}
    sns_partial = {"Type": "Notification", "Message": json.dumps(partial)}
    return [
        json.dumps(verdict),
        json.dumps(sns),
        json.dumps(partial),
        json.dumps(sns_partial),
        json.dumps(verdict)[:-1],  # malformed: the raw text path
        json.dumps(sns)[:-1],  # malformed, the username escaped inside a string
        json.dumps(verdict, ensure_ascii=False)[:-1],
        '{"Username": ' + username + ", oops",  # an unquoted value
        "prefix " * 60 + json.dumps(partial),  # long enough to be cut
        repr(verdict),  # a Python dict, as a careless producer prints one
        repr(partial)[:-1],  # ...cut short
        urlencode(verdict),  # form-encoded
        json.dumps({"User": username, "pool": POOL}),  # another name for it
        json.dumps({"detail": {"user_name": username}}),
        json.dumps({"LOGIN": [username]})[:-2],
        f"Username={username}&EventId=e",
    ]


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(username=USERNAMES)
def test_a_printed_sample_never_holds_the_username_whatever_the_body_looks_like(
    username: str,
) -> None:
    for body in _bodies(username):
        shown = masked_body(body, b"mask-key-0123456789")
        for form in _forms(username):
            assert form not in shown, body


@pytest.mark.parametrize(
    "body",
    [
        "reviewed by amy@example.com: not her",
        json.dumps({"note": "ask amy@example.com", "EventId": "e"}),
        "{'comment': 'from amy@example.com'",
    ],
)
def test_anything_shaped_like_an_email_address_is_hashed_wherever_it_is(body: str) -> None:
    shown = masked_body(body, b"mask-key-0123456789")
    assert "amy@example.com" not in shown
    assert f"{USER_MASK}{username_digest('amy@example.com', b'mask-key-0123456789')}" in shown


def test_a_verdicts_sample_keeps_its_other_fields_and_the_digest_of_its_username() -> None:
    key = b"mask-key-0123456789"
    shown = json.loads(masked_body(verdict_body("amy@example.com", "ev-7"), key))
    assert shown == {
        "UserPoolId": POOL,
        "Username": f"{USER_MASK}{username_digest('amy@example.com', key)}",
        "EventId": "ev-7",
        "FeedbackValue": "Valid",
    }


# -- redrive against moto ---------------------------------------------------------------------


async def _remaining_codes(sqs: SQSClient, url: str) -> list[str]:
    messages = await drain(sqs, url)
    return sorted(dlq_scan.error_code(m) for m in messages)


async def test_redrive_by_error_code_moves_only_those_bodies_byte_for_byte(
    aws_env: dict[str, str],
    queues: QueuePair,
    sqs_client: SQSClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given dead letters of two codes (some with odd bodies) and one SQS moved by itself
    await dead_letter(sqs_client, queues.dlq_url, ODD_BODIES, "InternalErrorException")
    await dead_letter(sqs_client, queues.dlq_url, [verdict_body("u", "e1")] * 12, "UserNotFound")
    await dead_letter(sqs_client, queues.dlq_url, [verdict_body("v", "e2")], None)
    # When only the transient failures are redriven
    code = await run_cli("dlq", "redrive", "--yes", "--error-code", "InternalErrorException")
    # Then exactly their bodies are in the source queue, unchanged, without our attributes
    assert code == exitcodes.OK
    assert "moved 3, skipped 13, failed 0" in capsys.readouterr().out
    moved = await drain(sqs_client, queues.url)
    assert sorted(m["Body"] for m in moved) == sorted(ODD_BODIES)
    for message in moved:
        attributes = message.get("MessageAttributes", {})
        assert set(attributes) == {"TraceId"}
        assert attributes["TraceId"]["StringValue"] == "trace-1"
    # And the DLQ kept everything else, and nothing of what moved
    assert await _remaining_codes(sqs_client, queues.dlq_url) == ["UserNotFound"] * 12 + ["unknown"]


async def test_redrive_without_filters_falls_back_to_a_client_side_move_on_moto(
    aws_env: dict[str, str],
    queues: QueuePair,
    sqs_client: SQSClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bodies = [verdict_body("u", f"e{n}") for n in range(15)]
    await dead_letter(sqs_client, queues.dlq_url, bodies, "InternalErrorException")
    assert await run_cli("dlq", "redrive", "--yes") == exitcodes.OK
    out = capsys.readouterr().out
    assert "falling back to a client-side move" in out
    assert "moved 15, skipped 0, failed 0" in out
    assert sorted(m["Body"] for m in await drain(sqs_client, queues.url)) == sorted(bodies)
    assert await drain(sqs_client, queues.dlq_url) == []


async def test_redrive_stops_at_max_messages_and_leaves_the_rest(
    aws_env: dict[str, str], queues: QueuePair, sqs_client: SQSClient
) -> None:
    await dead_letter(
        sqs_client, queues.dlq_url, [verdict_body("u", f"e{n}") for n in range(8)], "X"
    )
    assert await run_cli("dlq", "redrive", "--yes", "--max-messages", "3") == exitcodes.OK
    assert len(await drain(sqs_client, queues.url)) == 3
    assert len(await drain(sqs_client, queues.dlq_url)) == 5


async def test_a_message_the_destination_refuses_stays_in_the_dlq_and_the_rest_still_move(
    aws_env: dict[str, str],
    local_stack: LocalStack,
    queues: QueuePair,
    sqs_client: SQSClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a destination that takes at most 1 KiB per message, and one dead letter larger
    small = (
        await sqs_client.create_queue(
            QueueName=f"{queues.url.rpartition('/')[2]}-small",
            Attributes={"MaximumMessageSize": "1024"},
        )
    )["QueueUrl"]
    try:
        large = verdict_body("u", "e" * 40) + " " * 2000
        await dead_letter(sqs_client, queues.dlq_url, [verdict_body("u", "e1"), large], "X")
        await dead_letter(sqs_client, queues.dlq_url, [verdict_body("u", "e2")], "X")
        # When the DLQ is redriven there
        code = await run_cli("dlq", "redrive", "--yes", "--client-side", "--queue-url", small)
        # Then the small ones moved, the large one is reported and still in the DLQ
        assert code == exitcodes.FAILURE
        out, err = capsys.readouterr()
        assert "moved 2, skipped 0, failed 1" in out
        assert "InvalidParameterValue" in err
        assert len(await drain(sqs_client, small)) == 2
        [kept] = await drain(sqs_client, queues.dlq_url)
        assert kept["Body"] == large
        assert dlq_scan.error_code(kept) == "X"
    finally:
        await sqs_client.delete_queue(QueueUrl=small)


async def test_a_destination_that_does_not_exist_stops_the_redrive_before_any_message_moves(
    aws_env: dict[str, str],
    queues: QueuePair,
    sqs_client: SQSClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await dead_letter(sqs_client, queues.dlq_url, [verdict_body("u", "e1")] * 3, "X")
    wrong = queues.url + "-wrong"
    assert await run_cli("dlq", "redrive", "--yes", "--queue-url", wrong) == exitcodes.FAILURE
    assert f"queue {wrong} does not exist" in capsys.readouterr().err
    assert len(await drain(sqs_client, queues.dlq_url)) == 3


async def test_a_destination_that_refuses_every_send_stops_the_move_and_loses_nothing(
    aws_env: dict[str, str], queues: QueuePair, sqs_client: SQSClient
) -> None:
    # Given a destination that is gone by the time the move sends to it
    await dead_letter(
        sqs_client, queues.dlq_url, [verdict_body("u", f"e{n}") for n in range(6)], "X"
    )
    destination = (await sqs_client.create_queue(QueueName=f"gone-{queues.url[-12:]}"))["QueueUrl"]
    await sqs_client.delete_queue(QueueUrl=destination)
    # When the client-side move runs (the destination check is skipped: it starts sending)
    report = await dlq_redrive.move_client_side(
        sqs_client, dlq_url=queues.dlq_url, queue_url=destination, rate=1000.0
    )
    # Then it stops at the first refusal, and every message is still in the DLQ, visible
    assert (report.moved, report.failed) == (0, 1)
    assert report.stopped is not None
    assert "does not exist" in report.stopped
    assert len(await drain(sqs_client, queues.dlq_url)) == 6


async def test_a_fifo_redrive_keeps_each_message_group_and_its_order(
    local_stack: LocalStack, sqs_client: SQSClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    pair = local_stack.create_queues(fifo=True)
    try:
        for name, value in local_stack.env(pair).items():
            monkeypatch.setenv(name, value)
        for group in ("g1", "g2"):
            bodies = [verdict_body("u", f"{group}-{n}") for n in range(4)]
            await dead_letter(sqs_client, pair.dlq_url, bodies, "X", group=group)
        assert await run_cli("dlq", "redrive", "--yes", "--client-side") == exitcodes.OK
        moved = await drain(sqs_client, pair.url)
        by_group: dict[str, list[str]] = {}
        for message in moved:
            group = message["Attributes"]["MessageGroupId"]
            by_group.setdefault(group, []).append(json.loads(message["Body"])["EventId"])
        assert by_group == {g: [f"{g}-{n}" for n in range(4)] for g in ("g1", "g2")}
    finally:
        local_stack.delete_queues(pair)


async def test_a_fair_queue_redrive_keeps_each_message_s_tenant(
    aws_env: dict[str, str], queues: QueuePair, sqs_client: SQSClient
) -> None:
    # Given DLQ copies of a standard (fair) queue's messages, each with its tenant's group
    for group in ("tenant-a", "tenant-b"):
        await sqs_client.send_message(
            QueueUrl=queues.dlq_url,
            MessageBody=verdict_body("u", group),
            MessageAttributes=dead_letter_attributes("X"),
            MessageGroupId=group,
        )
    # When they are moved client-side, then each copy is still in its tenant's group
    assert await run_cli("dlq", "redrive", "--yes", "--client-side") == exitcodes.OK
    moved = await drain(sqs_client, queues.url)
    groups = {json.loads(m["Body"])["EventId"]: m["Attributes"]["MessageGroupId"] for m in moved}
    assert groups == {"tenant-a": "tenant-a", "tenant-b": "tenant-b"}


# -- inspect needs only the DLQ; redrive counts, warns and asks first --------------------------


def count_rows(out: str) -> dict[str, int]:
    """The `  ErrorCode  count` rows of a report."""
    return {m[1]: int(m[2]) for m in re.finditer(r"^  (\S+) +(\d+)$", out, re.MULTILINE)}


async def test_inspect_needs_only_the_dlq_url_and_names_each_samples_source_message_id(
    aws_env: dict[str, str],
    queues: QueuePair,
    sqs_client: SQSClient,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given only the DLQ's URL, and a DLQ with a copy the worker made and one SQS moved
    monkeypatch.delenv("FEEDBACK_QUEUE_URL")
    await dead_letter(sqs_client, queues.dlq_url, [verdict_body("u", "e1")], "UserNotFound")
    await dead_letter(sqs_client, queues.dlq_url, [verdict_body("v", "e2")], None)
    # When it is inspected
    assert await run_cli("dlq", "inspect") == exitcodes.OK
    # Then each sample shows the id the message had in the source queue
    out = capsys.readouterr().out
    assert "source source-1 (in the DLQ " in out
    assert "(moved by SQS: no SourceMessageId)" in out


async def test_redrive_dry_run_counts_by_error_code_warns_and_moves_nothing(
    aws_env: dict[str, str],
    queues: QueuePair,
    sqs_client: SQSClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await dead_letter(
        sqs_client, queues.dlq_url, [verdict_body("u", "e")] * 3, "UserNotFoundException"
    )
    await dead_letter(
        sqs_client, queues.dlq_url, [verdict_body("v", "e")] * 2, "InternalErrorException"
    )
    assert await run_cli("dlq", "redrive", "--dry-run") == exitcodes.OK
    out, err = capsys.readouterr()
    assert "5 messages to move, by ErrorCode:" in out
    assert count_rows(out) == {"UserNotFoundException": 3, "InternalErrorException": 2}
    assert "dry run: nothing moved" in out
    assert "warning: 3 UserNotFoundException: seldom succeeds when redriven" in err
    assert "InternalErrorException" not in err
    assert len(await drain(sqs_client, queues.dlq_url)) == 5
    assert await drain(sqs_client, queues.url) == []


async def test_a_dry_run_counts_only_what_the_error_code_filter_would_move(
    aws_env: dict[str, str],
    queues: QueuePair,
    sqs_client: SQSClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await dead_letter(
        sqs_client, queues.dlq_url, [verdict_body("u", "e")] * 3, "UserNotFoundException"
    )
    await dead_letter(
        sqs_client, queues.dlq_url, [verdict_body("v", "e")] * 2, "InternalErrorException"
    )
    code = await run_cli("dlq", "redrive", "--dry-run", "--error-code", "InternalErrorException")
    assert code == exitcodes.OK
    out, err = capsys.readouterr()
    assert "2 messages to move, by ErrorCode:" in out
    assert "UserNotFound" not in out + err


@pytest.mark.parametrize(("answer", "moved"), [("y\n", True), ("n\n", False), ("", False)])
async def test_redrive_asks_before_moving_and_moves_only_on_yes(
    aws_env: dict[str, str],
    queues: QueuePair,
    sqs_client: SQSClient,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    answer: str,
    moved: bool,
) -> None:
    await dead_letter(
        sqs_client, queues.dlq_url, [verdict_body("u", "e")] * 2, "InternalErrorException"
    )
    monkeypatch.setattr("sys.stdin", io.StringIO(answer))
    code = await run_cli("dlq", "redrive")
    out, err = capsys.readouterr()
    assert count_rows(out) == {"InternalErrorException": 2}
    assert "move 2 messages back to" in err
    assert code == (exitcodes.OK if moved else exitcodes.FAILURE)
    assert len(await drain(sqs_client, queues.url)) == (2 if moved else 0)
    assert len(await drain(sqs_client, queues.dlq_url)) == (0 if moved else 2)
    if not answer:
        assert "pass --yes" in err


async def test_redrive_yes_warns_about_filtered_codes_that_seldom_succeed_and_counts_what_moved(
    aws_env: dict[str, str],
    queues: QueuePair,
    sqs_client: SQSClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await dead_letter(
        sqs_client, queues.dlq_url, [verdict_body("u", "e")] * 2, "UserNotFoundException"
    )
    code = await run_cli("dlq", "redrive", "--yes", "--error-code", "UserNotFoundException")
    assert code == exitcodes.OK
    out, err = capsys.readouterr()
    assert "warning: UserNotFoundException: seldom succeeds when redriven" in err
    assert "moved by ErrorCode: UserNotFoundException 2" in out


# -- redrive with StartMessageMoveTask (scripted endpoint) -------------------------------------


@dataclass
class MoveTaskSqs:
    """An SQS endpoint that has StartMessageMoveTask. After the start, ListMessageMoveTasks
    answers from `statuses` in turn; "STALE" lists a task that finished an hour before, as
    SQS may until the new task shows up."""

    statuses: list[str] = field(default_factory=lambda: ["STALE", "RUNNING", "COMPLETED"])
    started: list[dict[str, Any]] = field(default_factory=list)
    started_ms: int = 0
    url: str = ""

    def _task(self, status: str, source_arn: str) -> dict[str, Any]:
        if status == "STALE":
            return {
                "Status": "COMPLETED",
                "SourceArn": source_arn,
                "StartedTimestamp": self.started_ms - 3_600_000,
                "ApproximateNumberOfMessagesMoved": 99,
                "ApproximateNumberOfMessagesToMove": 99,
            }
        task: dict[str, Any] = {
            "Status": status,
            "SourceArn": source_arn,
            "StartedTimestamp": self.started_ms,
            "ApproximateNumberOfMessagesMoved": 3 if status == "RUNNING" else 7,
            "ApproximateNumberOfMessagesToMove": 7,
        }
        if status == "RUNNING":
            task["TaskHandle"] = "task-1"  # only a running task shows its handle
        if status == "FAILED":
            task["FailureReason"] = "AccessDenied"
        return task

    async def handle(self, request: web.Request) -> web.Response:
        operation = request.headers.get("X-Amz-Target", "").rpartition(".")[2]
        body: dict[str, Any] = await request.json()
        if operation == "GetQueueAttributes":
            name = body["QueueUrl"].rpartition("/")[2]
            answer: dict[str, Any] = {
                "Attributes": {"QueueArn": f"arn:aws:sqs:us-east-1:123456789012:{name}"}
            }
        elif operation == "StartMessageMoveTask":
            self.started.append(body)
            self.started_ms = int(time.time() * 1000)
            answer = {"TaskHandle": "task-1"}
        elif operation == "ListMessageMoveTasks":
            status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
            answer = {"Results": [self._task(status, body["SourceArn"])]}
        else:
            return web.json_response(
                {"__type": "com.amazonaws.sqs#InvalidAction", "message": operation},
                status=400,
                content_type="application/x-amz-json-1.0",
            )
        return web.json_response(answer, content_type="application/x-amz-json-1.0")


@pytest.fixture
async def move_task_sqs(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MoveTaskSqs]:
    server = MoveTaskSqs()
    app = web.Application()
    app.router.add_post("/", server.handle)
    runner = web.AppRunner(app)
    monkeypatch.setattr(dlq_redrive, "MOVE_TASK_POLL_S", 0.01)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.url = site.name
    for name, value in {
        "AWS_ENDPOINT_URL_SQS": server.url,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": TEST_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": TEST_SECRET_KEY,
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    try:
        yield server
    finally:
        await runner.cleanup()


async def test_redrive_uses_a_move_task_where_sqs_has_one_and_follows_it_to_the_end(
    move_task_sqs: MoveTaskSqs, capsys: pytest.CaptureFixture[str]
) -> None:
    source, dead = f"{move_task_sqs.url}/123456789012/src", f"{move_task_sqs.url}/123456789012/dlq"
    args = build_parser().parse_args(["dlq", "redrive", "--yes", "--rate", "5000"])
    assert await dlq_command(args, source, dead) == exitcodes.OK
    assert move_task_sqs.started == [
        {
            "SourceArn": "arn:aws:sqs:us-east-1:123456789012:dlq",
            "DestinationArn": "arn:aws:sqs:us-east-1:123456789012:src",
            "MaxNumberOfMessagesPerSecond": 500,
        }
    ]
    out = capsys.readouterr().out
    assert "started move task task-1" in out
    assert "RUNNING: moved 3 of about 7" in out
    assert "COMPLETED: moved 7 of about 7" in out
    assert "99" not in out  # the task finished before this one was not taken for it


async def test_a_failed_move_task_exits_one_with_its_reason(
    move_task_sqs: MoveTaskSqs, capsys: pytest.CaptureFixture[str]
) -> None:
    move_task_sqs.statuses = ["STALE", "RUNNING", "FAILED"]
    source, dead = f"{move_task_sqs.url}/123456789012/src", f"{move_task_sqs.url}/123456789012/dlq"
    args = build_parser().parse_args(["dlq", "redrive", "--yes"])
    assert await dlq_command(args, source, dead) == exitcodes.FAILURE
    assert "FAILED: AccessDenied" in capsys.readouterr().err
