"""aiobotocore clients for the benchmark's own calls (enqueueing, probing, bookkeeping)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Sequence

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from types_aiobotocore_cognito_idp.client import CognitoIdentityProviderClient
from types_aiobotocore_sqs.client import SQSClient

ACCESS_KEY = "testing"
SECRET_KEY = "testing"
SQS_REGION = "us-east-1"
SQS_BATCH = 10
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


async def send_bodies(sqs: SQSClient, queue_url: str, bodies: Sequence[str]) -> None:
    """Send ``bodies`` in batches of ten; raises if any entry fails."""
    for start in range(0, len(bodies), SQS_BATCH):
        batch = bodies[start : start + SQS_BATCH]
        response = await sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "MessageBody": body} for i, body in enumerate(batch)],
        )
        if failed := response.get("Failed"):
            raise RuntimeError(f"SendMessageBatch failed for {len(failed)} entries: {failed[0]}")


async def queue_depth(sqs: SQSClient, queue_url: str) -> tuple[int, int]:
    """(visible, in flight) messages of a queue, as SQS approximates them."""
    attrs = await sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )
    values = attrs.get("Attributes", {})
    return (
        int(values.get("ApproximateNumberOfMessages", "0")),
        int(values.get("ApproximateNumberOfMessagesNotVisible", "0")),
    )
