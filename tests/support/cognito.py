"""Talking to the Cognito emulator in tests: one feedback call through a real client, and raw
signed requests for what a real client would refuse to send (or to read an answer as it is)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from types_aiobotocore_cognito_idp.client import CognitoIdentityProviderClient

from feedback_local.stack import TEST_ACCESS_KEY, TEST_SECRET_KEY
from worker import awsmodel

REGION = "us-east-1"
TARGET_PREFIX = "AWSCognitoIdentityProviderService"
JSON_11 = "application/x-amz-json-1.1"
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"


def code_of(error: ClientError) -> str:
    return str(error.response["Error"]["Code"])


async def send(client: CognitoIdentityProviderClient, params: dict[str, Any]) -> str | None:
    """Send one AdminUpdateAuthEventFeedback; the error code, or None on success."""
    try:
        await client.admin_update_auth_event_feedback(**params)
    except ClientError as error:
        return code_of(error)
    return None


async def feedback(
    client: CognitoIdentityProviderClient,
    pool_id: str,
    username: str = "alice",
    event_id: str = "ev-1",
    value: str = "Invalid",
) -> str | None:
    params = {
        "UserPoolId": pool_id,
        "Username": username,
        "EventId": event_id,
        "FeedbackValue": value,
    }
    return await send(client, params)


def sign(
    url: str,
    operation: str,
    body: bytes,
    *,
    region: str = REGION,
    access_key: str = TEST_ACCESS_KEY,
    secret: str = TEST_SECRET_KEY,
    token: str | None = None,
    service: str = "cognito-idp",
    at: dt.datetime | None = None,
) -> dict[str, str]:
    """Headers of a request signed with botocore's SigV4 signer, optionally at another time."""
    request = AWSRequest(
        method="POST",
        url=url + "/",
        data=body,
        headers={"Content-Type": JSON_11, "X-Amz-Target": f"{TARGET_PREFIX}.{operation}"},
    )
    timestamp = (at or dt.datetime.now(dt.UTC)).strftime(AMZ_DATE_FORMAT)
    request.context["timestamp"] = timestamp
    request.headers["X-Amz-Date"] = timestamp
    if token is not None:
        request.headers["X-Amz-Security-Token"] = token
    signer = SigV4Auth(Credentials(access_key, secret, token), service, region)
    signature = signer.signature(
        signer.string_to_sign(request, signer.canonical_request(request)), request
    )
    signed = signer.signed_headers(signer.headers_to_sign(request))
    request.headers["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{timestamp[:8]}/{region}/{service}/"
        f"aws4_request, SignedHeaders={signed}, Signature={signature}"
    )
    return dict(request.headers.items())


@dataclass(frozen=True)
class RawAnswer:
    status: int
    content_type: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def post_raw(url: str, headers: Mapping[str, str], body: bytes) -> RawAnswer:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/", data=body, headers=dict(headers)) as response,
    ):
        return RawAnswer(response.status, response.content_type, await response.read())


async def post(url: str, headers: Mapping[str, str], body: bytes) -> tuple[int, Any]:
    """A raw request's status and JSON body."""
    answer = await post_raw(url, headers, body)
    return answer.status, answer.json()


async def call_raw(
    url: str,
    params: Mapping[str, Any],
    operation: str = awsmodel.FEEDBACK_OPERATION,
    **signing: Any,
) -> RawAnswer:
    """Sign and send one call with `params` as its JSON body; the answer as it came."""
    body = json.dumps(params).encode()
    return await post_raw(url, sign(url, operation, body, **signing), body)
