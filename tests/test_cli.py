"""The command line as an operator meets it: `enqueue`, `check-config` and every `--help`.

Commands run in-process through worker.cli.main (in a worker thread, since each command starts
its own event loop) against the shared local stack, with the stack's environment applied.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import structlog
from types_aiobotocore_sqs.client import SQSClient
from types_aiobotocore_sqs.type_defs import MessageTypeDef

from feedback_local.stack import QueuePair
from worker import exitcodes
from worker.cli import build_parser, main
from worker.config import SETTINGS, SETTINGS_BY_FIELD
from worker.contract import parse_verdict

POOL = "us-east-1_CliTest1"
USERNAME = "carol.cli@example.com"
HASH_KEY = "cli-test-hash-key-0123456789"


async def run_cli(*argv: str) -> int:
    """`feedback-worker argv…` in-process; its own event loop runs in a worker thread."""
    return await anyio.to_thread.run_sync(main, list(argv))


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Commands configure logging for the process: put it back after each test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


async def drain(sqs: SQSClient, url: str) -> list[MessageTypeDef]:
    """Every message of the queue, each once (moto may deliver one twice), deleted."""
    seen: dict[str, MessageTypeDef] = {}
    while True:
        response = await sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["MessageGroupId"],
        )
        messages = response.get("Messages", [])
        if not messages:
            return list(seen.values())
        for message in messages:
            seen.setdefault(message["MessageId"], message)
            await sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def verdict_line(event: str, *, user: str = USERNAME) -> str:
    return json.dumps(
        {"UserPoolId": POOL, "Username": user, "EventId": event, "FeedbackValue": "Invalid"}
    )


# -- enqueue --------------------------------------------------------------------------------------


async def test_enqueue_sends_one_verdict_from_the_four_flags(
    aws_env: dict[str, str],
    queues: QueuePair,
    sqs_client: SQSClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = await run_cli(
        "enqueue", "--pool", POOL, "--user", USERNAME, "--event", "ev-1", "--value", "valid"
    )
    assert code == exitcodes.OK
    assert "sent 1 verdict" in capsys.readouterr().out
    [message] = await drain(sqs_client, queues.url)
    verdict = parse_verdict(message["Body"])
    assert (verdict.username, verdict.event_id, verdict.feedback_value) == (
        USERNAME,
        "ev-1",
        "Valid",
    )


async def test_enqueue_from_a_jsonl_file_sends_the_good_lines_and_reports_the_bad_ones(
    aws_env: dict[str, str],
    queues: QueuePair,
    sqs_client: SQSClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a file with two good lines, a broken one and one missing its EventId
    path = tmp_path / "verdicts.jsonl"
    missing_event = json.dumps({"UserPoolId": POOL, "Username": "x", "FeedbackValue": "Valid"})
    lines = [verdict_line("ev-1"), "{not json", verdict_line("ev-2"), missing_event]
    path.write_text("\n".join(lines) + "\n")
    # When it is enqueued
    code = await run_cli("enqueue", "--file", str(path))
    # Then the good lines are sent, each bad one is named by number and code, and it exits 1
    assert code == exitcodes.FAILURE
    out, err = capsys.readouterr()
    assert "sent 2 verdicts" in out
    assert "line 2: invalid: MalformedJson" in err
    assert "line 4: invalid: MissingField" in err
    assert "EventId" in err
    events = sorted(parse_verdict(m["Body"]).event_id for m in await drain(sqs_client, queues.url))
    assert events == ["ev-1", "ev-2"]


async def test_enqueue_of_a_clean_file_read_from_stdin_exits_zero(
    aws_env: dict[str, str],
    queues: QueuePair,
    sqs_client: SQSClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = "".join(verdict_line(f"ev-{n}") + "\n" for n in range(12)).encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert await run_cli("enqueue", "--file", "-") == exitcodes.OK
    assert len(await drain(sqs_client, queues.url)) == 12


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--pool", POOL, "--user", USERNAME], "missing --event, --value"),
        (["--value", "Valid"], "missing --pool, --user, --event"),
        ([], "missing --pool, --user, --event, --value"),
        (["--file", "x.jsonl", "--pool", POOL], "cannot be combined with --pool"),
        (["--pool", POOL, "--user", USERNAME, "--event", "ev", "--value", "Maybe"], "--value"),
        (["--pool", "no-underscore", "--user", "u", "--event", "ev", "--value", "Valid"], "--pool"),
        (["--file", "/nonexistent/verdicts.jsonl"], "--file"),
    ],
)
async def test_enqueue_with_an_incomplete_or_bad_set_of_flags_is_a_usage_error_naming_them(
    aws_env: dict[str, str],
    queues: QueuePair,
    sqs_client: SQSClient,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    named: str,
) -> None:
    assert await run_cli("enqueue", *flags) == exitcodes.CONFIG_ERROR
    assert named in capsys.readouterr().err
    assert await drain(sqs_client, queues.url) == []


async def test_enqueue_to_a_fifo_queue_needs_the_shared_username_hash_key(
    aws_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    fifo_url = "http://127.0.0.1:9/123456789012/verdicts.fifo"  # never reached
    flags = ["--pool", POOL, "--user", USERNAME, "--event", "ev-1", "--value", "Valid"]
    code = await run_cli("enqueue", "--queue-url", fifo_url, *flags)
    assert code == exitcodes.CONFIG_ERROR
    err = capsys.readouterr().err
    assert "FEEDBACK_USERNAME_HASH_KEY" in err
    assert "message group" in err


async def test_enqueue_to_a_fifo_queue_groups_by_the_keyed_user_digest(
    aws_env: dict[str, str],
    sqs_client: SQSClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = (
        await sqs_client.create_queue(
            QueueName="cli-enqueue.fifo", Attributes={"FifoQueue": "true"}
        )
    )["QueueUrl"]
    try:
        monkeypatch.setenv("FEEDBACK_USERNAME_HASH_KEY", HASH_KEY)
        flags = ["--pool", POOL, "--user", USERNAME, "--event", "ev-1", "--value", "Valid"]
        assert await run_cli("enqueue", "--queue-url", url, *flags) == exitcodes.OK
        [message] = await drain(sqs_client, url)
        group = message["Attributes"]["MessageGroupId"]
        assert group.startswith(f"{POOL}:")
        assert USERNAME not in group
    finally:
        await sqs_client.delete_queue(QueueUrl=url)


async def test_enqueue_to_a_queue_that_does_not_exist_exits_one_and_says_so(
    aws_env: dict[str, str], queues: QueuePair, capsys: pytest.CaptureFixture[str]
) -> None:
    url = queues.url + "-missing"
    flags = ["--pool", POOL, "--user", USERNAME, "--event", "ev-1", "--value", "Valid"]
    assert await run_cli("enqueue", "--queue-url", url, *flags) == exitcodes.FAILURE
    err = capsys.readouterr().err
    assert "not sent" in err
    assert "NonExistentQueue" in err


# -- check-config ---------------------------------------------------------------------------------


async def test_check_config_without_a_queue_url_is_a_usage_error_naming_the_variable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await run_cli("check-config") == exitcodes.CONFIG_ERROR
    assert "FEEDBACK_QUEUE_URL" in capsys.readouterr().err


async def test_check_config_with_a_concurrency_below_one_is_a_usage_error(
    aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FEEDBACK_CONCURRENCY", "0")
    assert await run_cli("check-config") == exitcodes.CONFIG_ERROR
    err = capsys.readouterr().err
    assert "FEEDBACK_CONCURRENCY" in err
    assert "at least 1" in err


async def test_check_config_aws_with_the_stacks_queues_exits_zero(
    aws_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run_cli("check-config", "--aws") == exitcodes.OK
    out, err = capsys.readouterr()
    assert "both queues are reachable" in out
    assert "problem" not in err


async def test_check_config_aws_with_a_missing_queue_exits_one_with_a_plain_message(
    aws_env: dict[str, str], queues: QueuePair, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = queues.url + "-gone"
    assert await run_cli("check-config", "--aws", "--queue-url", missing) == exitcodes.FAILURE
    err = capsys.readouterr().err
    assert f"problem: queue {missing} does not exist" in err
    assert "Traceback" not in err


async def test_check_config_show_lists_every_setting_with_where_it_came_from(
    aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FEEDBACK_CONCURRENCY", "7")
    monkeypatch.setenv("FEEDBACK_USERNAME_HASH_KEY", HASH_KEY)
    code = await run_cli("check-config", "--show", "--rate-limit", "3", "--metrics-port", "0")
    assert code == exitcodes.OK
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("FEED")}
    assert set(rows) == {setting.env for setting in SETTINGS}
    assert rows["FEEDBACK_CONCURRENCY"][1:] == ["7", "(environment)"]
    assert rows["FEEDBACK_RATE_LIMIT"][1:] == ["3.0", "(flag)"]
    assert rows["FEEDBACK_MAX_ATTEMPTS"][1:] == ["8", "(default)"]
    assert rows["FEEDBACK_USERNAME_HASH_KEY"][1:] == ["(set)", "(environment)"]
    assert HASH_KEY not in out


async def test_check_config_offline_catches_a_bind_address_of_another_host(
    aws_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = await run_cli("check-config", "--metrics-bind", "192.0.2.1")
    assert code == exitcodes.CONFIG_ERROR
    assert "problem: --metrics-bind / FEEDBACK_METRICS_BIND" in capsys.readouterr().err


# -- --help ---------------------------------------------------------------------------------------


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[name] = sub
                found |= {f"{name} {n}": s for n, s in _subparsers(sub).items()}
    return found


def _help(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        main([*command.split(), "--help"])
    assert exited.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # undo argparse's line wrapping


def test_run_help_lists_every_setting_with_its_flag_env_var_and_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = _help("run", capsys)
    for setting in SETTINGS:
        assert setting.flag in text
        default = (
            "required"
            if setting.required
            else ("unset" if setting.default is None else str(setting.default))
        )
        assert f"[env {setting.env}; default: {default}]" in text
    assert "--until-empty" in text


@pytest.mark.parametrize("command", sorted(_subparsers(build_parser())))
def test_every_commands_help_lists_each_flag_and_each_settings_env_var_and_default(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = _subparsers(build_parser())[command]
    text = _help(command, capsys)
    for action in parser._actions:
        for flag in action.option_strings:
            assert flag in text
        setting = SETTINGS_BY_FIELD.get(action.dest)
        if setting is not None and action.option_strings:
            assert f"env {setting.env}; default:" in text
