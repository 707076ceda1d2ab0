"""Session credentials: the emulator issues them on the container-credentials endpoint, checks
the token of every request signed with them, and can expire them all at once; a real
aiobotocore client on botocore's container provider fetches, loses and recovers them."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from types_aiobotocore_cognito_idp.client import CognitoIdentityProviderClient

from feedback_local.emulator_credentials import SessionIssuer
from feedback_local.emulator_wire import ApiError
from feedback_local.stack import EmulatorControl, LocalStack
from tests.conftest import TEST_CLIENT_CONFIG, aws_session
from tests.support import cognito as api

if TYPE_CHECKING:
    from tests.conftest import SeedPool

# Inside botocore's 15-minute advisory refresh window and outside its 10-minute mandatory one:
# the client asks the endpoint again before every call, and keeps what it holds if that fails.
REFRESH_EVERY_CALL_S = 11 * 60
CONTAINER_KEYS = {"AccessKeyId", "SecretAccessKey", "Token", "Expiration", "RoleArn"}

_Tamper = Callable[[dict[str, str]], dict[str, str]]


async def _fetch(emulator: EmulatorControl) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(emulator.container_credentials_url) as response,
    ):
        body = await response.json() if response.status == 200 else await response.text()
        return response.status, body


def _params(pool: str) -> dict[str, str]:
    return {"UserPoolId": pool, "Username": "alice", "EventId": "ev-1", "FeedbackValue": "Valid"}


def _signing(credentials: dict[str, str]) -> dict[str, str]:
    return {
        "access_key": credentials["AccessKeyId"],
        "secret": credentials["SecretAccessKey"],
        "token": credentials["Token"],
    }


@pytest.fixture
async def container_client(
    local_stack: LocalStack, emulator: EmulatorControl, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[CognitoIdentityProviderClient]:
    """A Cognito client whose only credentials come from the emulator's container endpoint."""
    emulator.configure(session_credentials_lifetime_s=REFRESH_EVERY_CALL_S)
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", emulator.container_credentials_url)
    async with aws_session().create_client(
        "cognito-idp",
        region_name=local_stack.region,
        endpoint_url=local_stack.cognito_endpoint,
        config=TEST_CLIENT_CONFIG,
    ) as client:
        yield client


async def test_the_endpoint_answers_the_container_credentials_json(
    emulator: EmulatorControl,
) -> None:
    emulator.configure(session_credentials_lifetime_s=900)
    before = dt.datetime.now(dt.UTC)

    status, credentials = await _fetch(emulator)

    expiration = dt.datetime.strptime(credentials["Expiration"], "%Y-%m-%dT%H:%M:%S%z")
    assert (status, set(credentials)) == (200, CONTAINER_KEYS)
    assert credentials["AccessKeyId"].startswith("ASIA")
    assert dt.timedelta(seconds=898) <= expiration - before <= dt.timedelta(seconds=901)


async def test_a_client_whose_token_expired_recovers_once_it_fetches_fresh_credentials(
    container_client: CognitoIdentityProviderClient,
    seed_pool: SeedPool,
    emulator: EmulatorControl,
) -> None:
    pool = seed_pool(users={"alice": ["ev-1"]})
    assert [await api.feedback(container_client, pool) for _ in range(2)] == [None, None]

    # Given the endpoint stops rotating and every token issued so far expires
    emulator.configure(container_credentials="stale")
    assert emulator.expire_credentials() >= 1
    # Then the client, handed its old token again, is refused
    assert await api.feedback(container_client, pool) == "ExpiredTokenException"

    # When the endpoint issues fresh credentials again, the next call works
    emulator.configure(container_credentials="fresh")
    assert await api.feedback(container_client, pool) is None
    assert emulator.writes(pool)["total_writes"] == 3


async def test_a_client_keeps_its_expired_token_while_the_endpoint_is_unavailable(
    container_client: CognitoIdentityProviderClient,
    seed_pool: SeedPool,
    emulator: EmulatorControl,
) -> None:
    pool = seed_pool(users={"alice": ["ev-1"]})
    assert await api.feedback(container_client, pool) is None

    emulator.configure(container_credentials="unavailable")
    emulator.expire_credentials()
    refused = await api.feedback(container_client, pool)  # botocore retries the fetch ~3 s
    emulator.configure(container_credentials="fresh")

    assert refused == "ExpiredTokenException"
    assert await api.feedback(container_client, pool) is None
    assert (await _fetch(emulator))[0] == 200


async def test_an_unavailable_endpoint_answers_503(emulator: EmulatorControl) -> None:
    emulator.configure(container_credentials="unavailable")

    assert (await _fetch(emulator))[0] == 503


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (lambda c: {**c, "token": c["token"][:-2] + "xx"}, "UnrecognizedClientException"),
        (lambda c: {**c, "token": "not-a-token"}, "UnrecognizedClientException"),
        (lambda c: {**c, "access_key": "ASIAOTHERKEY0000000"}, "UnrecognizedClientException"),
        (
            lambda c: {**c, "access_key": "testing", "secret": "testing"},
            "UnrecognizedClientException",
        ),
        (lambda c: {**c, "secret": "not-the-secret"}, "InvalidSignatureException"),
        (lambda c: c, None),
    ],
    ids=["forged", "garbage", "other-key", "long-term-key", "wrong-secret", "as-issued"],
)
async def test_a_session_token_must_be_one_the_emulator_issued_for_that_key(
    local_stack: LocalStack,
    seed_pool: SeedPool,
    emulator: EmulatorControl,
    tamper: _Tamper,
    expected: str | None,
) -> None:
    pool = seed_pool(users={"alice": ["ev-1"]})
    _, credentials = await _fetch(emulator)

    answer = await api.call_raw(
        local_stack.cognito_endpoint, _params(pool), **tamper(_signing(credentials))
    )

    body = answer.json()
    assert body.get("__type") == expected
    if expected == "UnrecognizedClientException":
        assert body["message"] == "The security token included in the request is invalid."


async def test_an_expired_token_is_refused_with_aws_message(
    local_stack: LocalStack, seed_pool: SeedPool, emulator: EmulatorControl
) -> None:
    pool = seed_pool(users={"alice": ["ev-1"]})
    _, credentials = await _fetch(emulator)
    emulator.expire_credentials()

    answer = await api.call_raw(
        local_stack.cognito_endpoint, _params(pool), **_signing(credentials)
    )

    assert (answer.status, answer.json()) == (
        403,
        {
            "__type": "ExpiredTokenException",
            "message": "The security token included in the request is expired",
        },
    )
    assert emulator.stats()["errors"] == {"ExpiredTokenException": 1}


def test_a_token_expires_at_the_end_of_its_lifetime() -> None:
    issuer = SessionIssuer()
    issued = issuer.issue(60.0, now=1_000.0)

    assert issuer.secret_for(issued.access_key, issued.token, now=1_059.0) == issued.secret_key
    with pytest.raises(ApiError) as caught:
        issuer.secret_for(issued.access_key, issued.token, now=1_060.0)
    assert caught.value.code == "ExpiredTokenException"


async def test_access_denied_names_a_session_caller_by_its_assumed_role(
    local_stack: LocalStack, seed_pool: SeedPool, emulator: EmulatorControl
) -> None:
    pool = seed_pool(users={"alice": ["ev-1"]})
    _, credentials = await _fetch(emulator)
    emulator.inject("AccessDeniedException", pool=pool)

    answer = await api.call_raw(
        local_stack.cognito_endpoint, _params(pool), **_signing(credentials)
    )

    role_arn = (
        f"arn:aws:sts::123456789012:assumed-role/feedback-worker/{credentials['AccessKeyId']}"
    )
    assert answer.json()["message"].startswith(f"User: {role_arn} is not authorized to perform:")
