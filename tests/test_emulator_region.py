"""An emulator bound to one region, as a regional or VPC endpoint is: a request signed for any
other region is refused before anything else is looked at."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from botocore.exceptions import ClientError

from feedback_local.stack import EmulatorControl, LocalStack
from tests.support import cognito as api

if TYPE_CHECKING:
    from tests.conftest import CognitoClientFactory, SeedPool

BOUND = "eu-west-1"
OTHER = "us-east-1"


async def test_a_bound_emulator_refuses_a_credential_scoped_to_another_region(
    cognito_client_factory: CognitoClientFactory, seed_pool: SeedPool, emulator: EmulatorControl
) -> None:
    here = seed_pool(BOUND, users={"alice": ["ev-1"]})
    elsewhere = seed_pool(OTHER, users={"alice": ["ev-1"]})
    emulator.bind_region(BOUND)
    client_here = await cognito_client_factory(BOUND)
    client_elsewhere = await cognito_client_factory(OTHER)

    with pytest.raises(ClientError) as caught:
        await client_elsewhere.admin_update_auth_event_feedback(
            UserPoolId=elsewhere, Username="alice", EventId="ev-1", FeedbackValue="Valid"
        )

    assert api.code_of(caught.value) == "InvalidSignatureException"
    assert caught.value.response["Error"]["Message"] == (
        f"Credential should be scoped to a valid region, not '{OTHER}'."
    )
    assert await api.feedback(client_here, here) is None
    assert emulator.stats()["errors"] == {"InvalidSignatureException": 1}


async def test_unbinding_lets_every_region_in_again(
    cognito_client_factory: CognitoClientFactory, seed_pool: SeedPool, emulator: EmulatorControl
) -> None:
    pool = seed_pool(OTHER, users={"alice": ["ev-1"]})
    client = await cognito_client_factory(OTHER)
    emulator.bind_region(BOUND)
    refused = await api.feedback(client, pool)

    emulator.bind_region(None)

    assert refused == "InvalidSignatureException"
    assert await api.feedback(client, pool) is None


async def test_a_second_emulator_can_be_started_bound_to_a_region(
    local_stack: LocalStack, seed_pool: SeedPool
) -> None:
    args = ["--bound-region", BOUND]
    with LocalStack(sqs_endpoint=local_stack.sqs_endpoint, emulator_args=args) as regional:
        regional.emulator.seed({"pools": [{"id": f"{BOUND}_Regional", "users": {"a": ["e"]}}]})
        params = {
            "UserPoolId": f"{BOUND}_Regional",
            "Username": "a",
            "EventId": "e",
            "FeedbackValue": "Valid",
        }
        url = regional.cognito_endpoint
        home = await api.call_raw(url, params, region=BOUND)
        away = await api.call_raw(url, params, region=OTHER)
        config = regional.emulator.config()

    assert config["bound_region"] == BOUND
    assert (home.status, away.status, away.json()["__type"]) == (
        200,
        400,
        "InvalidSignatureException",
    )
