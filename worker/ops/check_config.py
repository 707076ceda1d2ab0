"""`feedback-worker check-config [--aws]`: would the worker start, and (with --aws) can this
identity reach both queues, and are they set up the way the worker's delivery contract needs?

Offline, it checks what needs no AWS call: the region, the queue URLs against each other, and
the metrics server's address. With --aws it is read-only: it resolves credentials, asks STS who
we are when that is possible, and reads both queues' attributes. It finds problems (the worker
could not run), warnings (it would run, with a risk worth fixing) and notes; every finding is
in plain words, never a botocore traceback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import aioboto3
import anyio
import botocore.exceptions
from botocore.config import Config

from worker.clients import configured_region, region_of_queue_url
from worker.config import FROM_DEFAULT, Settings
from worker.ops.aws_calls import AWS_CALL_ERRORS, NO_REGION, describe_error, is_aws_endpoint
from worker.outcome import NETWORK_ERRORS
from worker.startup import PORT_SETTING, probe_metrics_address

if TYPE_CHECKING:
    from types_aiobotocore_sqs.client import SQSClient
    from types_aiobotocore_sqs.literals import QueueAttributeFilterType

# Releases at shutdown and during systemic pauses count as receives: below this, a message
# could reach the DLQ without ever being tried.
MIN_MAX_RECEIVE_COUNT = 5
PREFLIGHT_CONFIG = Config(
    retries={"total_max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=10
)
STS_CONFIG = Config(retries={"total_max_attempts": 1}, connect_timeout=3, read_timeout=5)
STS_TIMEOUT_S = 8.0
_SHOWN_KEY_CHARS = 4
_QUEUE_ATTRIBUTES: list[QueueAttributeFilterType] = [
    "QueueArn",
    "RedrivePolicy",
    "VisibilityTimeout",
    "MessageRetentionPeriod",
    "FifoQueue",
    "ApproximateNumberOfMessages",
]


@dataclass
class Findings:
    """What the checks found: problems stop the worker, warnings are risks, notes inform."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _account_of(url: str) -> str | None:
    parts = urlparse(url).path.strip("/").split("/")
    return parts[0] if len(parts) == 2 and parts[0].isdigit() else None


def inspect_offline(settings: Settings) -> Findings:
    """What can be checked without calling AWS; see the module docstring."""
    findings = Findings()
    configured = configured_region()
    queue_region = region_of_queue_url(settings.queue_url)
    dlq_region = region_of_queue_url(settings.dlq_url)
    if configured is None and queue_region is None:
        findings.problems.append(f"{NO_REGION}, and the queue URL names none: set AWS_REGION")
    elif configured is not None and queue_region not in (None, configured):
        findings.problems.append(
            f"the queue URL is in {queue_region} but the AWS region in use is {configured}: "
            "SQS calls would go to the wrong region (fix AWS_REGION / AWS_DEFAULT_REGION)"
        )
    if queue_region is not None and dlq_region is not None and queue_region != dlq_region:
        findings.problems.append(
            f"the DLQ is in {dlq_region} and the source queue in {queue_region}: a dead-letter "
            "queue must be in the source queue's region"
        )
    accounts = {_account_of(settings.queue_url), _account_of(settings.dlq_url)} - {None}
    if len(accounts) > 1:
        findings.problems.append(
            f"the queue URLs name two accounts ({', '.join(sorted(a or '' for a in accounts))}): "
            "a dead-letter queue must be in the source queue's account"
        )
    if settings.metrics_port:
        error = probe_metrics_address(settings.metrics_bind, settings.metrics_port)
        if error is not None and error.setting == PORT_SETTING:
            findings.warnings.append(f"{error} (fine if that is this worker, already running)")
        elif error is not None:
            findings.problems.append(str(error))
    if settings.sources.get("username_hash_key", FROM_DEFAULT) == FROM_DEFAULT:
        findings.notes.append(
            "FEEDBACK_USERNAME_HASH_KEY is unset: each process hashes usernames under a key of "
            "its own, so logs of different replicas (and dlq inspect) do not correlate"
        )
    return findings


def print_findings(findings: Findings) -> None:
    for note in findings.notes:
        print(f"note: {note}")
    for warning in findings.warnings:
        print(f"warning: {warning}")


async def check_aws(settings: Settings) -> list[str]:
    """Run every check, print warnings and notes, and return the problems (empty: all good)."""
    findings = await inspect_aws(settings)
    print_findings(findings)
    return findings.problems


async def inspect_aws(settings: Settings) -> Findings:
    """Check credentials, identity and both queues; see the module docstring."""
    findings = Findings()
    region = configured_region() or region_of_queue_url(settings.queue_url)
    if region is None:
        findings.problems.append(NO_REGION)
        return findings
    try:
        session = aioboto3.Session(region_name=region)
        credentials = await session.get_credentials()
    except AWS_CALL_ERRORS as exc:
        findings.problems.append(f"cannot resolve AWS credentials: {exc}")
        return findings
    if credentials is None:
        findings.problems.append(
            "no AWS credentials found (environment, profile, web identity, container or "
            "instance role)"
        )
        return findings
    access_key = str(getattr(credentials, "access_key", "") or "")
    identity = f"with access key …{access_key[-_SHOWN_KEY_CHARS:]}" if access_key else "in use here"
    findings.notes.append(f"credentials come from {getattr(credentials, 'method', 'somewhere')}")
    try:
        async with session.client("sqs", config=PREFLIGHT_CONFIG) as sqs:
            endpoint = sqs.meta.endpoint_url
            identity = await _identity(session, endpoint, findings) or identity
            await _check_queues(sqs, settings, identity, findings)
    except botocore.exceptions.NoRegionError:
        findings.problems.append(NO_REGION)
    return findings


async def _identity(session: Any, sqs_endpoint: str, findings: Findings) -> str | None:
    """The caller's ARN from STS, or None; never a problem, since STS is not always there."""
    async with session.client("sts", config=STS_CONFIG) as sts:
        if is_aws_endpoint(sts.meta.endpoint_url) and not is_aws_endpoint(sqs_endpoint):
            # A local SQS endpoint: its credentials mean nothing to AWS's own STS.
            findings.notes.append(f"identity not checked: SQS is {sqs_endpoint}, not AWS")
            return None
        with anyio.move_on_after(STS_TIMEOUT_S):
            try:
                answer = await sts.get_caller_identity()
            except AWS_CALL_ERRORS as exc:
                findings.notes.append(f"identity not checked: STS said {exc}")
                return None
            arn = str(answer["Arn"])
            findings.notes.append(f"identity: {arn} (account {answer['Account']})")
            return arn
        findings.notes.append(f"identity not checked: STS did not answer in {STS_TIMEOUT_S:g} s")
        return None


class _Unreachable(Exception):
    """The SQS endpoint cannot be reached: the other queue is behind it too."""


async def _queue_attributes(
    sqs: SQSClient, url: str, identity: str, findings: Findings
) -> dict[str, str] | None:
    try:
        response = await sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=_QUEUE_ATTRIBUTES,
        )
    except AWS_CALL_ERRORS as exc:
        endpoint = sqs.meta.endpoint_url
        findings.problems.append(
            describe_error(
                exc,
                action="sqs:GetQueueAttributes",
                resource=url,
                endpoint=endpoint,
                identity=identity,
            )
        )
        if isinstance(exc, NETWORK_ERRORS):
            raise _Unreachable(endpoint) from None
        return None
    return {str(name): value for name, value in response.get("Attributes", {}).items()}


async def _check_queues(
    sqs: SQSClient, settings: Settings, identity: str, findings: Findings
) -> None:
    try:
        source = await _queue_attributes(sqs, settings.queue_url, identity, findings)
        dlq = await _queue_attributes(sqs, settings.dlq_url, identity, findings)
    except _Unreachable:
        return
    for name, url, attributes in (
        ("source", settings.queue_url, source),
        ("dead-letter", settings.dlq_url, dlq),
    ):
        if attributes is not None and (attributes.get("FifoQueue") == "true") != settings.is_fifo:
            kind = "a FIFO" if settings.is_fifo else "a standard"
            findings.problems.append(f"the {name} queue {url} is not {kind} queue")
    if source is None:
        return
    findings.notes.append(
        f"the source queue's default VisibilityTimeout is {source.get('VisibilityTimeout')} s; "
        f"the worker asks for {settings.visibility_timeout_s:g} s on every receive"
    )
    _check_redrive_policy(source, dlq, settings, findings)
    if dlq is None:
        return
    findings.notes.append(
        f"the DLQ holds about {dlq.get('ApproximateNumberOfMessages', '?')} messages"
    )
    source_retention = int(source.get("MessageRetentionPeriod", "0"))
    dlq_retention = int(dlq.get("MessageRetentionPeriod", "0"))
    if dlq_retention < source_retention:
        findings.warnings.append(
            f"the DLQ keeps messages {dlq_retention} s, less than the source queue's "
            f"{source_retention} s: a message keeps its first enqueue time when it is moved to a "
            "standard DLQ, so it could expire there before anyone looks at it"
        )


def _check_redrive_policy(
    source: dict[str, str], dlq: dict[str, str] | None, settings: Settings, findings: Findings
) -> None:
    raw = source.get("RedrivePolicy")
    if not raw:
        findings.problems.append(
            f"the source queue {settings.queue_url} has no RedrivePolicy: a message that keeps "
            "failing before it is settled (a crash, a kill) would be received forever"
        )
        return
    try:
        policy = json.loads(raw)
        target = str(policy["deadLetterTargetArn"])
        max_receive_count = int(policy["maxReceiveCount"])
    except (ValueError, KeyError, TypeError):
        findings.problems.append(f"the source queue's RedrivePolicy cannot be read: {raw!r}")
        return
    if dlq is not None and target != dlq.get("QueueArn"):
        findings.warnings.append(
            f"the source queue's RedrivePolicy moves messages to {target}, not to the configured "
            f"DLQ {dlq.get('QueueArn')}: dead letters would be split over two queues"
        )
    if max_receive_count < MIN_MAX_RECEIVE_COUNT:
        findings.warnings.append(
            f"the source queue's maxReceiveCount is {max_receive_count}: every receive counts, "
            "including messages given back at shutdown or while Cognito access is paused, so a "
            f"verdict could be dead-lettered untried; {MIN_MAX_RECEIVE_COUNT} or more is safer"
        )
