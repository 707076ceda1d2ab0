"""The emulated data: user pools (region-scoped by their id), users and their auth events.

Seed shape (``POST /_emulator/seed``; merges into what is there)::

    {"pools": [{"id": "eu-west-1_AbC123",           # region prefix, then "_", then [0-9a-zA-Z]+
                "threat_protection": true,          # default; false: UserPoolAddOnNotEnabled
                "users": {"alice": ["ev-1",          # an event id, with default attributes
                                    {"EventId": "ev-2", "EventType": "SignIn",
                                     "EventResponse": "Pass", "CreationDate": 1700000000.0,
                                     "EventRisk": {"RiskDecision": "NoRisk", "RiskLevel": "Low"}}],
                          "bob": []}}]}

Events keep the AdminListUserAuthEvents output field names (EventType, CreationDate,
EventResponse, EventRisk, ChallengeResponses, EventContextData; defaults fill what is left out);
seeding an event again replaces its attributes but keeps its feedback and write count.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from worker import awsmodel

FEEDBACK_PROVIDER_ADMIN = "Admin"
DEFAULT_THREAT_PROTECTION = True  # the case this project exists for: a Plus pool with it on
_DEFAULT_EVENT: dict[str, Any] = {
    "EventType": "SignIn",
    "EventResponse": "Pass",
    "EventRisk": {
        "RiskDecision": "NoRisk",
        "RiskLevel": "Low",
        "CompromisedCredentialsDetected": False,
    },
    "ChallengeResponses": [{"ChallengeName": "Password", "ChallengeResponse": "Success"}],
    "EventContextData": {
        "IpAddress": "192.0.2.1",
        "DeviceName": "Other, Other",
        "City": "Seattle",
        "Country": "United States",
    },
}
_EVENT_FIELDS = frozenset(
    {
        "EventType",
        "CreationDate",
        "EventResponse",
        "EventRisk",
        "ChallengeResponses",
        "EventContextData",
    }
)


class SeedError(ValueError):
    """The seed spec is malformed."""


def pool_region(pool_id: str) -> str:
    """The region a pool lives in: its id up to the last underscore."""
    return pool_id.rpartition("_")[0]


@dataclass(slots=True)
class AuthEvent:
    event_id: str
    attributes: dict[str, Any]
    feedback_value: str | None = None
    feedback_provider: str | None = None
    feedback_date: float | None = None
    writes: int = 0

    @property
    def creation_date(self) -> float:
        return float(self.attributes["CreationDate"])

    @property
    def order_key(self) -> tuple[float, str]:
        """Listing order: newest first means descending by this key."""
        return (self.creation_date, self.event_id)

    def to_api(self) -> dict[str, Any]:
        item = {"EventId": self.event_id, **self.attributes}
        if self.feedback_value is not None:
            item["EventFeedback"] = {
                "FeedbackValue": self.feedback_value,
                "Provider": self.feedback_provider,
                "FeedbackDate": self.feedback_date,
            }
        return item


@dataclass(slots=True)
class User:
    username: str
    events: dict[str, AuthEvent] = field(default_factory=dict)


@dataclass(slots=True)
class Pool:
    pool_id: str
    threat_protection: bool
    users: dict[str, User] = field(default_factory=dict)

    @property
    def region(self) -> str:
        return pool_region(self.pool_id)


class Store:
    """Every pool the emulator knows, across all regions."""

    def __init__(self) -> None:
        self.pools: dict[str, Pool] = {}

    def clear(self) -> None:
        self.pools.clear()

    def seed(self, spec: Mapping[str, Any]) -> dict[str, int]:
        """Merge `spec` (see the module docstring); returns what it added or updated."""
        pools = spec.get("pools")
        if not isinstance(pools, list):
            raise SeedError("the seed needs a 'pools' list")
        # Validate everything first so a bad spec changes nothing.
        parsed = [_parse_pool(p) for p in pools]
        counts = {"pools": 0, "users": 0, "events": 0}
        for pool_id, threat_protection, users in parsed:
            pool = self.pools.get(pool_id)
            if pool is None:
                enabled = (
                    DEFAULT_THREAT_PROTECTION if threat_protection is None else threat_protection
                )
                pool = self.pools[pool_id] = Pool(pool_id, enabled)
            elif threat_protection is not None:
                pool.threat_protection = threat_protection
            counts["pools"] += 1
            for username, events in users.items():
                user = pool.users.setdefault(username, User(username))
                counts["users"] += 1
                for event_id, attributes in events:
                    existing = user.events.get(event_id)
                    if existing is None:
                        user.events[event_id] = AuthEvent(event_id, attributes)
                    else:
                        existing.attributes = attributes
                    counts["events"] += 1
        return counts

    def record_feedback(self, event: AuthEvent, value: str) -> None:
        """Last write wins: a new value, provider and date replace the old ones."""
        event.feedback_value = value
        event.feedback_provider = FEEDBACK_PROVIDER_ADMIN
        event.feedback_date = time.time()
        event.writes += 1

    def writes(self, pool_id: str | None = None) -> dict[str, Any]:
        """Per event: successful writes and the current feedback (events never written too)."""
        rows: list[dict[str, Any]] = []
        for pool in self.pools.values():
            if pool_id is not None and pool.pool_id != pool_id:
                continue
            for user in pool.users.values():
                rows.extend(
                    {
                        "pool_id": pool.pool_id,
                        "username": user.username,
                        "event_id": event.event_id,
                        "writes": event.writes,
                        "feedback_value": event.feedback_value,
                        "provider": event.feedback_provider,
                        "feedback_date": event.feedback_date,
                    }
                    for event in user.events.values()
                )
        return {"total_writes": sum(r["writes"] for r in rows), "events": rows}


def _check_field(operation: str, name: str, value: Any) -> str:
    constraint = awsmodel.input_constraints(operation)[name]
    if not isinstance(value, str):
        raise SeedError(f"{name} must be a string: {value!r}")
    if (why := constraint.violation(value)) is not None:
        raise SeedError(f"{name} {value!r}: {why}")
    return value


def _parse_pool(
    raw: Any,
) -> tuple[str, bool | None, dict[str, list[tuple[str, dict[str, Any]]]]]:
    if not isinstance(raw, Mapping):
        raise SeedError("each pool must be an object")
    pool_id = _check_field(awsmodel.FEEDBACK_OPERATION, "UserPoolId", raw.get("id"))
    threat_protection = raw.get("threat_protection")
    if threat_protection is not None and not isinstance(threat_protection, bool):
        raise SeedError("threat_protection must be true or false")
    raw_users = raw.get("users", {})
    if not isinstance(raw_users, Mapping):
        raise SeedError("users must map usernames to lists of events")
    users: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for username, raw_events in raw_users.items():
        _check_field(awsmodel.FEEDBACK_OPERATION, "Username", username)
        if not isinstance(raw_events, list):
            raise SeedError(f"the events of a user must be a list, got {raw_events!r}")
        users[username] = [_parse_event(e) for e in raw_events]
    return pool_id, threat_protection, users


def _parse_event(raw: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(raw, str):
        raw = {"EventId": raw}
    if not isinstance(raw, Mapping):
        raise SeedError("an event is an id or an object with an EventId")
    event_id = _check_field(awsmodel.FEEDBACK_OPERATION, "EventId", raw.get("EventId"))
    if unknown := sorted(set(raw) - _EVENT_FIELDS - {"EventId"}):
        raise SeedError(f"unknown event fields: {', '.join(unknown)}")
    attributes = {**_DEFAULT_EVENT, "CreationDate": time.time()}
    attributes.update({k: v for k, v in raw.items() if k != "EventId"})
    if not isinstance(attributes["CreationDate"], int | float):
        raise SeedError("CreationDate is epoch seconds")
    return event_id, attributes
