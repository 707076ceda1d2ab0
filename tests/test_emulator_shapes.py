"""Every answer the emulator can give, held to the status and body shape the Amazon Cognito API
reference documents for it (tests/data/cognito_error_shapes.json, with its sources), not to
values these tests chose."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from feedback_local.emulator_config import injectable_codes
from feedback_local.emulator_wire import ERROR_CODES, UNTYPED_ANSWERS, UNTYPED_THROTTLE
from feedback_local.stack import EmulatorControl, LocalStack
from tests.support import cognito as api
from worker import awsmodel

if TYPE_CHECKING:
    from tests.conftest import SeedPool

SHAPES = json.loads((Path(__file__).parent / "data" / "cognito_error_shapes.json").read_text())
FEEDBACK = awsmodel.FEEDBACK_OPERATION

_Trigger = Callable[[str, str, EmulatorControl], Awaitable[api.RawAnswer]]


def _params(pool: str) -> dict[str, str]:
    return {"UserPoolId": pool, "Username": "alice", "EventId": "ev-1", "FeedbackValue": "Valid"}


async def _injected(code: str, url: str, pool: str, emulator: EmulatorControl) -> api.RawAnswer:
    emulator.inject(code, pool=pool)
    return await api.call_raw(url, _params(pool))


async def _expired_token(url: str, pool: str, emulator: EmulatorControl) -> api.RawAnswer:
    async with (
        aiohttp.ClientSession() as session,
        session.get(emulator.container_credentials_url) as response,
    ):
        credentials = await response.json()
    emulator.expire_credentials()
    return await api.call_raw(
        url,
        _params(pool),
        access_key=credentials["AccessKeyId"],
        secret=credentials["SecretAccessKey"],
        token=credentials["Token"],
    )


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


async def _untyped_throttle(url: str, pool: str, emulator: EmulatorControl) -> api.RawAnswer:
    emulator.configure(fault_untyped_throttle=1.0)
    return await api.call_raw(url, _params(pool))


# How to make the emulator answer each code that is not simply injected.
_TRIGGERS: dict[str, _Trigger] = {
    "ExpiredTokenException": _expired_token,
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
    UNTYPED_THROTTLE: _untyped_throttle,
}


async def _answer(code: str, url: str, pool: str, emulator: EmulatorControl) -> api.RawAnswer:
    trigger = _TRIGGERS.get(code)
    if trigger is not None:
        return await trigger(url, pool, emulator)
    return await _injected(code, url, pool, emulator)


def test_the_record_covers_exactly_the_codes_the_emulator_can_answer() -> None:
    assert set(SHAPES["errors"]) == ERROR_CODES
    assert set(SHAPES["untyped"]) == UNTYPED_ANSWERS | {UNTYPED_THROTTLE}
    assert injectable_codes() <= ERROR_CODES | UNTYPED_ANSWERS
    assert set(_TRIGGERS) | injectable_codes() >= ERROR_CODES | set(SHAPES["untyped"])


@pytest.mark.parametrize("code", sorted(ERROR_CODES))
async def test_every_error_has_the_documented_status_and_body_members(
    local_stack: LocalStack, seed_pool: SeedPool, emulator: EmulatorControl, code: str
) -> None:
    recorded: dict[str, Any] = SHAPES["errors"][code]
    pool = seed_pool(users={"alice": ["ev-1"]})

    answer = await _answer(code, local_stack.cognito_endpoint, pool, emulator)

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

    answer = await _answer(kind, local_stack.cognito_endpoint, pool, emulator)

    assert answer.status == recorded["status"]
    assert b"__type" not in answer.body
    if recorded["content_type"] is None:
        assert answer.body == b""
    else:
        assert answer.content_type == recorded["content_type"]
