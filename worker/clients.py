"""AWS clients that live as long as the process: one session, one SQS client, and one
Cognito client per region, each signed for its own region.

A pool's region is the prefix of its id (``eu-west-1_AbC123``), and Cognito only knows a pool
in its own region, so the client is chosen by the verdict, not by configuration. The SQS
client's region is the one the AWS configuration names, else the one an AWS queue URL names
(see `sqs_region`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import aioboto3
import anyio
import botocore.exceptions
import botocore.session
from botocore.config import Config

from worker.errors import ConfigError

if TYPE_CHECKING:
    from types_aiobotocore_cognito_idp import CognitoIdentityProviderClient
    from types_aiobotocore_sqs import SQSClient
else:
    CognitoIdentityProviderClient = Any
    SQSClient = Any

# Every Cognito error comes back to the worker, which alone decides retries (see fate.py):
# botocore's own retries would hide throttles from the rate limiter and burn attempts unseen.
COGNITO_CONNECT_TIMEOUT_S = 5.0
COGNITO_READ_TIMEOUT_S = 15.0
# A long poll lasts up to 20 s; the read timeout must outlast it.
SQS_CONNECT_TIMEOUT_S = 5.0
SQS_READ_TIMEOUT_S = 35.0
SQS_MAX_ATTEMPTS = 3
# sqs.eu-west-1.amazonaws.com (and .com.cn), or the legacy eu-west-1.queue.amazonaws.com.
_AWS_QUEUE_HOST = re.compile(
    r"(?:sqs(?:-fips)?\.(?P<a>[a-z]{2}(?:-[a-z]+)+-\d+)|(?P<b>[a-z]{2}(?:-[a-z]+)+-\d+)\.queue)"
    r"\.amazonaws\.com(?:\.cn)?"
)
REGION_SETTING = "AWS_REGION"
NON_EXISTENT_QUEUE_CODES = frozenset(
    {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NonExistentQueue"}
)


def region_of_queue_url(url: str) -> str | None:
    """The region an AWS queue URL names (https://sqs.eu-west-1.amazonaws.com/…), else None."""
    match = _AWS_QUEUE_HOST.fullmatch((urlparse(url).hostname or "").lower())
    return None if match is None else match.group("a") or match.group("b")


def configured_region() -> str | None:
    """The region the AWS configuration names: botocore's chain (AWS_DEFAULT_REGION, the
    profile), then AWS_REGION, which the other AWS SDKs read and botocore does not."""
    try:
        region = botocore.session.get_session().get_config_variable("region")
    except botocore.exceptions.BotoCoreError:
        region = None
    return str(region) if region else os.environ.get("AWS_REGION") or None


def sqs_region(queue_url: str) -> str:
    """The region to sign SQS calls for; ConfigError (exit code 2) when there is none."""
    region = configured_region() or region_of_queue_url(queue_url)
    if region is None:
        raise ConfigError(
            REGION_SETTING,
            "no AWS region is set and the queue URL names none: set AWS_REGION "
            "(or AWS_DEFAULT_REGION, or the profile's region)",
        )
    return region


def is_missing_queue(exc: BaseException) -> bool:
    """Whether an SQS call failed because the queue does not exist."""
    if not isinstance(exc, botocore.exceptions.ClientError):
        return False
    error = exc.response.get("Error", {})
    return (
        str(error.get("Code") or "") in NON_EXISTENT_QUEUE_CODES
        or error.get("QueryErrorCode") == "QueueDoesNotExist"
    )


def cognito_config(max_connections: int) -> Config:
    return Config(  # type: ignore[call-arg]  # the stubs lag botocore's Config
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=COGNITO_CONNECT_TIMEOUT_S,
        read_timeout=COGNITO_READ_TIMEOUT_S,
        max_pool_connections=max_connections,
        tcp_keepalive=True,
        # botocore's endpoint overrides would send every region to one endpoint; the only
        # override is FEEDBACK_COGNITO_ENDPOINTS, per region (see worker.config).
        ignore_configured_endpoint_urls=True,
    )


def sqs_config(max_connections: int) -> Config:
    return Config(
        retries={"total_max_attempts": SQS_MAX_ATTEMPTS, "mode": "standard"},
        connect_timeout=SQS_CONNECT_TIMEOUT_S,
        read_timeout=SQS_READ_TIMEOUT_S,
        max_pool_connections=max_connections,
        tcp_keepalive=True,
    )


class Clients:
    """The process's AWS clients, entered once into an AsyncExitStack and closed with it."""

    def __init__(
        self,
        stack: AsyncExitStack,
        *,
        cognito_connections: int,
        cognito_endpoint: Callable[[str], str | None] = lambda _region: None,
        sqs_region: str | None = None,
    ) -> None:
        self._stack = stack
        self._sqs_region = sqs_region
        self._session = aioboto3.Session()
        self._cognito_connections = cognito_connections
        self._cognito_endpoint = cognito_endpoint
        self._cognito: dict[str, CognitoIdentityProviderClient] = {}
        self._sqs: SQSClient | None = None
        # Many tasks may ask for a new region's client at once: create it only once.
        self._lock = anyio.Lock()

    @property
    def sqs_region(self) -> str | None:
        return self._sqs_region

    async def sqs(self) -> SQSClient:
        async with self._lock:
            if self._sqs is None:
                client: SQSClient = await self._stack.enter_async_context(
                    self._session.client(
                        "sqs",
                        region_name=self._sqs_region,
                        config=sqs_config(max_connections=20),
                    )
                )
                self._sqs = client
            return self._sqs

    async def cognito(self, region: str) -> CognitoIdentityProviderClient:
        existing = self._cognito.get(region)
        if existing is not None:
            return existing
        async with self._lock:
            existing = self._cognito.get(region)
            if existing is not None:
                return existing
            client: CognitoIdentityProviderClient = await self._stack.enter_async_context(
                self._session.client(
                    "cognito-idp",
                    region_name=region,
                    endpoint_url=self._cognito_endpoint(region),
                    config=cognito_config(self._cognito_connections),
                )
            )
            self._cognito[region] = client
            return client
