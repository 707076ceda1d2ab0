"""Staged faults: injected errors scoped to a pool, a region or an operation, the older global
fault fractions, and IAM's denial, each answered in the shape real AWS (or the load balancer in
front of it) sends."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

from aiohttp import web

from feedback_local.emulator_config import EmulatorConfig, InjectedError
from feedback_local.emulator_credentials import ACCOUNT_ID
from feedback_local.emulator_sigv4 import SERVICE, Caller
from feedback_local.emulator_wire import (
    ACCESS_DENIED,
    ADDON_NOT_ENABLED,
    DROPPED_CONNECTION,
    FORBIDDEN,
    INTERNAL_ERROR,
    INVALID_PARAMETER,
    LIMIT_EXCEEDED,
    NOT_AUTHORIZED,
    OPERATION_NOT_ENABLED,
    RESOURCE_NOT_FOUND,
    TOO_MANY_REQUESTS,
    UNTYPED_ANSWERS,
    UNTYPED_THROTTLE,
    USER_NOT_FOUND,
    ApiError,
    untyped_response,
    untyped_throttle_response,
)

INTERNAL_ERROR_MESSAGE = "Internal server error."
# What each injected JSON error says (AccessDenied's message is built per call).
_MESSAGES = {
    INVALID_PARAMETER: "Invalid parameter.",
    RESOURCE_NOT_FOUND: "User pool {pool} does not exist.",
    TOO_MANY_REQUESTS: "Too many requests",
    NOT_AUTHORIZED: "Not authorized to perform this operation.",
    USER_NOT_FOUND: "User does not exist.",
    ADDON_NOT_ENABLED: "Threat protection features are not enabled for this user pool.",
    INTERNAL_ERROR: INTERNAL_ERROR_MESSAGE,
    OPERATION_NOT_ENABLED: "This operation is not enabled for user pool {pool} in this Region.",
    FORBIDDEN: "Request not allowed by the web ACL associated with user pool {pool}.",
    LIMIT_EXCEEDED: "Attempt limit exceeded, please try after some time.",
}


def pool_arn(region: str, pool_id: str | None) -> str:
    return f"arn:aws:{SERVICE}:{region}:{ACCOUNT_ID}:userpool/{pool_id or '*'}"


def access_denied(caller: Caller, operation: str, pool_id: str | None) -> ApiError:
    """IAM's answer when no policy lets `caller` call `operation` on the pool."""
    action = f"{SERVICE}:{operation}"
    return ApiError(
        ACCESS_DENIED,
        f"User: {caller.arn} is not authorized to perform: {action} on resource: "
        f"{pool_arn(caller.region, pool_id)} because no identity-based policy allows the "
        f"{action} action",
    )


def pick(
    rules: Sequence[InjectedError],
    fired: Counter[int],
    operation: str,
    region: str,
    pool_id: str | None,
) -> str | None:
    """The code to answer, or None: the first rule matching the call decides, with its odds.

    `fired` counts the answers each rule (by its index) gave since the rules were set.
    """
    for index, rule in enumerate(rules):
        if not rule.matches(operation, region, pool_id):
            continue
        if rule.times is not None and fired[index] >= rule.times:
            continue
        if random.random() >= rule.fraction:
            return None
        fired[index] += 1
        return rule.code
    return None


def injected_response(
    code: str, caller: Caller, operation: str, pool_id: str | None
) -> web.Response:
    """The answer for an injected `code`, as AWS (or a load balancer) sends it."""
    if code in UNTYPED_ANSWERS:
        return untyped_response(code)
    if code == ACCESS_DENIED:
        return access_denied(caller, operation, pool_id).response()
    message = _MESSAGES.get(code, code).format(pool=pool_id or "")
    return ApiError(code, message).response()


def legacy_fault(request: web.Request, config: EmulatorConfig) -> tuple[str, web.Response] | None:
    """The global fractions (fault_internal_error, ...): one draw split into three ranges keeps
    each kind at its configured fraction. Returns the outcome's name and the answer."""
    draw = random.random()
    if draw < config.fault_internal_error:
        return INTERNAL_ERROR, ApiError(INTERNAL_ERROR, INTERNAL_ERROR_MESSAGE).response()
    draw -= config.fault_internal_error
    if draw < config.fault_untyped_throttle:
        return UNTYPED_THROTTLE, untyped_throttle_response()
    draw -= config.fault_untyped_throttle
    if draw < config.fault_drop_connection:
        if request.transport is not None:
            request.transport.abort()  # aiohttp then drops the response it cannot send
        return DROPPED_CONNECTION, web.Response()
    return None
