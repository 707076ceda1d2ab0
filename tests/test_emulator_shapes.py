"""Every answer the emulator can give, held to the status and body shape the Amazon Cognito API
reference documents for it (tests/data/cognito_error_shapes.json, with its sources), not to
values these tests chose."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from feedback_local.emulator_wire import ERROR_CODES, UNTYPED_THROTTLE
from feedback_local.stack import EmulatorControl, LocalStack
from tests.support import cognito as api
from worker import awsmodel

if TYPE_CHECKING:
    from tests.conftest import SeedPool

SHAPES = json.loads((Path(__file__).parent / "data" / "cognito_error_shapes.json").read_text())
FEEDBACK = awsmodel.FEEDBACK_OPERATION

_Trigger = Callable[[str, str, EmulatorControl], Awaitable[api.RawAnswer]]


def _params(pool: str, **changes: str) -> dict[str, str]:
    params = {"UserPoolId": pool, "Username": "alice", "EventId": "ev-1", "FeedbackValue": "Valid"}
    return {**params, **changes}


async def _configured(
    url: str, pool: str, emulator: EmulatorControl, **config: Any
) -> api.RawAnswer:
    emulator.configure(**config)
    return await api.call_raw(url, _params(pool))


async def _unsigned(url: str, pool: str, emulator: EmulatorControl) -> api.RawAnswer:
    headers = {"X-Amz-Target": f"{api.TARGET_PREFIX}.{FEEDBACK}", "Content-Type": api.JSON_11}
    return await api.post_raw(url, headers, json.dumps(_params(pool)).encode())


async def _incomplete(url: str, pool: str, emulator: EmulatorControl) -> api.RawAnswer:
    body = json.dumps(_params(pool)).encode()
    headers = {**api.sign(url, FEEDBACK, body), "Authorization": "AWS4-HMAC-SHA256 Credential=x"}
    return await api.post_raw(url, headers, body)


async def _not_json(url: str, pool: str, emulator: EmulatorControl) -> api.RawAnswer:
    body = b"{not json"
    return await api.post_raw(url, api.sign(url, FEEDBACK, body), body)


async def _throttled(url: str, pool: str, emulator: EmulatorControl) -> api.RawAnswer:
    emulator.configure(quota_per_region=0.01, burst=1)
    await api.call_raw(url, _params(pool))
    return await api.call_raw(url, _params(pool))


async def _add_on_off(url: str, pool: str, emulator: EmulatorControl) -> api.RawAnswer:
    emulator.seed({"pools": [{"id": pool, "threat_protection": False}]})
    return await api.call_raw(url, _params(pool))


# How to make the emulator answer each code.
_TRIGGERS: dict[str, _Trigger] = {
    "InvalidParameterException": lambda url, pool, _: api.call_raw(
        url, _params(pool, FeedbackValue="valid")
    ),
    "ResourceNotFoundException": lambda url, pool, _: api.call_raw(
        url, _params(pool, EventId="no-such-event")
    ),
    "UserNotFoundException": lambda url, pool, _: api.call_raw(
        url, _params(pool, Username="nobody")
    ),
    "UserPoolAddOnNotEnabledException": _add_on_off,
    "TooManyRequestsException": _throttled,
    "InternalErrorException": lambda url, pool, emu: _configured(
        url, pool, emu, fault_internal_error=1.0
    ),
    "AccessDeniedException": lambda url, pool, emu: _configured(
        url, pool, emu, denied_access_keys=["testing"]
    ),
    "UnrecognizedClientException": lambda url, pool, _: api.call_raw(
        url, _params(pool), access_key="AKUNKNOWN", secret="x"
    ),
    "InvalidSignatureException": lambda url, pool, _: api.call_raw(
        url, _params(pool), secret="not-the-secret"
    ),
    "UnknownOperationException": lambda url, pool, _: api.call_raw(
        url, _params(pool), operation="AdminGetUser"
    ),
    "MissingAuthenticationTokenException": _unsigned,
    "IncompleteSignatureException": _incomplete,
    "SerializationException": _not_json,
    UNTYPED_THROTTLE: lambda url, pool, emu: _configured(
        url, pool, emu, fault_untyped_throttle=1.0
    ),
}


def test_the_record_covers_exactly_the_codes_the_emulator_can_answer() -> None:
    assert set(SHAPES["errors"]) == ERROR_CODES
    assert set(SHAPES["untyped"]) == {UNTYPED_THROTTLE}
    assert set(_TRIGGERS) == ERROR_CODES | set(SHAPES["untyped"])


@pytest.mark.parametrize("code", sorted(ERROR_CODES))
async def test_every_error_has_the_documented_status_and_body_members(
    local_stack: LocalStack, seed_pool: SeedPool, emulator: EmulatorControl, code: str
) -> None:
    recorded: dict[str, Any] = SHAPES["errors"][code]
    pool = seed_pool(users={"alice": ["ev-1"]})

    answer = await _TRIGGERS[code](local_stack.cognito_endpoint, pool, emulator)

    body = answer.json()
    members = set(body) - {"__type"}
    assert (answer.status, body["__type"]) == (recorded["status"], code)
    assert set(recorded["required"]) <= members <= {*recorded["required"], *recorded["optional"]}
    assert answer.content_type == api.JSON_11


@pytest.mark.parametrize("kind", sorted(SHAPES["untyped"]))
async def test_untyped_answers_have_their_status_and_no_error_type(
    local_stack: LocalStack, seed_pool: SeedPool, emulator: EmulatorControl, kind: str
) -> None:
    recorded: dict[str, Any] = SHAPES["untyped"][kind]
    pool = seed_pool(users={"alice": ["ev-1"]})

    answer = await _TRIGGERS[kind](local_stack.cognito_endpoint, pool, emulator)

    assert answer.status == recorded["status"]
    assert b"__type" not in answer.body
    if recorded["content_type"] is None:
        assert answer.body == b""
    else:
        assert answer.content_type == recorded["content_type"]
