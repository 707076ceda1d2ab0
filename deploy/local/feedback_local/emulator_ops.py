"""The emulated Cognito operations: model-driven validation, quotas, lookups, the write."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any

from feedback_local.emulator_quota import Quotas
from feedback_local.emulator_sigv4 import Caller
from feedback_local.emulator_state import Pool, Store, User
from feedback_local.emulator_wire import (
    ADDON_NOT_ENABLED,
    INVALID_PARAMETER,
    RESOURCE_NOT_FOUND,
    SERIALIZATION,
    TOO_MANY_REQUESTS,
    USER_NOT_FOUND,
    ApiError,
)
from worker import awsmodel

LIST_PAGE_DEFAULT = 60  # AdminListUserAuthEvents: "Returns 60 events if MaxResults is 0 or absent"


def _camel(member: str) -> str:
    return member[:1].lower() + member[1:]


def _broken_rule(constraint: awsmodel.FieldConstraint, value: str) -> str:
    """AWS's wording for the first rule `value` breaks (the model's own check decided it does)."""
    if constraint.min_length is not None and len(value) < constraint.min_length:
        return f"Member must have length greater than or equal to {constraint.min_length}"
    if constraint.max_length is not None and len(value) > constraint.max_length:
        return f"Member must have length less than or equal to {constraint.max_length}"
    if constraint.enum:
        return f"Member must satisfy enum value set: [{', '.join(constraint.enum)}]"
    return f"Member must satisfy regular expression pattern: {constraint.pattern}"


def validate(operation: str, body: dict[str, Any]) -> None:
    """Check `body` against the service model; raise InvalidParameterException listing every
    broken member in AWS's "N validation errors detected" form (sensitive values hidden)."""
    problems: list[str] = []
    for name, constraint in awsmodel.input_constraints(operation).items():
        value = body.get(name)
        if value is None:
            if constraint.required:
                problems.append(
                    f"Value null at '{_camel(name)}' failed to satisfy constraint: "
                    "Member must not be null"
                )
            continue
        if not isinstance(value, str):
            raise ApiError(SERIALIZATION, f"Expected a string for member '{name}'")
        if constraint.violation(value) is not None:
            shown = "" if constraint.sensitive else f" '{value}'"
            problems.append(
                f"Value{shown} at '{_camel(name)}' failed to satisfy constraint: "
                f"{_broken_rule(constraint, value)}"
            )
    for name, (low, high) in awsmodel.input_integer_bounds(operation).items():
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise ApiError(SERIALIZATION, f"Expected an integer for member '{name}'")
        if low is not None and value < low:
            rule = f"Member must have value greater than or equal to {low}"
        elif high is not None and value > high:
            rule = f"Member must have value less than or equal to {high}"
        else:
            continue
        problems.append(f"Value '{value}' at '{_camel(name)}' failed to satisfy constraint: {rule}")
    if problems:
        count = len(problems)
        raise ApiError(
            INVALID_PARAMETER,
            f"{count} validation error{'s' if count > 1 else ''} detected: {'; '.join(problems)}",
        )


class CognitoService:
    """AdminUpdateAuthEventFeedback and AdminListUserAuthEvents over a Store.

    Order of checks: region quota (writes and reads each their own), validation, per-user
    write quota, pool (in the caller's signing region), threat protection, user, event.
    """

    def __init__(self, store: Store, quotas: Quotas) -> None:
        self._store = store
        self._quotas = quotas
        self._operations: dict[str, Callable[[Caller, dict[str, Any], float], dict[str, Any]]] = {
            awsmodel.FEEDBACK_OPERATION: self._update_feedback,
            awsmodel.LIST_EVENTS_OPERATION: self._list_events,
        }

    def supports(self, operation: str) -> bool:
        return operation in self._operations

    def call(self, operation: str, caller: Caller, body: Any, now: float) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(SERIALIZATION, "The request body must be a JSON object")
        return self._operations[operation](caller, body, now)

    def _pool(self, caller: Caller, pool_id: str) -> Pool:
        pool = self._store.pools.get(pool_id)
        # A pool exists only in its own region: signed for another one, AWS cannot see it.
        if pool is None or pool.region != caller.region:
            raise ApiError(RESOURCE_NOT_FOUND, f"User pool {pool_id} does not exist.")
        if not pool.threat_protection:
            raise ApiError(
                ADDON_NOT_ENABLED,
                "Threat protection features are not enabled for this user pool.",
            )
        return pool

    @staticmethod
    def _user(pool: Pool, username: str) -> User:
        user = pool.users.get(username)
        if user is None:
            raise ApiError(USER_NOT_FOUND, "User does not exist.")
        return user

    def _update_feedback(self, caller: Caller, body: dict[str, Any], now: float) -> dict[str, Any]:
        if not self._quotas.take_region(caller.region, now):
            raise ApiError(self._quotas.write_throttle_code(), "Too many requests")
        validate(awsmodel.FEEDBACK_OPERATION, body)
        pool_id, username = body["UserPoolId"], body["Username"]
        if not self._quotas.take_user(pool_id, username, now):
            raise ApiError(self._quotas.write_throttle_code(), "Too many requests for this user")
        user = self._user(self._pool(caller, pool_id), username)
        event = user.events.get(body["EventId"])
        if event is None:
            raise ApiError(RESOURCE_NOT_FOUND, f"Auth event {body['EventId']} does not exist.")
        self._store.record_feedback(event, body["FeedbackValue"])
        return {}

    def _list_events(self, caller: Caller, body: dict[str, Any], now: float) -> dict[str, Any]:
        if not self._quotas.take_read(caller.region, now):
            raise ApiError(TOO_MANY_REQUESTS, "Too many requests")
        validate(awsmodel.LIST_EVENTS_OPERATION, body)
        pool = self._pool(caller, body["UserPoolId"])
        user = self._user(pool, body["Username"])
        page_size = body.get("MaxResults") or LIST_PAGE_DEFAULT
        events = sorted(user.events.values(), key=lambda e: e.order_key, reverse=True)
        if (token := body.get("NextToken")) is not None:
            after = _decode_token(token, pool.pool_id, user.username)
            events = [e for e in events if e.order_key < after]
        page = events[:page_size]
        result: dict[str, Any] = {"AuthEvents": [e.to_api() for e in page]}
        if len(events) > page_size:
            result["NextToken"] = _encode_token(page[-1].order_key, pool.pool_id, user.username)
        return result


# The token names the last event listed, so events logged between two pages shift nothing.
def _encode_token(after: tuple[float, str], pool_id: str, username: str) -> str:
    raw = json.dumps([after[0], after[1], pool_id, username], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode_token(token: str, pool_id: str, username: str) -> tuple[float, str]:
    try:
        date, event_id, token_pool, token_user = json.loads(base64.urlsafe_b64decode(token))
        if (token_pool, token_user) == (pool_id, username) and isinstance(event_id, str):
            return float(date), event_id
    except (ValueError, TypeError, binascii.Error, UnicodeError):
        pass
    raise ApiError(INVALID_PARAMETER, "Invalid NextToken.")
