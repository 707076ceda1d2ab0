"""aiobotocore clients for the benchmark's own calls (enqueueing, probing, bookkeeping)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from types_aiobotocore_cognito_idp.client import CognitoIdentityProviderClient
from types_aiobotocore_sqs.client import SQSClient

ACCESS_KEY = "testing"
SECRET_KEY = "testing"
SQS_REGION = "us-east-1"
# The benchmark's own calls must not fail a run over one slow response.
BENCH_CLIENT_CONFIG = AioConfig(retries={"mode": "standard", "max_attempts": 5})


def _session() -> AioSession:
    # A bare session: nothing from ~/.aws or the caller's AWS_* variables leaks in.
    session = AioSession()
    session.set_config_variable("config_file", os.devnull)
    session.set_config_variable("credentials_file", os.devnull)
    return session


@contextlib.asynccontextmanager
async def sqs_client(endpoint: str) -> AsyncIterator[SQSClient]:
    async with _session().create_client(
        "sqs",
        region_name=SQS_REGION,
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=BENCH_CLIENT_CONFIG,
    ) as client:
        yield client


@contextlib.asynccontextmanager
async def cognito_client(
    endpoint: str, region: str, config: AioConfig | None = None
) -> AsyncIterator[CognitoIdentityProviderClient]:
    async with _session().create_client(
        "cognito-idp",
        region_name=region,
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=config or BENCH_CLIENT_CONFIG,
    ) as client:
        yield client
