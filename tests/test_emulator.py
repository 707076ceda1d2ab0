"""The Cognito emulator, driven over HTTP by real aiobotocore clients (and raw signed requests
where a real client would refuse to send what is tested)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import botocore
import pytest
from aiobotocore.config import AioConfig
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from types_aiobotocore_cognito_idp.client import CognitoIdentityProviderClient

from feedback_local.emulator import Emulator
from feedback_local.emulator_client import (
    AsyncEmulatorControl,
    EmulatorControl,
    EmulatorControlError,
)
from feedback_local.emulator_config import ConfigValueError, EmulatorConfig
from feedback_local.stack import LocalStack
from tests.support import cognito as api
from worker import awsmodel

if TYPE_CHECKING:
    from tests.conftest import CognitoClientFactory, SeedPool

FEEDBACK = awsmodel.FEEDBACK_OPERATION
LIST_EVENTS = awsmodel.LIST_EVENTS_OPERATION
REGION = "us-east-1"
OTHER_REGION = "eu-west-1"
NO_LIMITS = {"quota_per_region": 0, "per_user_limit": 0}


# -- the happy path and the readback ---------------------------------------------------------


async def test_feedback_is_read_back_with_value_provider_and_date(
    cognito_client: CognitoIdentityProviderClient, seed_pool: SeedPool
) -> None:
    pool = seed_pool(users={"alice": ["ev-1"]})
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)

    assert await api.feedback(cognito_client, pool, value="Invalid") is None

    page = await cognito_client.admin_list_user_auth_events(UserPoolId=pool, Username="alice")
    (event,) = page["AuthEvents"]
    feedback = event["EventFeedback"]
    assert (event["EventId"], feedback["FeedbackValue"], feedback["Provider"]) == (
        "ev-1",
        "Invalid",
        "Admin",
    )
    assert feedback["FeedbackDate"] >= before
    assert "NextToken" not in page


async def test_the_last_write_wins_and_every_write_is_counted(
    cognito_client: CognitoIdentityProviderClient, seed_pool: SeedPool, emulator: EmulatorControl
) -> None:
    pool = seed_pool(users={"alice": ["ev-1", "ev-2"]})

    for value in ("Valid", "Invalid", "Valid"):
        assert await api.feedback(cognito_client, pool, value=value) is None

    writes = {row["event_id"]: row for row in emulator.writes(pool)["events"]}
    assert (writes["ev-1"]["writes"], writes["ev-1"]["feedback_value"]) == (3, "Valid")
    assert (writes["ev-2"]["writes"], writes["ev-2"]["feedback_value"]) == (0, None)
    page = await cognito_client.admin_list_user_auth_events(UserPoolId=pool, Username="alice")
    values = {
        e["EventId"]: e.get("EventFeedback", {}).get("FeedbackValue") for e in page["AuthEvents"]
    }
    assert values == {"ev-1": "Valid", "ev-2": None}


async def test_events_are_listed_newest_first_across_pages(
    cognito_client: CognitoIdentityProviderClient, seed_pool: SeedPool
) -> None:
    events = [{"EventId": f"ev-{i}", "CreationDate": 1_700_000_000 + i} for i in range(5)]
    pool = seed_pool(users={"alice": events})

    seen: list[str] = []
    pages = 0
    kwargs: dict[str, Any] = {}
    while True:
        page = await cognito_client.admin_list_user_auth_events(
            UserPoolId=pool, Username="alice", MaxResults=2, **kwargs
        )
        pages += 1
        seen += [e["EventId"] for e in page["AuthEvents"]]
        if "NextToken" not in page:
            break
        kwargs = {"NextToken": page["NextToken"]}

    assert (pages, seen) == (3, [f"ev-{i}" for i in reversed(range(5))])


@pytest.mark.parametrize("max_results", [None, 0])
async def test_a_page_holds_sixty_events_when_max_results_is_zero_or_absent(
    cognito_client: CognitoIdentityProviderClient, seed_pool: SeedPool, max_results: int | None
) -> None:
    pool = seed_pool(users={"alice": [f"ev-{i}" for i in range(61)]})
    extra: dict[str, Any] = {} if max_results is None else {"MaxResults": max_results}

    page = await cognito_client.admin_list_user_auth_events(
        UserPoolId=pool, Username="alice", **extra
    )

    assert len(page["AuthEvents"]) == 60
    assert "NextToken" in page


async def test_a_next_token_of_another_user_is_refused(
    cognito_client: CognitoIdentityProviderClient, seed_pool: SeedPool
) -> None:
    pool = seed_pool(users={"alice": ["a-1", "a-2"], "bob": ["b-1", "b-2"]})
    page = await cognito_client.admin_list_user_auth_events(
        UserPoolId=pool, Username="alice", MaxResults=1
    )

    with pytest.raises(ClientError) as caught:
        await cognito_client.admin_list_user_auth_events(
            UserPoolId=pool, Username="bob", NextToken=page["NextToken"]
        )
    assert api.code_of(caught.value) == "InvalidParameterException"


# -- documented errors -----------------------------------------------------------------------


_DOCUMENTED_ERRORS = [
    (operation, change, expected)
    for operation in (FEEDBACK, LIST_EVENTS)
    for change, expected in (
        ({"pool": "us-east-1_Unknown0"}, "ResourceNotFoundException"),
        ({"username": "nobody"}, "UserNotFoundException"),
        ({"event_id": "no-such-event"}, "ResourceNotFoundException"),
        ({"threat_protection": False}, "UserPoolAddOnNotEnabledException"),
    )
    if operation == FEEDBACK or "event_id" not in change  # listing names no event
]


@pytest.mark.parametrize(("operation", "change", "expected"), _DOCUMENTED_ERRORS)
async def test_documented_errors_are_answered_with_their_codes(
    cognito_client: CognitoIdentityProviderClient,
    seed_pool: SeedPool,
    operation: str,
    change: dict[str, Any],
    expected: str,
) -> None:
    pool = seed_pool(
        users={"alice": ["ev-1"]}, threat_protection=change.get("threat_protection", True)
    )
    pool = change.get("pool", pool)
    username = change.get("username", "alice")

    if operation == FEEDBACK:
        code = await api.feedback(cognito_client, pool, username, change.get("event_id", "ev-1"))
    else:
        with pytest.raises(ClientError) as caught:
            await cognito_client.admin_list_user_auth_events(UserPoolId=pool, Username=username)
        code = api.code_of(caught.value)

    assert code == expected
    assert expected in awsmodel.operation_error_codes(operation)


async def test_a_pool_exists_only_in_the_region_of_its_id(
    cognito_client_factory: CognitoClientFactory, seed_pool: SeedPool
) -> None:
    pool = seed_pool(OTHER_REGION, users={"alice": ["ev-1"]})
    home = await cognito_client_factory(OTHER_REGION)
    elsewhere = await cognito_client_factory(REGION)

    assert await api.feedback(elsewhere, pool) == "ResourceNotFoundException"
    assert await api.feedback(home, pool) is None


async def test_an_operation_the_emulator_lacks_is_an_unknown_operation(
    cognito_client: CognitoIdentityProviderClient,
) -> None:
    with pytest.raises(ClientError) as caught:
        await cognito_client.admin_get_user(UserPoolId="us-east-1_AbC", Username="alice")
    assert api.code_of(caught.value) == "UnknownOperationException"


# -- validation from the service model -------------------------------------------------------

_VALID = {
    "UserPoolId": "us-east-1_NoSuchPool",
    "Username": "alice",
    "EventId": "ev-1",
    "FeedbackValue": "Valid",
}
_ASCII_WORD = "A-Za-z0-9_"
_ALLOWED: dict[str, st.SearchStrategy[str]] = {
    # Hand-read from the model's patterns, so the model loader is checked too.
    "UserPoolId": st.from_regex(rf"[{_ASCII_WORD}-]+_[0-9a-zA-Z]+", fullmatch=True).filter(
        lambda v: len(v) <= 55
    ),
    "Username": st.text(
        st.characters(categories=("L", "M", "S", "N", "P")), min_size=1, max_size=128
    ),
    "EventId": st.from_regex(rf"[{_ASCII_WORD}+-]{{1,50}}", fullmatch=True),
    "FeedbackValue": st.sampled_from(["Valid", "Invalid"]),
}
_FORBIDDEN_CHAR = st.characters(categories=("Zs", "Cc", "Co"))


def _with_char(
    valid: st.SearchStrategy[str], chars: st.SearchStrategy[str]
) -> st.SearchStrategy[str]:
    return st.tuples(valid, chars, st.integers(min_value=0)).map(
        lambda t: t[0][: t[2] % (len(t[0]) + 1)] + t[1] + t[0][t[2] % (len(t[0]) + 1) :]
    )


_FORBIDDEN: dict[str, st.SearchStrategy[str]] = {
    "UserPoolId": st.one_of(
        st.from_regex(r"[A-Za-z0-9-]+", fullmatch=True),  # no "_" before the id part
        _with_char(_ALLOWED["UserPoolId"], st.sampled_from(" ./:é")),
        st.from_regex(r"[a-z]{50}_[A-Za-z]{5,20}", fullmatch=True),  # longer than 55
    ),
    "Username": st.one_of(
        _with_char(_ALLOWED["Username"], _FORBIDDEN_CHAR).filter(lambda v: len(v) <= 128),
        st.text(st.characters(categories=("L", "N")), min_size=129, max_size=200),
    ),
    "EventId": st.one_of(
        _with_char(_ALLOWED["EventId"], st.sampled_from(" ./=@é")),
        st.from_regex(r"[a-z0-9]{51,70}", fullmatch=True),
    ),
    "FeedbackValue": st.text(min_size=1).filter(lambda v: v not in ("Valid", "Invalid")),
}


def _cases(strategies: dict[str, st.SearchStrategy[str]]) -> st.SearchStrategy[tuple[str, str]]:
    # Drawn before the test body runs: a draw inside an async test cannot stop it cleanly.
    return st.sampled_from(sorted(strategies)).flatmap(
        lambda field: st.tuples(st.just(field), strategies[field])
    )


_HYPOTHESIS = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def no_limits(emulator: EmulatorControl) -> None:
    emulator.configure(**NO_LIMITS)


@pytest.mark.usefixtures("no_limits")
@_HYPOTHESIS
@given(case=_cases(_ALLOWED))
async def test_values_the_model_allows_pass_validation(
    cognito_client: CognitoIdentityProviderClient, case: tuple[str, str]
) -> None:
    field, value = case
    assert awsmodel.input_constraints(FEEDBACK)[field].violation(value) is None

    assert await api.send(cognito_client, {**_VALID, field: value}) != "InvalidParameterException"


@pytest.mark.usefixtures("no_limits")
@_HYPOTHESIS
@given(case=_cases(_FORBIDDEN))
async def test_values_the_model_forbids_are_invalid_parameters_naming_the_field(
    cognito_client: CognitoIdentityProviderClient, case: tuple[str, str]
) -> None:
    field, value = case
    assert awsmodel.input_constraints(FEEDBACK)[field].violation(value) is not None

    params: dict[str, Any] = {**_VALID, field: value}
    with pytest.raises(ClientError) as caught:
        await cognito_client.admin_update_auth_event_feedback(**params)

    assert api.code_of(caught.value) == "InvalidParameterException"
    message = caught.value.response["Error"]["Message"]
    member = f"'{field[0].lower()}{field[1:]}'"
    # AWS's wording; a member the model marks sensitive (Username) never has its value echoed.
    sensitive = awsmodel.input_constraints(FEEDBACK)[field].sensitive
    assert (f"Value at {member}" if sensitive else f"Value '{value}' at {member}") in message


async def test_a_missing_required_member_is_an_invalid_parameter(local_stack: LocalStack) -> None:
    body = json.dumps({"UserPoolId": "us-east-1_AbC", "Username": "alice"}).encode()
    url = local_stack.cognito_endpoint

    status, answer = await api.post(url, api.sign(url, FEEDBACK, body), body)

    assert (status, answer["__type"]) == (400, "InvalidParameterException")
    assert answer["message"].startswith("2 validation errors detected")
    assert "'eventId'" in answer["message"]
    assert "'feedbackValue'" in answer["message"]


async def test_max_results_above_the_model_bound_is_an_invalid_parameter(
    cognito_client: CognitoIdentityProviderClient, seed_pool: SeedPool
) -> None:
    pool = seed_pool(users={"alice": ["ev-1"]})
    with pytest.raises(ClientError) as caught:
        await cognito_client.admin_list_user_auth_events(
            UserPoolId=pool, Username="alice", MaxResults=61
        )
    assert api.code_of(caught.value) == "InvalidParameterException"


# -- authentication --------------------------------------------------------------------------


async def test_an_unsigned_request_is_missing_its_authentication_token(
    cognito_client_factory: CognitoClientFactory, seed_pool: SeedPool
) -> None:
    pool = seed_pool(users={"alice": ["ev-1"]})
    client = await cognito_client_factory(config=AioConfig(signature_version=botocore.UNSIGNED))
    assert await api.feedback(client, pool) == "MissingAuthenticationTokenException"


async def test_a_wrong_secret_is_an_invalid_signature(
    cognito_client_factory: CognitoClientFactory, seed_pool: SeedPool, emulator: EmulatorControl
) -> None:
    pool = seed_pool(users={"alice": ["ev-1"]})
    client = await cognito_client_factory(secret_key="not-the-secret")

    assert await api.feedback(client, pool) == "InvalidSignatureException"
    assert emulator.writes(pool)["total_writes"] == 0


_Tamper = Callable[[dict[str, str], bytes], tuple[dict[str, str], bytes]]


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h, b: (h, b.replace(b"Invalid", b"Valid")),
        lambda h, b: ({**h, "X-Amz-Target": f"{api.TARGET_PREFIX}.{LIST_EVENTS}"}, b),
    ],
    ids=["body", "target"],
)
async def test_a_request_changed_after_signing_is_an_invalid_signature(
    local_stack: LocalStack, seed_pool: SeedPool, tamper: _Tamper
) -> None:
    pool = seed_pool(users={"alice": ["ev-1"]})
    body = json.dumps({**_VALID, "UserPoolId": pool, "FeedbackValue": "Invalid"}).encode()
    url = local_stack.cognito_endpoint
    headers, sent = tamper(api.sign(url, FEEDBACK, body), body)

    status, answer = await api.post(url, headers, sent)

    assert (status, answer["__type"]) == (400, "InvalidSignatureException")
    assert "does not match" in answer["message"]


@pytest.mark.parametrize(
    ("signing", "expected"),
    [
        ({"service": "sqs"}, "InvalidSignatureException"),
        ({"at": dt.datetime.now(dt.UTC) - dt.timedelta(minutes=20)}, "InvalidSignatureException"),
        ({"at": dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)}, "UserNotFoundException"),
    ],
    ids=["other-service", "expired", "slightly-skewed"],
)
async def test_the_signature_scope_and_age_are_checked(
    local_stack: LocalStack, seed_pool: SeedPool, signing: dict[str, Any], expected: str
) -> None:
    pool = seed_pool(users={})
    body = json.dumps({**_VALID, "UserPoolId": pool}).encode()
    url = local_stack.cognito_endpoint

    status, answer = await api.post(url, api.sign(url, FEEDBACK, body, **signing), body)

    assert (status, answer["__type"]) == (400, expected)


async def test_unknown_and_denied_access_keys_are_refused(
    cognito_client_factory: CognitoClientFactory, seed_pool: SeedPool, emulator: EmulatorControl
) -> None:
    pool = seed_pool(users={"alice": ["ev-1"]})
    emulator.configure(
        known_keys={"testing": "testing", "AKDENIED": "s3cret"}, denied_access_keys=["AKDENIED"]
    )
    unknown = await cognito_client_factory(access_key="AKUNKNOWN", secret_key="x")
    denied = await cognito_client_factory(access_key="AKDENIED", secret_key="s3cret")
    wrong_secret_of_denied = await cognito_client_factory(access_key="AKDENIED", secret_key="x")

    assert await api.feedback(unknown, pool) == "UnrecognizedClientException"
    assert await api.feedback(denied, pool) == "AccessDeniedException"
    assert await api.feedback(wrong_secret_of_denied, pool) == "InvalidSignatureException"


# -- quotas ----------------------------------------------------------------------------------


async def _burst(
    client: CognitoIdentityProviderClient, calls: list[tuple[str, str]], pool: str
) -> list[str | None]:
    return list(await asyncio.gather(*(api.feedback(client, pool, u, e) for u, e in calls)))


async def test_a_burst_of_three_buckets_is_throttled(
    cognito_client: CognitoIdentityProviderClient, seed_pool: SeedPool, emulator: EmulatorControl
) -> None:
    # A slow refill: the burst is over long before one more token could drip in.
    emulator.configure(quota_per_region=0.2, burst=5, per_user_limit=0)
    pool = seed_pool(users={"alice": ["ev-1"]})

    outcomes = await _burst(cognito_client, [("alice", "ev-1")] * 15, pool)

    successes = outcomes.count(None)
    assert 5 <= successes < 15
    assert outcomes.count("TooManyRequestsException") == 15 - successes


async def test_calls_paced_under_the_quota_are_never_throttled(
    cognito_client: CognitoIdentityProviderClient, seed_pool: SeedPool, emulator: EmulatorControl
) -> None:
    # A one-token bucket refilled at 40/s; each call starts >= 50 ms after the last one ended.
    emulator.configure(quota_per_region=40, burst=1, per_user_limit=0)
    pool = seed_pool(users={"alice": ["ev-1"]})

    outcomes = []
    for _ in range(8):
        outcomes.append(await api.feedback(cognito_client, pool))
        await asyncio.sleep(0.05)

    assert outcomes == [None] * 8


async def test_regions_have_separate_quotas(
    cognito_client_factory: CognitoClientFactory, seed_pool: SeedPool, emulator: EmulatorControl
) -> None:
    emulator.configure(quota_per_region=0.01, burst=1, per_user_limit=0)
    here = seed_pool(REGION, users={"alice": ["ev-1"]})
    there = seed_pool(OTHER_REGION, users={"alice": ["ev-1"]})
    client_here = await cognito_client_factory(REGION)
    client_there = await cognito_client_factory(OTHER_REGION)

    assert await api.feedback(client_here, here) is None
    assert await api.feedback(client_here, here) == "TooManyRequestsException"
    assert await api.feedback(client_there, there) is None


async def test_reads_take_nothing_from_the_write_quota(
    cognito_client: CognitoIdentityProviderClient, seed_pool: SeedPool, emulator: EmulatorControl
) -> None:
    emulator.configure(quota_per_region=0.01, burst=1, per_user_limit=0)
    pool = seed_pool(users={"alice": ["ev-1"]})

    for _ in range(5):
        await cognito_client.admin_list_user_auth_events(UserPoolId=pool, Username="alice")

    assert await api.feedback(cognito_client, pool) is None
    assert await api.feedback(cognito_client, pool) == "TooManyRequestsException"


async def test_one_user_is_throttled_while_as_many_users_are_not(
    cognito_client: CognitoIdentityProviderClient, seed_pool: SeedPool, emulator: EmulatorControl
) -> None:
    emulator.configure(quota_per_region=0, per_user_limit=2)
    users = {f"user-{i}": ["ev-1"] for i in range(12)}
    pool = seed_pool(users=users)

    one_user = await _burst(cognito_client, [("user-0", "ev-1")] * 12, pool)
    many_users = await _burst(cognito_client, [(u, "ev-1") for u in users if u != "user-0"], pool)

    assert one_user.count("TooManyRequestsException") >= 1
    assert many_users == [None] * 11


async def test_a_share_of_the_quota_s_throttles_can_be_answered_untyped(
    cognito_client: CognitoIdentityProviderClient, seed_pool: SeedPool, emulator: EmulatorControl
) -> None:
    pool = seed_pool(users={"alice": ["ev-1"]})

    # Each configure refills the bucket: one call passes, then every call is refused.
    emulator.configure(quota_per_region=0.01, burst=1, per_user_limit=0, quota_throttles_untyped=1)
    all_untyped = [await api.feedback(cognito_client, pool) for _ in range(3)]
    emulator.configure(quota_throttles_untyped=0.5)
    half = {await api.feedback(cognito_client, pool) for _ in range(41)}

    assert all_untyped == [None, "400", "400"]  # no __type: botocore's code is the status
    assert half == {None, "400", "TooManyRequestsException"}
    assert emulator.stats()["throttles"] == 2 + 40


def test_the_untyped_share_of_throttles_is_a_fraction() -> None:
    with pytest.raises(ConfigValueError, match="quota_throttles_untyped is a fraction"):
        EmulatorConfig().updated({"quota_throttles_untyped": 1.5})


# -- faults and latency ----------------------------------------------------------------------


async def test_an_injected_internal_error_is_an_http_500_and_writes_nothing(
    cognito_client: CognitoIdentityProviderClient, seed_pool: SeedPool, emulator: EmulatorControl
) -> None:
    emulator.configure(fault_internal_error=1.0)
    pool = seed_pool(users={"alice": ["ev-1"]})

    with pytest.raises(ClientError) as caught:
        await cognito_client.admin_update_auth_event_feedback(
            UserPoolId=pool, Username="alice", EventId="ev-1", FeedbackValue="Valid"
        )

    assert api.code_of(caught.value) == "InternalErrorException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert emulator.writes(pool)["total_writes"] == 0


async def test_an_injected_untyped_throttle_is_a_bare_rate_exceeded_body(
    local_stack: LocalStack,
    cognito_client: CognitoIdentityProviderClient,
    seed_pool: SeedPool,
    emulator: EmulatorControl,
) -> None:
    emulator.configure(fault_untyped_throttle=1.0)
    pool = seed_pool(users={"alice": ["ev-1"]})
    body = json.dumps({**_VALID, "UserPoolId": pool}).encode()
    url = local_stack.cognito_endpoint

    raw = await api.post(url, api.sign(url, FEEDBACK, body), body)
    code = await api.feedback(cognito_client, pool)

    assert raw == (400, {"message": "Rate exceeded"})
    assert code == "400"  # botocore's code when the body has no __type


async def test_an_injected_drop_closes_the_connection_without_an_answer(
    cognito_client: CognitoIdentityProviderClient, seed_pool: SeedPool, emulator: EmulatorControl
) -> None:
    emulator.configure(fault_drop_connection=1.0)
    pool = seed_pool(users={"alice": ["ev-1"]})

    with pytest.raises(ConnectionClosedError):
        await api.feedback(cognito_client, pool)
    assert emulator.stats()["errors"] == {"DroppedConnection": 1}


async def test_fault_fractions_split_the_calls_and_spare_the_reads(
    cognito_client: CognitoIdentityProviderClient, seed_pool: SeedPool, emulator: EmulatorControl
) -> None:
    emulator.configure(fault_internal_error=0.5, fault_untyped_throttle=0.5, **NO_LIMITS)
    pool = seed_pool(users={"alice": ["ev-1"]})

    outcomes = [await api.feedback(cognito_client, pool) for _ in range(40)]
    page = await cognito_client.admin_list_user_auth_events(UserPoolId=pool, Username="alice")

    assert set(outcomes) == {"InternalErrorException", "400"}
    assert "EventFeedback" not in page["AuthEvents"][0]


async def test_latency_longer_than_the_read_timeout_times_the_client_out(
    cognito_client_factory: CognitoClientFactory,
) -> None:
    # An emulator of its own: the slow answer it still owes must not land in another test.
    async with Emulator(EmulatorConfig(latency_s=2.0)) as emu:
        emu.store.seed({"pools": [{"id": "us-east-1_Slow", "users": {"alice": ["ev-1"]}}]})
        config = AioConfig(read_timeout=0.2, retries={"total_max_attempts": 1})
        client = await cognito_client_factory(endpoint_url=emu.url, config=config)

        with pytest.raises(ReadTimeoutError):
            await api.feedback(client, "us-east-1_Slow")


# -- stats and control -----------------------------------------------------------------------


async def test_stats_count_calls_successes_throttles_and_errors_per_region(
    cognito_client_factory: CognitoClientFactory, seed_pool: SeedPool, emulator: EmulatorControl
) -> None:
    emulator.configure(quota_per_region=0.01, burst=2, per_user_limit=0)
    pool = seed_pool(OTHER_REGION, users={"alice": ["ev-1"]})
    client = await cognito_client_factory(OTHER_REGION)

    outcomes = [await api.feedback(client, pool) for _ in range(3)]
    outcomes.append(await api.feedback(client, pool, username="nobody"))
    stats = emulator.stats()

    assert outcomes == [None, None, "TooManyRequestsException", "TooManyRequestsException"]
    expected = {
        "calls": 4,
        "successes": 2,
        "throttles": 2,
        "errors": {"TooManyRequestsException": 2},
    }
    assert {k: stats[k] for k in expected} == expected
    assert stats["regions"] == {OTHER_REGION: expected}
    assert stats["operations"][FEEDBACK] == expected
    assert sum(s["calls"] for s in stats["per_second"]) == 4
    assert emulator.stats() == stats  # reading changes nothing


def test_config_takes_partial_updates_and_reset_restores_the_defaults(
    emulator: EmulatorControl,
) -> None:
    defaults = emulator.config()

    updated = emulator.configure(quota_per_region=3, fault_drop_connection=0.1)

    assert updated == {**defaults, "quota_per_region": 3.0, "fault_drop_connection": 0.1}
    assert emulator.reset()["config"] == defaults
    with pytest.raises(EmulatorControlError, match="no_such_setting"):
        emulator.configure(no_such_setting=1)
    with pytest.raises(EmulatorControlError, match="more than 1"):
        emulator.configure(fault_internal_error=0.6, fault_drop_connection=0.6)


async def test_seeding_merges_users_events_and_the_threat_protection_flag(
    cognito_client: CognitoIdentityProviderClient, seed_pool: SeedPool, emulator: EmulatorControl
) -> None:
    pool = seed_pool(users={"alice": ["ev-1"]})
    assert await api.feedback(cognito_client, pool) is None

    emulator.seed({"pools": [{"id": pool, "users": {"alice": ["ev-2"], "bob": ["ev-3"]}}]})
    assert [
        await api.feedback(cognito_client, pool, u, e)
        for u, e in (("alice", "ev-2"), ("bob", "ev-3"))
    ] == [None, None]
    emulator.seed({"pools": [{"id": pool, "threat_protection": False}]})

    assert await api.feedback(cognito_client, pool) == "UserPoolAddOnNotEnabledException"
    rows = emulator.writes(pool)["events"]
    assert sorted((r["event_id"], r["writes"]) for r in rows) == [
        ("ev-1", 1),
        ("ev-2", 1),
        ("ev-3", 1),
    ]


def test_a_malformed_seed_is_refused_and_changes_nothing(emulator: EmulatorControl) -> None:
    bad = {"pools": [{"id": "us-east-1_Good1", "users": {}}, {"id": "no-underscore"}]}

    with pytest.raises(EmulatorControlError, match="UserPoolId"):
        emulator.seed(bad)
    assert emulator.writes("us-east-1_Good1")["events"] == []


async def test_reset_keeps_the_pools_unless_told_to_clear_them() -> None:
    async with Emulator() as emu, AsyncEmulatorControl(emu.url) as control:
        await control.seed({"pools": [{"id": "us-east-1_X", "users": {}}]})
        await control.reset()
        kept = (await control.health())["pools"]
        await control.reset(clear_data=True)

        assert (kept, (await control.health())["pools"]) == (1, 0)


def test_the_command_line_prints_one_url_line_serves_the_seed_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps({"pools": [{"id": "eu-west-1_Cli", "users": {"a": ["e"]}}]}))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "feedback_local.emulator_cli",
            "--port",
            "0",
            "--seed",
            str(seed),
            "--quota-per-region",
            "7",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("EMULATOR_URL=http://127.0.0.1:")
        control = EmulatorControl(line.removeprefix("EMULATOR_URL="))
        assert control.config()["quota_per_region"] == 7.0
        assert [r["event_id"] for r in control.writes("eu-west-1_Cli")["events"]] == ["e"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert proc.stdout.read() == ""
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
