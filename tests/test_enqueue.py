"""Producer-side enqueue: validation per line, batches of ten, per-entry retries, FIFO ids.

Sending and receiving go through real aiobotocore clients: to moto's SQS server (the shared
local stack) for queue semantics, and to a small scripted SQS endpoint on loopback for the
per-entry failures moto never produces.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from types_aiobotocore_sqs.client import SQSClient
from types_aiobotocore_sqs.type_defs import MessageTypeDef

from feedback_local.stack import TEST_ACCESS_KEY, TEST_SECRET_KEY, LocalStack, QueuePair
from worker.contract import MAX_BODY_BYTES, ValidationCode, parse_verdict, username_digest
from worker.errors import InvalidMessage
from worker.ops.producer import (
    SQS_BATCH_LIMIT,
    Problem,
    enqueue,
    fifo_group_id,
    open_jsonl,
    verdict_from_fields,
)

KEY = b"enqueue-test-key-0123456789abcdef"
POOL = "eu-west-1_AbC123"
CONCURRENCY = 4


def verdict_line(n: int, *, user: str = "alice@example.com", value: str = "Valid") -> str:
    return json.dumps(
        {"UserPoolId": POOL, "Username": user, "EventId": f"ev-{n}", "FeedbackValue": value}
    )


def canonical(line: str) -> str:
    return parse_verdict(line).to_body()


async def drain(sqs: SQSClient, url: str) -> list[MessageTypeDef]:
    """Every message in the queue, each once (moto may deliver one twice), deleted."""
    seen: dict[str, MessageTypeDef] = {}
    while True:
        response = await sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=SQS_BATCH_LIMIT,
            WaitTimeSeconds=0,
            MessageSystemAttributeNames=["MessageGroupId", "MessageDeduplicationId"],
        )
        messages = response.get("Messages", [])
        if not messages:
            return list(seen.values())
        for message in messages:
            seen.setdefault(message["MessageId"], message)
        await sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ],
        )


async def lines_of(lines: list[str]) -> AsyncIterator[str]:
    for line in lines:
        yield line


# -- against moto -------------------------------------------------------------------------------


async def test_valid_lines_are_sent_as_canonical_bodies_and_bad_lines_are_reported_by_number(
    sqs_client: SQSClient, queues: QueuePair
) -> None:
    # Given a file with good lines, bad lines and blank lines
    lines = [
        verdict_line(1),
        "not json\n",
        "",
        verdict_line(2, value="invalid") + "\r\n",
        json.dumps({"UserPoolId": POOL, "Username": "bob", "FeedbackValue": "Valid"}),
        "   ",
        json.dumps(
            {
                "Username": "carol",
                "EventId": "ev-3",
                "FeedbackValue": "VALID",
                "UserPoolId": POOL,
                "source_system": "fraud-scorer",
            }
        ),
    ]
    # When it is enqueued
    report = await enqueue(sqs_client, queues.url, lines, digest_key=KEY)
    # Then the bad lines are reported with their numbers and codes, the others are sent
    assert [(p.line_no, p.code) for p in report.invalid] == [
        (2, ValidationCode.MALFORMED_JSON),
        (5, ValidationCode.MISSING_FIELD),
    ]
    assert "EventId" in report.invalid[1].message
    assert (report.sent, report.failed, report.aborted, report.lines_read) == (3, [], None, 7)
    assert not report.ok
    bodies = sorted(m["Body"] for m in await drain(sqs_client, queues.url))
    assert bodies == sorted(canonical(lines[i]) for i in (0, 3, 6))
    assert json.loads(bodies[0]).keys() == {"UserPoolId", "Username", "EventId", "FeedbackValue"}


async def test_a_stream_longer_than_a_batch_arrives_whole(
    sqs_client: SQSClient, queues: QueuePair
) -> None:
    lines = [verdict_line(n) for n in range(1, 36)]
    report = await enqueue(sqs_client, queues.url, lines_of(lines), digest_key=KEY)
    assert report.ok
    assert report.sent == 35
    received = {m["Body"] for m in await drain(sqs_client, queues.url)}
    assert received == {canonical(line) for line in lines}


async def test_a_single_verdict_from_flags_is_sent_through_the_same_path(
    sqs_client: SQSClient, queues: QueuePair
) -> None:
    verdict = verdict_from_fields(POOL, "dave", "ev-9", "invalid")
    report = await enqueue(sqs_client, queues.url, [verdict.to_body()], digest_key=KEY)
    assert (report.ok, report.sent) == (True, 1)
    [message] = await drain(sqs_client, queues.url)
    assert parse_verdict(message["Body"]) == verdict


@pytest.fixture
def fifo_queues(local_stack: LocalStack) -> Iterator[QueuePair]:
    pair = local_stack.create_queues(fifo=True)
    yield pair
    local_stack.delete_queues(pair)


async def test_fifo_messages_are_grouped_per_user_without_the_username_and_keep_their_order(
    sqs_client: SQSClient, fifo_queues: QueuePair
) -> None:
    # Given interleaved verdicts for three users, more than one batch of them
    users = ["alice@example.com", "bob@example.com", "zoë"]
    lines = [verdict_line(n, user=users[n % 3]) for n in range(24)]
    # When they are enqueued to a FIFO queue
    report = await enqueue(sqs_client, fifo_queues.url, lines, digest_key=KEY)
    assert (report.ok, report.sent) == (True, 24)
    # Then each user has one group, named by pool and digest, and the input order within it
    by_group: dict[str, list[str]] = {}
    for message in await drain(sqs_client, fifo_queues.url):
        attributes = message.get("Attributes", {})
        group = attributes["MessageGroupId"]
        body = message["Body"]
        assert attributes["MessageDeduplicationId"] == hashlib.sha256(body.encode()).hexdigest()
        by_group.setdefault(group, []).append(json.loads(body)["EventId"])
    expected = {f"{POOL}:{username_digest(user, KEY)}": user for user in users}
    assert by_group.keys() == expected.keys()
    for group, user in expected.items():
        assert user not in group
        assert by_group[group] == [f"ev-{n}" for n in range(24) if users[n % 3] == user]


async def test_a_verdict_repeated_on_a_fifo_queue_is_stored_once(
    sqs_client: SQSClient, fifo_queues: QueuePair
) -> None:
    # The second spelling differs only in case and key order: its canonical body is the same.
    same = json.dumps(
        {
            "FeedbackValue": "valid",
            "EventId": "ev-1",
            "Username": "alice@example.com",
            "UserPoolId": POOL,
        }
    )
    report = await enqueue(sqs_client, fifo_queues.url, [verdict_line(1), same], digest_key=KEY)
    assert report.ok
    assert [m["Body"] for m in await drain(sqs_client, fifo_queues.url)] == [
        canonical(verdict_line(1))
    ]


async def test_an_unknown_queue_stops_the_run_early_and_every_line_read_is_accounted_for(
    sqs_client: SQSClient, queues: QueuePair
) -> None:
    # Given a long input and a queue URL that does not exist
    lines = (verdict_line(n) for n in range(1, 10_001))
    # When it is enqueued
    report = await enqueue(
        sqs_client, queues.url + "-missing", lines, digest_key=KEY, concurrency=CONCURRENCY
    )
    # Then the run stops within a few batches, with the reason, and nothing was sent
    assert report.aborted is not None
    assert "NonExistentQueue" in report.aborted or "QueueDoesNotExist" in report.aborted
    assert report.sent == 0
    assert 0 < report.lines_read <= (CONCURRENCY + 1) * SQS_BATCH_LIMIT
    assert [p.line_no for p in report.failed] == list(range(1, report.lines_read + 1))


async def test_a_jsonl_file_is_streamed_line_by_line_with_oversized_and_broken_lines_reported(
    sqs_client: SQSClient, queues: QueuePair, tmp_path: Path
) -> None:
    # Given a file with a byte-order mark, CRLF endings, a line over 1 MiB, bad UTF-8, no final LF
    path = tmp_path / "verdicts.jsonl"
    path.write_bytes(
        b"\xef\xbb\xbf"
        + verdict_line(1).encode()
        + b"\r\n"
        + b'{"pad": "'
        + b"x" * (2 * MAX_BODY_BYTES)
        + b'"}\n'
        + b"\xff\xfe\n"
        + b"\n"
        + verdict_line(5).encode()
    )
    # When it is enqueued
    async with open_jsonl(str(path)) as lines:
        report = await enqueue(sqs_client, queues.url, lines, digest_key=KEY)
    # Then the good lines go and the bad ones are reported with their numbers
    assert report.invalid == [
        Problem(2, ValidationCode.BODY_TOO_LARGE, report.invalid[0].message),
        Problem(3, ValidationCode.INVALID_ENCODING, report.invalid[1].message),
    ]
    assert (report.sent, report.lines_read) == (2, 5)
    received = {m["Body"] for m in await drain(sqs_client, queues.url)}
    assert received == {canonical(verdict_line(1)), canonical(verdict_line(5))}


async def test_the_jsonl_reader_keeps_a_body_of_exactly_1_mib(tmp_path: Path) -> None:
    line = verdict_line(1)
    padded = line[:-1] + ', "pad": "' + "x" * (MAX_BODY_BYTES - len(line) - 11) + '"}'
    assert len(padded.encode()) == MAX_BODY_BYTES
    path = tmp_path / "big.jsonl"
    path.write_bytes(padded.encode() + b"\r\n" + padded.encode() + b"x\n")
    async with open_jsonl(str(path)) as lines:
        read = [body async for body in lines]
    assert parse_verdict(read[0].removesuffix(b"\r")) == parse_verdict(line)
    with pytest.raises(InvalidMessage) as caught:
        parse_verdict(read[1])
    assert caught.value.code == ValidationCode.BODY_TOO_LARGE


def test_the_fifo_group_id_is_stable_and_fits_sqs_limits() -> None:
    verdict = verdict_from_fields("ap-southeast-2_" + "z" * 40, "ü" * 128, "e", "Valid")
    group = fifo_group_id(verdict, KEY)
    assert group == fifo_group_id(verdict, KEY)
    assert len(group) <= 128
    assert group.isascii()


# -- against a scripted SQS endpoint --------------------------------------------------------------


@dataclass
class ScriptedSqs:
    """An SQS endpoint whose SendMessageBatch refuses entries as scripted, keyed by entry Id.

    `refusals[id]` lists what happens to that entry on its successive sends: "retry"
    (SenderFault false), "reject" (SenderFault true); once the list is used up, it succeeds.
    `server_errors` whole calls fail with HTTP 500 first.
    """

    refusals: dict[str, list[str]] = field(default_factory=dict)
    server_errors: int = 0
    calls: list[list[str]] = field(default_factory=list)
    stored: list[str] = field(default_factory=list)
    url: str = ""
    _message_ids: Iterator[int] = field(default_factory=itertools.count)

    def reset(self, refusals: dict[str, list[str]] | None = None, server_errors: int = 0) -> None:
        self.refusals = {k: list(v) for k, v in (refusals or {}).items()}
        self.server_errors = server_errors
        self.calls.clear()
        self.stored.clear()

    async def handle(self, request: web.Request) -> web.Response:
        operation = request.headers.get("X-Amz-Target", "").rpartition(".")[2]
        if operation != "SendMessageBatch":
            return self._error(400, "InvalidAction", f"not scripted: {operation}")
        if self.server_errors:
            self.server_errors -= 1
            return self._error(500, "InternalError", "scripted server error")
        entries: list[dict[str, Any]] = (await request.json())["Entries"]
        self.calls.append([entry["Id"] for entry in entries])
        successful, failed = [], []
        for entry in entries:
            script = self.refusals.get(entry["Id"], [])
            fate = script.pop(0) if script else "ok"
            if fate == "ok":
                self.stored.append(entry["MessageBody"])
                body_md5 = hashlib.md5(entry["MessageBody"].encode()).hexdigest()  # noqa: S324
                successful.append(
                    {
                        "Id": entry["Id"],
                        "MessageId": str(next(self._message_ids)),
                        "MD5OfMessageBody": body_md5,
                    }
                )
            else:
                failed.append(
                    {
                        "Id": entry["Id"],
                        "SenderFault": fate == "reject",
                        "Code": "InvalidParameterValue" if fate == "reject" else "InternalError",
                        "Message": f"scripted {fate}",
                    }
                )
        return web.json_response(
            {"Successful": successful, "Failed": failed}, content_type="application/x-amz-json-1.0"
        )

    @staticmethod
    def _error(status: int, code: str, message: str) -> web.Response:
        return web.json_response(
            {"__type": f"com.amazonaws.sqs#{code}", "message": message},
            status=status,
            content_type="application/x-amz-json-1.0",
        )


@pytest.fixture(scope="module")
async def scripted() -> AsyncIterator[ScriptedSqs]:
    server = ScriptedSqs()
    app = web.Application()
    app.router.add_post("/", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.url = site.name
    try:
        yield server
    finally:
        await runner.cleanup()


@pytest.fixture(scope="module")
async def scripted_client(scripted: ScriptedSqs) -> AsyncIterator[SQSClient]:
    session = AioSession()
    # Nothing from the caller's ~/.aws leaks in.
    session.set_config_variable("config_file", os.devnull)
    session.set_config_variable("credentials_file", os.devnull)
    async with session.create_client(
        "sqs",
        region_name="us-east-1",
        endpoint_url=scripted.url,
        aws_access_key_id=TEST_ACCESS_KEY,
        aws_secret_access_key=TEST_SECRET_KEY,
        # Only enqueue's own retries: the client gives up after one try.
        config=AioConfig(retries={"total_max_attempts": 1}),
    ) as client:
        yield client


def scripted_queue(scripted: ScriptedSqs) -> str:
    return f"{scripted.url}/123456789012/scripted"


async def test_entries_refused_through_no_fault_of_ours_are_retried_until_taken(
    scripted: ScriptedSqs, scripted_client: SQSClient
) -> None:
    # Given SQS refuses line 2 twice and line 3 once, without blaming the sender
    scripted.reset({"2": ["retry", "retry"], "3": ["retry"]})
    lines = [verdict_line(n) for n in range(1, 6)]
    # When the lines are enqueued
    report = await enqueue(scripted_client, scripted_queue(scripted), lines, digest_key=KEY)
    # Then everything was taken, and only the refused entries were sent again
    assert (report.ok, report.sent) == (True, 5)
    assert scripted.calls == [["1", "2", "3", "4", "5"], ["2", "3"], ["2"]]
    assert sorted(scripted.stored) == sorted(canonical(line) for line in lines)


async def test_entries_refused_as_the_senders_fault_are_reported_without_a_retry(
    scripted: ScriptedSqs, scripted_client: SQSClient
) -> None:
    scripted.reset({"4": ["reject"]})
    lines = [verdict_line(n) for n in range(1, 6)]
    report = await enqueue(scripted_client, scripted_queue(scripted), lines, digest_key=KEY)
    assert report.sent == 4
    assert report.failed == [Problem(4, "InvalidParameterValue", "scripted reject")]
    assert scripted.calls == [["1", "2", "3", "4", "5"]]


async def test_an_entry_refused_every_time_is_reported_after_the_bounded_attempts(
    scripted: ScriptedSqs, scripted_client: SQSClient
) -> None:
    attempts = 3
    scripted.reset({"1": ["retry"] * 10})
    report = await enqueue(
        scripted_client,
        scripted_queue(scripted),
        [verdict_line(1)],
        digest_key=KEY,
        attempts=attempts,
    )
    assert (report.sent, report.aborted) == (0, None)
    assert report.failed == [Problem(1, "InternalError", "scripted retry")]
    assert scripted.calls == [["1"]] * attempts


async def test_a_whole_call_failing_on_the_server_side_is_retried(
    scripted: ScriptedSqs, scripted_client: SQSClient
) -> None:
    scripted.reset(server_errors=1)
    lines = [verdict_line(n) for n in range(1, 4)]
    report = await enqueue(scripted_client, scripted_queue(scripted), lines, digest_key=KEY)
    assert (report.ok, report.sent) == (True, 3)
    assert scripted.calls == [["1", "2", "3"]]


@pytest.mark.parametrize("limits", [{"concurrency": 0}, {"attempts": 0}])
async def test_concurrency_and_attempts_below_one_are_refused(
    scripted: ScriptedSqs, scripted_client: SQSClient, limits: dict[str, int]
) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        await enqueue(scripted_client, scripted_queue(scripted), [], digest_key=KEY, **limits)


line_kinds = st.one_of(
    st.integers(0, 10**6).map(verdict_line),
    st.text(max_size=12),
    st.sampled_from(["", " ", "{}", "[]", '{"UserPoolId": 1}']),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(line_kinds, max_size=45), rejected=st.sets(st.integers(1, 45)))
async def test_every_line_is_sent_once_or_reported_once_with_its_number(
    scripted: ScriptedSqs, scripted_client: SQSClient, lines: list[str], rejected: set[int]
) -> None:
    # Given any mix of lines, and SQS refusing some entries as the sender's fault
    scripted.reset({str(n): ["reject"] for n in rejected})
    # When they are enqueued
    report = await enqueue(scripted_client, scripted_queue(scripted), lines, digest_key=KEY)
    # Then each non-blank line is exactly one of: sent, invalid, failed; batches hold <= 10
    expected_invalid: list[tuple[int, str]] = []
    expected_sent: list[tuple[int, str]] = []
    expected_failed: list[tuple[int, str]] = []
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            body = parse_verdict(line.removeprefix("\ufeff") if line_no == 1 else line).to_body()
        except InvalidMessage as exc:
            expected_invalid.append((line_no, exc.code))
            continue
        (expected_failed if line_no in rejected else expected_sent).append((line_no, body))
    assert [(p.line_no, p.code) for p in report.invalid] == expected_invalid
    assert [p.line_no for p in report.failed] == [n for n, _ in expected_failed]
    assert report.sent == len(expected_sent)
    assert sorted(scripted.stored) == sorted(body for _, body in expected_sent)
    assert all(len(call) <= SQS_BATCH_LIMIT for call in scripted.calls)
    assert report.lines_read == len(lines)
