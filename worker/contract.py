"""The message contract: one verdict per SQS message, checked against Cognito's own model.

A body is a JSON object with the API's parameter names::

    {"UserPoolId": "eu-west-1_AbC123", "Username": "…", "EventId": "…", "FeedbackValue": "Valid"}

FeedbackValue is accepted in any ASCII case and normalised to the wire spelling; unknown
fields are ignored. Producers may also publish through SNS (a notification envelope whose
``Message`` string holds the body), EventBridge (an event whose ``detail`` holds the object),
or EventBridge through SNS; no other nesting is accepted.

Lengths, patterns and the enum come from botocore's service model (worker.awsmodel), so the
contract cannot drift from what the service enforces. Anything else is an InvalidMessage
whose code (ValidationCode) becomes the dead-letter copy's ErrorCode attribute.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import msgspec

from worker.awsmodel import (
    FEEDBACK_OPERATION,
    FieldConstraint,
    cognito_regions,
    input_constraints,
)
from worker.errors import InvalidMessage

MAX_BODY_BYTES: Final = 1_048_576  # SQS's message size limit (1 MiB)
DIGEST_HEX_CHARS: Final = 12  # 48 bits: enough to tell users apart in logs, too short to index
SNS_NOTIFICATION: Final = "Notification"
_ECHO_CHARS = 64  # how much of a bad, non-sensitive value an error message quotes back

# Verdict attribute -> API parameter name; also the canonical body's key order.
_API_NAMES: Final = {
    "user_pool_id": "UserPoolId",
    "username": "Username",
    "event_id": "EventId",
    "feedback_value": "FeedbackValue",
}


class ValidationCode(StrEnum):
    """Why a body is not a verdict; the value is the dead-letter copy's ErrorCode attribute."""

    INVALID_ENCODING = "InvalidEncoding"
    BODY_TOO_LARGE = "BodyTooLarge"
    MALFORMED_JSON = "MalformedJson"
    TOO_DEEPLY_NESTED = "TooDeeplyNested"
    NOT_AN_OBJECT = "NotAnObject"
    INVALID_ENVELOPE = "InvalidEnvelope"
    MISSING_FIELD = "MissingField"
    INVALID_FIELD_TYPE = "InvalidFieldType"
    INVALID_FIELD_VALUE = "InvalidFieldValue"


@dataclass(frozen=True)
class Rule:
    attr: str
    constraint: FieldConstraint

    @property
    def name(self) -> str:
        return self.constraint.name


@functools.cache
def rules() -> tuple[Rule, ...]:
    constraints = input_constraints(FEEDBACK_OPERATION)
    return tuple(Rule(attr, constraints[name]) for attr, name in _API_NAMES.items())


@functools.cache
def _feedback_spellings() -> dict[str, str]:
    """Lower-case spelling -> wire spelling of every FeedbackValue the model allows."""
    return {
        value.lower(): value
        for value in input_constraints(FEEDBACK_OPERATION)[_API_NAMES["feedback_value"]].enum
    }


def _subject(constraint: FieldConstraint, value: str) -> str:
    """The field, with its value quoted unless the model marks it sensitive."""
    if constraint.sensitive:
        return constraint.name
    quoted = repr(value[:_ECHO_CHARS]) + ("…" if len(value) > _ECHO_CHARS else "")
    return f"{constraint.name} {quoted}"


class Verdict(msgspec.Struct, frozen=True, kw_only=True, rename=_API_NAMES):
    """One feedback call, valid for the service model: construction checks every constraint.

    FeedbackValue must already be in wire spelling here; `verdict_from_fields` and
    `parse_verdict` normalise its case first.
    """

    user_pool_id: str
    username: str
    event_id: str
    feedback_value: str

    def __post_init__(self) -> None:
        for rule in rules():
            value = getattr(self, rule.attr)
            if not isinstance(value, str):
                raise InvalidMessage(
                    ValidationCode.INVALID_FIELD_TYPE,
                    f"{rule.name} must be a string, got {type(value).__name__}",
                    rule.name,
                )
            reason = rule.constraint.violation(value)
            if reason is not None:
                raise InvalidMessage(
                    ValidationCode.INVALID_FIELD_VALUE,
                    f"{_subject(rule.constraint, value)} is invalid: {reason}",
                    rule.name,
                )
        if self.region not in cognito_regions():
            raise InvalidMessage(
                ValidationCode.INVALID_FIELD_VALUE,
                f"UserPoolId {self.user_pool_id!r} names region {self.region!r}, where "
                "botocore's endpoint data has no Cognito user pools",
                _API_NAMES["user_pool_id"],
            )

    def __repr__(self) -> str:
        # Usernames are sensitive in the model: a logged or printed verdict must not show one.
        return (
            f"Verdict(user_pool_id={self.user_pool_id!r}, username=<redacted>, "
            f"event_id={self.event_id!r}, feedback_value={self.feedback_value!r})"
        )

    @property
    def region(self) -> str:
        """The pool's region: what precedes the last "_" (the suffix after it is alphanumeric)."""
        return self.user_pool_id.rpartition("_")[0]

    def to_request(self) -> dict[str, str]:
        """The AdminUpdateAuthEventFeedback parameters."""
        return {
            "UserPoolId": self.user_pool_id,
            "Username": self.username,
            "EventId": self.event_id,
            "FeedbackValue": self.feedback_value,
        }

    def to_body(self) -> str:
        """The canonical body: API names in model order, no whitespace, UTF-8 unescaped."""
        return _ENCODER.encode(self).decode()


_ENCODER: Final = msgspec.json.Encoder()
_ABSENT: Final = msgspec.Raw()  # an empty Raw: the key was not in the object


class _Layer(
    msgspec.Struct,
    rename={
        **_API_NAMES,
        "sns_type": "Type",
        "sns_message": "Message",
        "detail_type": "detail-type",
    },
):
    """One JSON object of a body. Values stay raw so that a wrong type is reported per field
    and unknown fields are skipped without being built."""

    user_pool_id: msgspec.Raw = _ABSENT
    username: msgspec.Raw = _ABSENT
    event_id: msgspec.Raw = _ABSENT
    feedback_value: msgspec.Raw = _ABSENT
    sns_type: msgspec.Raw = _ABSENT
    sns_message: msgspec.Raw = _ABSENT
    detail: msgspec.Raw = _ABSENT
    detail_type: msgspec.Raw = _ABSENT
    source: msgspec.Raw = _ABSENT

    def is_sns(self) -> bool:
        return bool(self.sns_type) and _as_str(self.sns_type) == SNS_NOTIFICATION

    def is_eventbridge(self) -> bool:
        return bool(self.detail and self.detail_type and self.source)


_LAYER_DECODER: Final = msgspec.json.Decoder(_Layer)
_STR_DECODER: Final = msgspec.json.Decoder(str)
_JSON_TYPES: Final = {
    ord('"'): "string",
    ord("{"): "object",
    ord("["): "array",
    ord("t"): "boolean",
    ord("f"): "boolean",
    ord("n"): "null",
}


def _json_type(raw: msgspec.Raw) -> str:
    return _JSON_TYPES.get(bytes(raw)[0], "number")


def _as_str(raw: msgspec.Raw) -> str | None:
    """The JSON string in `raw`, or None if it holds another type."""
    try:
        return _STR_DECODER.decode(raw)
    except msgspec.ValidationError:
        return None


def _decode_layer(data: str | bytes | msgspec.Raw, envelope_field: str | None = None) -> _Layer:
    def fail(code: ValidationCode, message: str) -> InvalidMessage:
        if envelope_field is None:
            return InvalidMessage(code, message)
        return InvalidMessage(
            ValidationCode.INVALID_ENVELOPE, f"{envelope_field}: {message}", envelope_field
        )

    try:
        return _LAYER_DECODER.decode(data)
    except msgspec.ValidationError:  # every member is Raw: only a non-object top level fails
        raise fail(ValidationCode.NOT_AN_OBJECT, "the JSON value is not an object") from None
    except msgspec.DecodeError as exc:
        raise fail(ValidationCode.MALFORMED_JSON, f"not valid JSON: {exc}") from None
    except RecursionError:  # msgspec's own nesting limit, not a blown interpreter stack
        raise InvalidMessage(
            ValidationCode.TOO_DEEPLY_NESTED, "the JSON nests too deeply to decode"
        ) from None


def _unwrap(layer: _Layer) -> _Layer:
    """The verdict object inside SNS and EventBridge envelopes (EventBridge-in-SNS at most)."""
    if layer.is_sns():
        if not layer.sns_message:
            raise InvalidMessage(
                ValidationCode.INVALID_ENVELOPE, "the SNS notification has no Message", "Message"
            )
        message = _as_str(layer.sns_message)
        if message is None:
            raise InvalidMessage(
                ValidationCode.INVALID_ENVELOPE,
                f"the SNS Message is a {_json_type(layer.sns_message)}, not a string",
                "Message",
            )
        layer = _decode_layer(message, "Message")
    if layer.is_eventbridge():
        layer = _decode_layer(layer.detail, "detail")
    if layer.is_sns() or layer.is_eventbridge():
        raise InvalidMessage(
            ValidationCode.INVALID_ENVELOPE,
            "envelopes nest at most as an EventBridge event inside SNS",
        )
    return layer


def _field(layer: _Layer, rule: Rule) -> str:
    raw: msgspec.Raw = getattr(layer, rule.attr)
    if not raw:
        raise InvalidMessage(ValidationCode.MISSING_FIELD, f"{rule.name} is required", rule.name)
    value = _as_str(raw)
    if value is None:
        raise InvalidMessage(
            ValidationCode.INVALID_FIELD_TYPE,
            f"{rule.name} must be a string, got {_json_type(raw)}",
            rule.name,
        )
    return value


def _wire_feedback(value: str) -> str:
    """The wire spelling of a FeedbackValue in any ASCII case; anything else is left for the
    enum check to reject (ASCII only, so no Unicode case folding can map onto an enum)."""
    if value.isascii():
        return _feedback_spellings().get(value.lower(), value)
    return value


def parse_verdict(body: str | bytes) -> Verdict:
    """The verdict in an SQS message body; raises InvalidMessage, and only that, otherwise."""
    data: str | bytes = body
    try:
        if isinstance(body, str):
            # isascii is O(1) on str: ASCII bodies go to msgspec without a copy.
            size = len(body) if body.isascii() else len(data := body.encode())
        else:
            size = len(body)
            if not body.isascii():
                body.decode()  # msgspec does not check the UTF-8 of the values it skips
    except UnicodeError:
        raise InvalidMessage(
            ValidationCode.INVALID_ENCODING, "the body is not valid UTF-8 text"
        ) from None
    if size > MAX_BODY_BYTES:
        raise InvalidMessage(
            ValidationCode.BODY_TOO_LARGE,
            f"the body is {size} bytes; SQS carries at most {MAX_BODY_BYTES}",
        )
    layer = _unwrap(_decode_layer(data))
    pool_rule, username_rule, event_rule, feedback_rule = rules()
    return Verdict(
        user_pool_id=_field(layer, pool_rule),
        username=_field(layer, username_rule),
        event_id=_field(layer, event_rule),
        feedback_value=_wire_feedback(_field(layer, feedback_rule)),
    )


def verdict_from_fields(
    user_pool_id: str,
    username: str,
    event_id: str,
    feedback_value: str,
) -> Verdict:
    """A verdict from separate values (e.g. command-line flags); raises InvalidMessage."""
    return Verdict(
        user_pool_id=user_pool_id,
        username=username,
        event_id=event_id,
        feedback_value=_wire_feedback(feedback_value),
    )


def username_digest(username: str, key: bytes) -> str:
    """A short keyed hash that stands for a username in logs, masks and FIFO group ids.

    Keyed, because usernames (often e-mail addresses) are guessable: a plain hash of a
    candidate list would reveal them.
    """
    data = username.encode("utf-8", "surrogatepass")
    return hmac.new(key, data, hashlib.sha256).hexdigest()[:DIGEST_HEX_CHARS]
