"""Staged faults in the emulator: errors injected for one pool, one region or one operation,
answered through real aiobotocore clients in the shapes AWS (or its load balancer) uses."""

from __future__ import annotations

from typing import TYPE_CHECKING

import botocore.session
import pytest
from botocore.exceptions import ClientError
from types_aiobotocore_cognito_idp.client import CognitoIdentityProviderClient

from feedback_local.emulator_client import EmulatorControlError, injected_error
from feedback_local.emulator_config import injectable_codes
from feedback_local.stack import EmulatorControl
from tests.support import cognito as api
from worker import awsmodel

if TYPE_CHECKING:
    from tests.conftest import CognitoClientFactory, SeedPool

FEEDBACK = awsmodel.FEEDBACK_OPERATION
LIST_EVENTS = awsmodel.LIST_EVENTS_OPERATION
REGION = "us-east-1"
OTHER_REGION = "eu-west-1"
NO_LIMITS = {"quota_per_region": 0, "per_user_limit": 0, "read_quota_per_region": 0}
# Listed for AdminUpdateAuthEventFeedback by newer models than the one botocore bundles here.
NEWER_MODEL_CODES = {"OperationNotEnabledException"}


def _model_error_codes() -> set[str]:
    """The operation's errors, walked from botocore's bundled model directly."""
    model = botocore.session.get_session().get_service_model(awsmodel.SERVICE_NAME)
    return {shape.name for shape in model.operation_model(FEEDBACK).error_shapes}


async def _list_code(client: CognitoIdentityProviderClient, pool: str) -> str | None:
    try:
        await client.admin_list_user_auth_events(UserPoolId=pool, Username="alice")
    except ClientError as error:
        return api.code_of(error)
    return None


def test_every_error_of_the_operation_model_and_the_iam_and_edge_errors_can_be_injected() -> None:
    extra = {"AccessDeniedException", "ForbiddenException", "LimitExceededException"}
    untyped = {"HTTP503", "HTTP502", "HTTP429"}

    assert injectable_codes() == _model_error_codes() | NEWER_MODEL_CODES | extra | untyped


@pytest.mark.parametrize(
    "code", sorted(_model_error_codes() | NEWER_MODEL_CODES | {"ForbiddenException"})
)
async def test_an_injected_error_reaches_botocore_with_its_code_and_is_counted(
    cognito_client: CognitoIdentityProviderClient,
    seed_pool: SeedPool,
    emulator: EmulatorControl,
    code: str,
) -> None:
    pool = seed_pool(users={"alice": ["ev-1"]})
    emulator.inject(code, pool=pool)

    outcome = await api.feedback(cognito_client, pool)

    assert outcome == code
    assert emulator.stats()["errors"] == {code: 1}
    assert emulator.writes(pool)["total_writes"] == 0


async def test_access_denied_for_one_pool_names_the_caller_the_action_and_the_pool(
    cognito_client: CognitoIdentityProviderClient, seed_pool: SeedPool, emulator: EmulatorControl
) -> None:
    denied = seed_pool(users={"alice": ["ev-1"]})
    allowed = seed_pool(users={"alice": ["ev-1"]})
    emulator.inject("AccessDeniedException", pool=denied)

    with pytest.raises(ClientError) as caught:
        await cognito_client.admin_update_auth_event_feedback(
            UserPoolId=denied, Username="alice", EventId="ev-1", FeedbackValue="Valid"
        )

    action = f"cognito-idp:{FEEDBACK}"
    assert caught.value.response["Error"]["Message"] == (
        f"User: arn:aws:iam::123456789012:user/testing is not authorized to perform: {action} "
        f"on resource: arn:aws:cognito-idp:{REGION}:123456789012:userpool/{denied} "
        f"because no identity-based policy allows the {action} action"
    )
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert await api.feedback(cognito_client, allowed) is None


async def test_a_denied_access_key_is_refused_on_the_pool_it_named(
    cognito_client: CognitoIdentityProviderClient, seed_pool: SeedPool, emulator: EmulatorControl
) -> None:
    pool = seed_pool(users={"alice": ["ev-1"]})
    emulator.configure(denied_access_keys=["testing"])

    with pytest.raises(ClientError) as caught:
        await cognito_client.admin_list_user_auth_events(UserPoolId=pool, Username="alice")

    message = caught.value.response["Error"]["Message"]
    assert api.code_of(caught.value) == "AccessDeniedException"
    assert f"perform: cognito-idp:{LIST_EVENTS} on resource:" in message
    assert f":userpool/{pool} because" in message


@pytest.mark.parametrize("code", ["InternalErrorException", "HTTP503"])
async def test_a_region_outage_fails_every_call_signed_for_that_region_and_no_other(
    cognito_client_factory: CognitoClientFactory,
    seed_pool: SeedPool,
    emulator: EmulatorControl,
    code: str,
) -> None:
    down = seed_pool(OTHER_REGION, users={"alice": ["ev-1"]})
    up = seed_pool(REGION, users={"alice": ["ev-1"]})
    emulator.inject(code, region=OTHER_REGION)
    client_down = await cognito_client_factory(OTHER_REGION)
    client_up = await cognito_client_factory(REGION)

    expected = "503" if code == "HTTP503" else code
    assert await api.feedback(client_down, down) == expected
    assert await _list_code(client_down, down) == expected
    assert await api.feedback(client_up, up) is None
    assert emulator.stats()["regions"][OTHER_REGION]["errors"] == {code: 2}


@pytest.mark.parametrize(
    ("kind", "code"), [("HTTP503", "503"), ("HTTP502", "502"), ("HTTP429", "429")]
)
async def test_untyped_answers_reach_botocore_as_bare_statuses(
    cognito_client: CognitoIdentityProviderClient,
    seed_pool: SeedPool,
    emulator: EmulatorControl,
    kind: str,
    code: str,
) -> None:
    pool = seed_pool(users={"alice": ["ev-1"]})
    emulator.inject(kind)

    with pytest.raises(ClientError) as caught:
        await cognito_client.admin_update_auth_event_feedback(
            UserPoolId=pool, Username="alice", EventId="ev-1", FeedbackValue="Valid"
        )

    assert api.code_of(caught.value) == code
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == int(code)


async def test_the_first_matching_rule_decides(
    cognito_client: CognitoIdentityProviderClient, seed_pool: SeedPool, emulator: EmulatorControl
) -> None:
    special = seed_pool(users={"alice": ["ev-1"]})
    other = seed_pool(users={"alice": ["ev-1"]})
    emulator.configure(
        injected_errors=[
            injected_error("NotAuthorizedException", pool=special),
            injected_error("InternalErrorException", region=REGION),
        ]
    )

    assert await api.feedback(cognito_client, special) == "NotAuthorizedException"
    assert await api.feedback(cognito_client, other) == "InternalErrorException"


async def test_a_rule_for_one_operation_spares_the_other(
    cognito_client: CognitoIdentityProviderClient, seed_pool: SeedPool, emulator: EmulatorControl
) -> None:
    pool = seed_pool(users={"alice": ["ev-1"]})
    emulator.inject("UserNotFoundException", operation=FEEDBACK)

    assert await api.feedback(cognito_client, pool) == "UserNotFoundException"
    assert await _list_code(cognito_client, pool) is None


async def test_a_fraction_answers_the_error_to_part_of_the_calls(
    cognito_client: CognitoIdentityProviderClient, seed_pool: SeedPool, emulator: EmulatorControl
) -> None:
    pool = seed_pool(users={"alice": ["ev-1"]})
    emulator.configure(**NO_LIMITS)
    emulator.inject("TooManyRequestsException", fraction=0.5, pool=pool)

    outcomes = [await api.feedback(cognito_client, pool) for _ in range(40)]

    assert set(outcomes) == {None, "TooManyRequestsException"}
    assert emulator.writes(pool)["total_writes"] == outcomes.count(None)


async def test_a_rule_with_times_is_spent_after_that_many_answers_and_set_afresh(
    cognito_client: CognitoIdentityProviderClient, seed_pool: SeedPool, emulator: EmulatorControl
) -> None:
    pool = seed_pool(users={"alice": ["ev-1"]})
    emulator.configure(**NO_LIMITS)
    emulator.inject("InternalErrorException", pool=pool, times=2)
    emulator.inject("UserNotFoundException", pool=pool, times=1)

    outcomes = [await api.feedback(cognito_client, pool) for _ in range(5)]
    # Spent rules match nothing, so the next rule's turn comes, then no rule at all.
    assert outcomes == [
        "InternalErrorException",
        "InternalErrorException",
        "UserNotFoundException",
        None,
        None,
    ]
    # Setting the rules again starts their counts afresh.
    emulator.inject("HTTP429", region=OTHER_REGION)
    assert await api.feedback(cognito_client, pool) == "InternalErrorException"


def test_rules_are_checked_and_replaced_as_a_whole(emulator: EmulatorControl) -> None:
    emulator.inject("InternalErrorException", region=OTHER_REGION)
    emulator.inject("HTTP429", fraction=0.25)
    assert [r["code"] for r in emulator.config()["injected_errors"]] == [
        "InternalErrorException",
        "HTTP429",
    ]

    replaced = emulator.configure(injected_errors=[injected_error("HTTP502", pool="us-east-1_X")])
    assert replaced["injected_errors"] == [
        {
            "code": "HTTP502",
            "fraction": 1.0,
            "pool": "us-east-1_X",
            "region": None,
            "operation": None,
            "times": None,
        }
    ]
    assert emulator.clear_injected_errors()["injected_errors"] == []
    for bad, named in (
        ({"code": "NoSuchException"}, "NoSuchException"),
        ({"code": "HTTP503", "fraction": 0}, "above 0"),
        ({"code": "HTTP503", "fraction": 1.5}, "between 0 and 1"),
        ({"code": "HTTP503", "pools": "x"}, "pools"),
        ({"code": "HTTP503", "operation": "AdminGetUser"}, "operation"),
        ({"code": "HTTP503", "times": 0}, "times"),
        ({"code": "HTTP503", "times": 1.5}, "times"),
        ({"code": "HTTP503", "times": True}, "times"),
    ):
        with pytest.raises(EmulatorControlError, match=named):
            emulator.configure(injected_errors=[bad])
    assert emulator.config()["injected_errors"] == []
