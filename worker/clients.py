"""AWS clients that live as long as the process: one session, one SQS client, and one
Cognito client per region, each signed for its own region.

A pool's region is the prefix of its id (``eu-west-1_AbC123``), and Cognito only knows a pool
in its own region, so the client is chosen by the verdict, not by configuration.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import aioboto3
import anyio
from botocore.config import Config

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
        self._session = aioboto3.Session()
        self._cognito_connections = cognito_connections
        self._cognito_endpoint = cognito_endpoint
        self._sqs_region = sqs_region
        self._cognito: dict[str, CognitoIdentityProviderClient] = {}
        self._sqs: SQSClient | None = None
        # Many tasks may ask for a new region's client at once: create it only once.
        self._lock = anyio.Lock()

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
