"""The emulator's tunable behaviour: quotas, latency, faults, credentials and region binding."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from feedback_local.emulator_wire import (
    ACCESS_DENIED,
    FORBIDDEN,
    LIMIT_EXCEEDED,
    OPERATION_NOT_ENABLED,
    UNTYPED_ANSWERS,
)
from worker import awsmodel

DEFAULT_QUOTA_PER_REGION = 25.0  # Cognito's user-write category, requests/s, not adjustable
DEFAULT_READ_QUOTA_PER_REGION = 120.0  # the UserRead category's default, requests/s
DEFAULT_PER_USER_LIMIT = 10.0  # write requests/s for one user
DEFAULT_SESSION_LIFETIME_S = 3600.0  # how long issued session credentials stay valid
DEFAULT_KNOWN_KEYS = {"testing": "testing"}
CONTAINER_CREDENTIALS_MODES = ("fresh", "stale", "unavailable")

_FAULT_FIELDS = ("fault_internal_error", "fault_untyped_throttle", "fault_drop_connection")
# Fractions that are not faults of their own: they shape the answers the quotas give.
_SHAPE_FIELDS = ("quota_throttles_untyped",)
_RATE_FIELDS = (
    "quota_per_region",
    "read_quota_per_region",
    "burst",
    "per_user_limit",
    "latency_s",
    "latency_jitter_s",
)
_RULE_KEYS = frozenset({"code", "fraction", "pool", "region", "operation", "times"})
_OPERATIONS = (awsmodel.FEEDBACK_OPERATION, awsmodel.LIST_EVENTS_OPERATION)
# Besides the operation's own errors (from botocore's model): the newer model's
# OperationNotEnabledException, IAM's denial, WAF's and the limit error, and untyped answers.
EXTRA_INJECTABLE_CODES = frozenset(
    {OPERATION_NOT_ENABLED, ACCESS_DENIED, FORBIDDEN, LIMIT_EXCEEDED} | UNTYPED_ANSWERS
)


def injectable_codes() -> frozenset[str]:
    """Every code an `injected_errors` rule may name."""
    return awsmodel.operation_error_codes(awsmodel.FEEDBACK_OPERATION) | EXTRA_INJECTABLE_CODES


class ConfigValueError(ValueError):
    """A control request asked for a setting the emulator does not have or cannot take."""


@dataclass(frozen=True)
class InjectedError:
    """Answer `code` to a `fraction` of the calls matching every given scope (None: any), at
    most `times` times (None: for as long as the rule stands); a spent rule matches nothing."""

    code: str
    fraction: float = 1.0
    pool: str | None = None
    region: str | None = None
    operation: str | None = None
    times: int | None = None

    def matches(self, operation: str, region: str, pool_id: str | None) -> bool:
        return (
            (self.operation is None or self.operation == operation)
            and (self.region is None or self.region == region)
            and (self.pool is None or self.pool == pool_id)
        )


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything ``POST /_emulator/config`` can change. Rates are per second; 0 turns a
    limit off. ``burst`` is the write bucket's size, one second's worth when None."""

    quota_per_region: float = DEFAULT_QUOTA_PER_REGION
    read_quota_per_region: float = DEFAULT_READ_QUOTA_PER_REGION
    burst: float | None = None
    per_user_limit: float = DEFAULT_PER_USER_LIMIT
    # The share of the quotas' throttles answered untyped ({"message": "Rate exceeded"}).
    quota_throttles_untyped: float = 0.0
    latency_s: float = 0.0
    latency_jitter_s: float = 0.0
    fault_internal_error: float = 0.0
    fault_untyped_throttle: float = 0.0
    fault_drop_connection: float = 0.0
    injected_errors: tuple[InjectedError, ...] = ()
    denied_access_keys: frozenset[str] = frozenset()
    known_keys: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_KNOWN_KEYS))
    # Session keys another STS issued (moto's, in the IAM test): accepted with any token.
    foreign_session_keys: Mapping[str, str] = field(default_factory=dict)
    session_credentials_lifetime_s: float = DEFAULT_SESSION_LIFETIME_S
    container_credentials: str = "fresh"
    bound_region: str | None = None

    @property
    def region_bucket_size(self) -> float:
        size = self.quota_per_region if self.burst is None else self.burst
        return max(1.0, size)  # a bucket smaller than one token would refuse every call

    @property
    def fault_total(self) -> float:
        return self.fault_internal_error + self.fault_untyped_throttle + self.fault_drop_connection

    def updated(self, changes: Mapping[str, Any]) -> EmulatorConfig:
        """A copy with `changes` applied; raises ConfigValueError naming the bad setting."""
        names = {f.name for f in dataclasses.fields(self)}
        if unknown := sorted(set(changes) - names):
            raise ConfigValueError(f"unknown settings: {', '.join(unknown)}")
        clean: dict[str, Any] = {}
        for name, value in changes.items():
            clean[name] = _coerce(name, value)
        new = dataclasses.replace(self, **clean)
        if new.fault_total > 1.0:
            raise ConfigValueError("fault fractions add up to more than 1")
        return new

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["injected_errors"] = [dataclasses.asdict(rule) for rule in self.injected_errors]
        data["denied_access_keys"] = sorted(self.denied_access_keys)
        data["known_keys"] = dict(self.known_keys)
        data["foreign_session_keys"] = dict(self.foreign_session_keys)
        return data


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigValueError(f"{name} must be a finite number")
    if value < 0:
        raise ConfigValueError(f"{name} must not be negative")
    return float(value)


def _fraction(name: str, value: Any) -> float:
    fraction = _number(name, value)
    if fraction > 1.0:
        raise ConfigValueError(f"{name} is a fraction between 0 and 1")
    return fraction


def _optional_text(name: str, value: Any) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigValueError(f"{name} must be a non-empty string or null")
    return value


def _rule(raw: Any) -> InjectedError:
    if not isinstance(raw, Mapping):
        raise ConfigValueError("each injected error is an object with a 'code'")
    if unknown := sorted(set(raw) - _RULE_KEYS):
        raise ConfigValueError(f"unknown keys in an injected error: {', '.join(unknown)}")
    code = raw.get("code")
    if code not in injectable_codes():
        raise ConfigValueError(
            f"injected error code {code!r} is not one of {', '.join(sorted(injectable_codes()))}"
        )
    fraction = _fraction("fraction", raw.get("fraction", 1.0))
    if fraction == 0:
        raise ConfigValueError("an injected error's fraction must be above 0")
    operation = _optional_text("operation", raw.get("operation"))
    if operation is not None and operation not in _OPERATIONS:
        raise ConfigValueError(f"operation must be one of {', '.join(_OPERATIONS)}")
    times = raw.get("times")
    if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 1):
        raise ConfigValueError("an injected error's times must be a whole number above 0")
    return InjectedError(
        code=code,
        fraction=fraction,
        pool=_optional_text("pool", raw.get("pool")),
        region=_optional_text("region", raw.get("region")),
        operation=operation,
        times=times,
    )


def _coerce_other(name: str, value: Any) -> Any:
    if name == "session_credentials_lifetime_s":
        if _number(name, value) <= 0:
            raise ConfigValueError(f"{name} must be above 0")
        return float(value)
    if name == "container_credentials":
        if value not in CONTAINER_CREDENTIALS_MODES:
            raise ConfigValueError(f"{name} is one of {', '.join(CONTAINER_CREDENTIALS_MODES)}")
        return value
    if name == "bound_region":
        return _optional_text(name, value)
    # known_keys, foreign_session_keys: the whole map is replaced, so a key can be revoked.
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigValueError(f"{name} must map access key ids to secret keys")
    return dict(value)


def _coerce(name: str, value: Any) -> Any:
    if name == "burst" and value is None:
        return None
    if name in _RATE_FIELDS:
        return _number(name, value)
    if name in _FAULT_FIELDS or name in _SHAPE_FIELDS:
        return _fraction(name, value)
    if name == "injected_errors":
        # The whole list is replaced: rules are matched in order, the first match wins.
        if isinstance(value, str | Mapping) or not isinstance(value, list | tuple):
            raise ConfigValueError("injected_errors must be a list of rules")
        return tuple(_rule(raw) for raw in value)
    if name == "denied_access_keys":
        if isinstance(value, str) or not all(isinstance(k, str) for k in value):
            raise ConfigValueError("denied_access_keys must be a list of access key ids")
        return frozenset(value)
    return _coerce_other(name, value)
