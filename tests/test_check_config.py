"""`check-config --aws` checks: credentials, both queues, their redrive policy and retention,
against moto's SQS through real aiobotocore clients, with every failure put in plain words."""

from __future__ import annotations

import os
import socket

import botocore.exceptions
import pytest
from types_aiobotocore_sqs.client import SQSClient

from feedback_local.stack import LocalStack, QueuePair
from worker.config import Settings, load_settings
from worker.ops.aws_calls import describe_error
from worker.ops.check_config import Findings, inspect_aws, inspect_offline


def settings_for(
    queues: QueuePair, *, queue_url: str | None = None, dlq_url: str | None = None
) -> Settings:
    return Settings(queue_url=queue_url or queues.url, dlq_url=dlq_url or queues.dlq_url)


async def test_the_stacks_queues_pass_with_notes_on_credentials_and_visibility(
    aws_env: dict[str, str], queues: QueuePair
) -> None:
    findings = await inspect_aws(settings_for(queues))
    assert (findings.problems, findings.warnings) == ([], [])
    notes = "\n".join(findings.notes)
    assert "credentials come from env" in notes
    assert "VisibilityTimeout is 30 s; the worker asks for 60 s" in notes
    # The stack's SQS is local: AWS's STS is not asked about its test credentials.
    assert "identity not checked" in notes


async def test_a_queue_that_does_not_exist_is_a_problem_in_plain_words(
    aws_env: dict[str, str], queues: QueuePair
) -> None:
    missing = queues.dlq_url + "-gone"
    findings = await inspect_aws(settings_for(queues, dlq_url=missing))
    assert findings.problems == [
        f"queue {missing} does not exist (check its URL, account and region)"
    ]


async def test_an_unreachable_endpoint_is_one_problem_naming_it(
    aws_env: dict[str, str], queues: QueuePair, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A port that was free a moment ago: nothing listens there.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", endpoint)
    findings = await inspect_aws(settings_for(queues))
    [problem] = findings.problems
    assert problem.startswith(f"cannot reach endpoint {endpoint}")


async def test_missing_credentials_are_a_problem_and_stop_the_checks(
    aws_env: dict[str, str], queues: QueuePair, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    findings = await inspect_aws(settings_for(queues))
    [problem] = findings.problems
    assert problem.startswith("no AWS credentials found")


async def test_a_source_queue_without_a_redrive_policy_is_a_problem(
    aws_env: dict[str, str], queues: QueuePair, sqs_client: SQSClient
) -> None:
    url = (await sqs_client.create_queue(QueueName=f"{queues.url[-12:]}-bare"))["QueueUrl"]
    try:
        findings = await inspect_aws(settings_for(queues, queue_url=url))
    finally:
        await sqs_client.delete_queue(QueueUrl=url)
    [problem] = findings.problems
    assert "has no RedrivePolicy" in problem


async def test_a_low_max_receive_count_and_a_policy_pointing_elsewhere_are_warnings(
    aws_env: dict[str, str], local_stack: LocalStack, queues: QueuePair
) -> None:
    # Given a source whose RedrivePolicy moves to its own DLQ after 2 receives, while the
    # worker is configured with another DLQ
    strict = local_stack.create_queues(max_receive_count=2)
    try:
        findings = await inspect_aws(Settings(queue_url=strict.url, dlq_url=queues.dlq_url))
    finally:
        local_stack.delete_queues(strict)
    assert findings.problems == []
    elsewhere, low = findings.warnings
    assert f"moves messages to {strict.dlq_arn}, not to the configured DLQ" in elsewhere
    assert "maxReceiveCount is 2" in low


async def test_a_dlq_that_keeps_messages_less_long_than_the_source_is_a_warning(
    aws_env: dict[str, str], queues: QueuePair, sqs_client: SQSClient
) -> None:
    await sqs_client.set_queue_attributes(
        QueueUrl=queues.dlq_url, Attributes={"MessageRetentionPeriod": "600"}
    )
    findings = await inspect_aws(settings_for(queues))
    assert findings.problems == []
    [warning] = findings.warnings
    assert "the DLQ keeps messages 600 s, less than the source queue's 345600 s" in warning


def _client_error(code: str, message: str = "no") -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": message}}, "GetQueueAttributes"
    )


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            _client_error("AccessDenied"),
            "the identity arn:aws:iam::1:user/x may not call sqs:GetQueueAttributes on Q",
        ),
        (_client_error("AWS.SimpleQueueService.NonExistentQueue"), "queue Q does not exist"),
        (_client_error("InvalidClientTokenId", "bad"), "E refused the credentials of"),
        (_client_error("Weird", "odd"), "sqs:GetQueueAttributes on Q failed: Weird: odd"),
        (botocore.exceptions.EndpointConnectionError(endpoint_url="E"), "cannot reach endpoint E"),
        (botocore.exceptions.NoCredentialsError(), "no usable AWS credentials"),
        (botocore.exceptions.NoRegionError(), "no AWS region is set"),
    ],
)
def test_every_kind_of_failure_reads_as_plain_words(error: BaseException, expected: str) -> None:
    text = describe_error(
        error,
        action="sqs:GetQueueAttributes",
        resource="Q",
        endpoint="E",
        identity="arn:aws:iam::1:user/x",
    )
    assert text.startswith(expected)
    assert "\n" not in text


# -- offline: what needs no AWS call -----------------------------------------------------------

AWS_QUEUE = "https://sqs.eu-west-1.amazonaws.com/123456789012/verdicts"
AWS_DLQ = "https://sqs.eu-west-1.amazonaws.com/123456789012/verdicts-dlq"


def offline(
    monkeypatch: pytest.MonkeyPatch,
    *,
    region: str | None = None,
    queue_url: str = AWS_QUEUE,
    dlq_url: str = AWS_DLQ,
    **environ: str,
) -> Findings:
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    if region is not None:
        monkeypatch.setenv("AWS_REGION", region)
    env = {"FEEDBACK_QUEUE_URL": queue_url, "FEEDBACK_DLQ_URL": dlq_url, **environ}
    return inspect_offline(load_settings({}, env))


def test_offline_an_aws_queue_url_gives_the_region_when_none_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    findings = offline(monkeypatch, FEEDBACK_METRICS_PORT="0")
    assert findings.problems == []
    assert findings.warnings == []


def test_offline_no_region_and_a_local_queue_url_is_a_problem(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    findings = offline(
        monkeypatch,
        queue_url="http://127.0.0.1:4566/123456789012/q",
        dlq_url="http://127.0.0.1:4566/123456789012/q-dlq",
        FEEDBACK_METRICS_PORT="0",
    )
    [problem] = findings.problems
    assert "set AWS_REGION" in problem


def test_offline_a_region_other_than_the_queue_urls_is_a_problem(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    findings = offline(monkeypatch, region="us-east-1", FEEDBACK_METRICS_PORT="0")
    [problem] = findings.problems
    assert "eu-west-1" in problem
    assert "us-east-1" in problem


def test_offline_a_dlq_in_another_region_or_account_is_a_problem(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    findings = offline(
        monkeypatch,
        dlq_url="https://sqs.us-east-1.amazonaws.com/999999999999/verdicts-dlq",
        FEEDBACK_METRICS_PORT="0",
    )
    assert len(findings.problems) == 2
    assert "region" in findings.problems[0]
    assert "account" in findings.problems[1]


def test_offline_a_bind_address_not_of_this_host_is_a_problem(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    findings = offline(monkeypatch, FEEDBACK_METRICS_BIND="192.0.2.1")
    [problem] = findings.problems
    assert "not an address of this host" in problem


def test_offline_a_metrics_port_in_use_is_a_warning_since_it_may_be_this_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        findings = offline(monkeypatch, FEEDBACK_METRICS_PORT=str(port))
    assert findings.problems == []
    [warning] = findings.warnings
    assert f"port {port}" in warning
