"""What the operator commands share about AWS: opening an SQS client, and putting a failed call
in plain words (what could not be done, and the likely reason), never a botocore traceback."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import aioboto3
import botocore.exceptions
from botocore.config import Config

from worker.clients import NON_EXISTENT_QUEUE_CODES, sqs_config, sqs_region
from worker.outcome import (
    ACCESS_DENIED_CODES,
    AWS_CALL_ERRORS,
    CREDENTIAL_ERRORS,
    NETWORK_ERRORS,
    REFUSED_CREDENTIAL_CODES,
)

if TYPE_CHECKING:
    from types_aiobotocore_sqs.client import SQSClient

__all__ = ["AWS_CALL_ERRORS", "describe_error", "is_aws_endpoint", "open_sqs"]

NO_REGION = "no AWS region is set (AWS_REGION, AWS_DEFAULT_REGION or the profile's region)"
# How errors name the caller when the command did not ask STS who it is.
IDENTITY = "in use here"
# SQS answers for queues encrypted with a key the caller may not use.
_DENIED_CODES = ACCESS_DENIED_CODES | {"AuthorizationError", "KMS.AccessDeniedException"}
_AWS_DOMAINS = (".amazonaws.com", ".amazonaws.com.cn", ".api.aws")


async def open_sqs(
    stack: AsyncExitStack,
    session: aioboto3.Session,
    *,
    connections: int,
    queue_url: str = "",
    config: Config | None = None,
) -> SQSClient:
    """An SQS client entered into `stack`, for the configured region or else the one `queue_url`
    names; no region at all is a ConfigError (exit code 2)."""
    merged = sqs_config(max_connections=connections)
    if config is not None:
        merged = merged.merge(config)
    client: SQSClient = await stack.enter_async_context(
        session.client("sqs", region_name=sqs_region(queue_url), config=merged)
    )
    return client


def describe_error(
    exc: BaseException, *, action: str, resource: str, endpoint: str, identity: str = IDENTITY
) -> str:
    """An AWS call's failure in plain words: what could not be done, and the likely reason."""
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "")
        message = str(error.get("Message") or "")
        if code in NON_EXISTENT_QUEUE_CODES or error.get("QueryErrorCode") == "QueueDoesNotExist":
            return f"queue {resource} does not exist (check its URL, account and region)"
        if code in _DENIED_CODES:
            return f"the identity {identity} may not call {action} on {resource}"
        if code in REFUSED_CREDENTIAL_CODES:
            return f"{endpoint} refused the credentials of {identity} ({code}: {message})"
        return f"{action} on {resource} failed: {code or 'error'}: {message}"
    if isinstance(exc, botocore.exceptions.NoRegionError):
        return NO_REGION
    if isinstance(exc, CREDENTIAL_ERRORS):
        return f"no usable AWS credentials: {exc}"
    if isinstance(exc, NETWORK_ERRORS):
        return f"cannot reach endpoint {endpoint}: {exc}"
    return f"{action} on {resource} failed: {type(exc).__name__}: {exc}"


def is_aws_endpoint(url: str) -> bool:
    host = urlparse(url).hostname or ""
    return host.endswith(_AWS_DOMAINS)
