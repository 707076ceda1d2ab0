"""AdminListUserAuthEvents in the emulator: the response shape of botocore's model and the API
reference, epoch dates on the wire, pagination that holds while events are logged, and a read
quota of its own."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import botocore.session
import pytest
from botocore.exceptions import ClientError
from botocore.model import ListShape, Shape, StructureShape
from types_aiobotocore_cognito_idp.client import CognitoIdentityProviderClient

from feedback_local.emulator_config import EmulatorConfig
from feedback_local.stack import EmulatorControl, LocalStack
from tests.support import cognito as api
from worker import awsmodel

if TYPE_CHECKING:
    from tests.conftest import SeedPool

LIST_EVENTS = awsmodel.LIST_EVENTS_OPERATION
EVENT_MEMBERS = {
    "EventId",
    "EventType",
    "CreationDate",
    "EventResponse",
    "EventRisk",
    "ChallengeResponses",
    "EventContextData",
}


def _output_shape() -> Shape:
    model = botocore.session.get_session().get_service_model(awsmodel.SERVICE_NAME)
    shape = model.operation_model(LIST_EVENTS).output_shape
    assert shape is not None
    return shape


def _violations(shape: Shape, value: Any, path: str) -> list[str]:
    """Where a wire value breaks the model: unknown members, enums, JSON types."""
    kind = shape.type_name
    if isinstance(shape, StructureShape):
        if not isinstance(value, dict):
            return [f"{path}: not an object"]
        found = [f"{path}.{k}: not in the model" for k in value if k not in shape.members]
        for name, member in shape.members.items():
            if name in value:
                found += _violations(member, value[name], f"{path}.{name}")
        return found
    if isinstance(shape, ListShape):
        if not isinstance(value, list):
            return [f"{path}: not a list"]
        return [
            v
            for i, item in enumerate(value)
            for v in _violations(shape.member, item, f"{path}[{i}]")
        ]
    expected: dict[str, tuple[type, ...]] = {
        "string": (str,),
        "boolean": (bool,),
        "timestamp": (int, float),
        "integer": (int,),
    }
    if not isinstance(value, expected[kind]) or (kind == "timestamp" and isinstance(value, bool)):
        return [f"{path}: {value!r} is not a {kind} on the wire"]
    enum = getattr(shape, "enum", None) or []
    return [f"{path}: {value!r} not in {enum}"] if enum and value not in enum else []


async def _list(url: str, params: dict[str, Any]) -> api.RawAnswer:
    return await api.call_raw(url, params, operation=LIST_EVENTS)


async def test_listed_events_have_the_model_shape_with_epoch_dates_newest_first(
    local_stack: LocalStack, cognito_client: CognitoIdentityProviderClient, seed_pool: SeedPool
) -> None:
    events: list[str | dict[str, Any]] = [{"EventId": "old", "CreationDate": 1_700_000_000}, "new"]
    pool = seed_pool(users={"alice": events})
    before = time.time()
    assert await api.feedback(cognito_client, pool, event_id="old", value="Valid") is None
    after = time.time()

    answer = await _list(local_stack.cognito_endpoint, {"UserPoolId": pool, "Username": "alice"})

    body = answer.json()
    assert _violations(_output_shape(), body, "$") == []
    new, old = body["AuthEvents"]
    assert (new["EventId"], old["EventId"]) == ("new", "old")
    assert set(new) == EVENT_MEMBERS  # no EventFeedback before any feedback
    assert set(old) == EVENT_MEMBERS | {"EventFeedback"}
    assert (old["EventFeedback"]["FeedbackValue"], old["EventFeedback"]["Provider"]) == (
        "Valid",
        "Admin",
    )
    assert before <= old["EventFeedback"]["FeedbackDate"] <= after
    assert old["CreationDate"] == 1_700_000_000


async def test_pages_neither_repeat_nor_skip_events_logged_between_them(
    cognito_client: CognitoIdentityProviderClient, seed_pool: SeedPool, emulator: EmulatorControl
) -> None:
    dated = [{"EventId": f"ev-{i}", "CreationDate": 1_700_000_000 + i} for i in range(4)]
    pool = seed_pool(users={"alice": dated})
    first = await cognito_client.admin_list_user_auth_events(
        UserPoolId=pool, Username="alice", MaxResults=2
    )

    # A newer event is logged before the next page is asked for.
    newer = {"EventId": "ev-new", "CreationDate": 1_800_000_000}
    emulator.seed({"pools": [{"id": pool, "users": {"alice": [newer]}}]})
    second = await cognito_client.admin_list_user_auth_events(
        UserPoolId=pool, Username="alice", MaxResults=2, NextToken=first["NextToken"]
    )

    assert [e["EventId"] for e in first["AuthEvents"]] == ["ev-3", "ev-2"]
    assert [e["EventId"] for e in second["AuthEvents"]] == ["ev-1", "ev-0"]
    assert "NextToken" not in second


@pytest.mark.parametrize("edge", ["low", "high"])
async def test_max_results_takes_the_model_range_and_nothing_outside_it(
    local_stack: LocalStack, seed_pool: SeedPool, edge: str
) -> None:
    low, high = awsmodel.input_integer_bounds(LIST_EVENTS)["MaxResults"]
    assert (low, high) == (0, 60)  # as the API reference documents it
    assert low is not None
    assert high is not None
    pool = seed_pool(users={"alice": ["ev-1"]})
    inside, outside = (low, low - 1) if edge == "low" else (high, high + 1)
    url = local_stack.cognito_endpoint
    params = {"UserPoolId": pool, "Username": "alice"}

    allowed = await _list(url, {**params, "MaxResults": inside})
    refused = await _list(url, {**params, "MaxResults": outside})

    assert allowed.status == 200
    assert (refused.status, refused.json()["__type"]) == (400, "InvalidParameterException")
    assert "'maxResults' failed to satisfy constraint" in refused.json()["message"]


@pytest.mark.parametrize("token", ["not a token", "bm90LWpzb24", "W10="])
async def test_a_next_token_the_emulator_did_not_issue_is_an_invalid_parameter(
    cognito_client: CognitoIdentityProviderClient, seed_pool: SeedPool, token: str
) -> None:
    pool = seed_pool(users={"alice": ["ev-1"]})

    with pytest.raises(ClientError) as caught:
        await cognito_client.admin_list_user_auth_events(
            UserPoolId=pool, Username="alice", NextToken=token
        )

    assert api.code_of(caught.value) == "InvalidParameterException"


def test_the_read_quota_defaults_to_the_user_read_category() -> None:
    assert EmulatorConfig().read_quota_per_region == 120.0


async def test_reads_have_a_quota_of_their_own_counted_apart_in_the_stats(
    cognito_client: CognitoIdentityProviderClient, seed_pool: SeedPool, emulator: EmulatorControl
) -> None:
    emulator.configure(read_quota_per_region=0.01, quota_per_region=0.01, burst=1, per_user_limit=0)
    pool = seed_pool(users={"alice": ["ev-1"]})

    await cognito_client.admin_list_user_auth_events(UserPoolId=pool, Username="alice")
    with pytest.raises(ClientError) as caught:
        await cognito_client.admin_list_user_auth_events(UserPoolId=pool, Username="alice")
    write = await api.feedback(cognito_client, pool)
    categories = emulator.stats()["categories"]

    assert api.code_of(caught.value) == "TooManyRequestsException"
    assert write is None
    assert (categories["read"]["calls"], categories["read"]["throttles"]) == (2, 1)
    assert (categories["write"]["calls"], categories["write"]["throttles"]) == (1, 0)
