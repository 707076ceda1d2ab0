"""aiobotocore clients for the benchmark's own calls (queues, enqueueing, probing, bookkeeping)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from types_aiobotocore_cognito_idp.client import CognitoIdentityProviderClient
from types_aiobotocore_sqs.client import SQSClient

from feedback_local.stack import DLQ_RETENTION_S, QueuePair

ACCESS_KEY = "testing"
SECRET_KEY = "testing"
SQS_REGION = "us-east-1"
# The benchmark's own calls must not fail a run over one slow response.
BENCH_CLIENT_CONFIG = AioConfig(retries={"mode": "standard", "max_attempts": 5})
VISIBILITY_TIMEOUT_S = 30  # as the local stack's queues: a failed peer call comes back then


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


async def create_queues(endpoint: str, name: str, max_receive_count: int = 5) -> QueuePair:
    """A standard queue whose RedrivePolicy sends a message to its own DLQ after
    ``max_receive_count`` receives (the local stack's pair, on any SQS endpoint)."""
    async with sqs_client(endpoint) as sqs:
        dlq_url = (
            await sqs.create_queue(
                QueueName=f"{name}-dlq",
                Attributes={"MessageRetentionPeriod": str(DLQ_RETENTION_S)},
            )
        )["QueueUrl"]
        dlq_arn = await _arn(sqs, dlq_url)
        redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}
        url = (
            await sqs.create_queue(
                QueueName=name,
                Attributes={
                    "VisibilityTimeout": str(VISIBILITY_TIMEOUT_S),
                    "RedrivePolicy": json.dumps(redrive),
                },
            )
        )["QueueUrl"]
        return QueuePair(
            url=url, arn=await _arn(sqs, url), dlq_url=dlq_url, dlq_arn=dlq_arn, fifo=False
        )


async def _arn(sqs: SQSClient, url: str) -> str:
    attributes = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return attributes["Attributes"]["QueueArn"]
