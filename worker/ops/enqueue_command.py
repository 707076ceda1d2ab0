"""`feedback-worker enqueue`: send one verdict from flags, or many from a JSONL file or stdin.

Every verdict goes through worker.ops.producer, so it is checked with the worker's own parser before
it is sent and lands as its canonical body. The report is plain text: how many were sent, then
each line that was not, with its number, a code and the reason (never a username).
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

import aioboto3

from worker import exitcodes
from worker.config import resolve
from worker.errors import ConfigError, InvalidMessage
from worker.ops.aws_calls import open_sqs
from worker.ops.producer import (
    DEFAULT_CONCURRENCY,
    FIFO_SUFFIX,
    EnqueueReport,
    Problem,
    enqueue,
    open_jsonl,
    verdict_from_fields,
)

if TYPE_CHECKING:
    from worker.contract import Verdict

# The flags of a single verdict, and the API parameter each one fills.
SINGLE_VERDICT_FLAGS: dict[str, str] = {
    "pool": "UserPoolId",
    "user": "Username",
    "event": "EventId",
    "value": "FeedbackValue",
}
_FLAG_OF_PARAMETER = {parameter: f"--{dest}" for dest, parameter in SINGLE_VERDICT_FLAGS.items()}
_ALL_FLAGS = "/".join(_FLAG_OF_PARAMETER.values())
HASH_KEY_SETTING = "username_hash_key"


def _single_verdict_fields(args: argparse.Namespace) -> dict[str, str] | None:
    """The four values of a single verdict, None when --file is used; ConfigError otherwise."""
    given = {dest: getattr(args, dest, None) for dest in SINGLE_VERDICT_FLAGS}
    named = [f"--{dest}" for dest, value in given.items() if value is not None]
    if args.file is not None:
        if named:
            raise ConfigError(
                "--file",
                f"reads verdicts from JSONL and cannot be combined with {', '.join(named)}",
            )
        return None
    missing = [f"--{dest}" for dest, value in given.items() if value is None]
    if missing:
        raise ConfigError(
            _ALL_FLAGS,
            f"a single verdict needs all four flags (missing {', '.join(missing)}); "
            "or pass --file PATH (or --file - for stdin) with one JSON verdict per line",
        )
    return {dest: str(value) for dest, value in given.items()}


def _verdict(fields: dict[str, str]) -> Verdict:
    try:
        return verdict_from_fields(fields["pool"], fields["user"], fields["event"], fields["value"])
    except InvalidMessage as exc:
        flag = _FLAG_OF_PARAMETER.get(exc.field or "", _ALL_FLAGS)
        raise ConfigError(flag, exc.message) from None


def _digest_key(args: argparse.Namespace, queue_url: str) -> bytes:
    """The key that names FIFO message groups; a FIFO queue needs the same one on every run."""
    key: bytes | None = resolve(args, os.environ, [HASH_KEY_SETTING]).get(HASH_KEY_SETTING)
    if key:
        return key
    if queue_url.endswith(FIFO_SUFFIX):
        raise ConfigError(
            "FEEDBACK_USERNAME_HASH_KEY",
            "is required for a FIFO queue: each user's message group is named with a keyed "
            "hash of the username, and only a key shared by every run and every producer keeps "
            "one user's verdicts in one group, in order",
        )
    # A standard queue has no message groups: the key is never used for anything lasting.
    return secrets.token_bytes(32)


def _print_report(report: EnqueueReport, queue_url: str, *, single: bool) -> None:
    noun = "verdict" if report.sent == 1 else "verdicts"
    if single:
        print(f"sent {report.sent} {noun} to {queue_url}")
    else:
        print(f"sent {report.sent} {noun} to {queue_url} from {report.lines_read} lines")
    for problem in report.invalid:
        print(f"line {problem.line_no}: invalid: {_describe(problem)}", file=sys.stderr)
    for problem in report.failed:
        where = "the verdict" if single else f"line {problem.line_no}"
        print(f"{where}: not sent: {_describe(problem)}", file=sys.stderr)
    if report.aborted is not None:
        print(
            f"stopped after line {report.lines_read}: SQS refused the calls: {report.aborted}",
            file=sys.stderr,
        )


def _describe(problem: Problem) -> str:
    return f"{problem.code}: {problem.message}" if problem.message else problem.code


async def enqueue_command(args: argparse.Namespace, queue_url: str) -> int:
    """Send the verdict of --pool/--user/--event/--value, or the JSONL of --file; exit code."""
    fields = _single_verdict_fields(args)
    verdict = None if fields is None else _verdict(fields)
    digest_key = _digest_key(args, queue_url)
    session = aioboto3.Session()
    async with AsyncExitStack() as stack:
        sqs = await open_sqs(stack, session, connections=DEFAULT_CONCURRENCY, queue_url=queue_url)
        if verdict is not None:
            report = await enqueue(sqs, queue_url, [verdict.to_body()], digest_key=digest_key)
        else:
            assert args.file is not None
            try:
                lines = await stack.enter_async_context(open_jsonl(args.file))
            except OSError as exc:
                raise ConfigError("--file", f"cannot read {args.file!r}: {exc.strerror}") from None
            report = await enqueue(sqs, queue_url, lines, digest_key=digest_key)
    _print_report(report, queue_url, single=verdict is not None)
    return exitcodes.OK if report.ok else exitcodes.FAILURE
