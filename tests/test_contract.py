"""The message contract: what parse_verdict accepts, how it rejects, and the JSON Schema."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import regress
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from worker.awsmodel import FEEDBACK_OPERATION, cognito_regions, input_constraints
from worker.contract import (
    DIGEST_HEX_CHARS,
    MAX_BODY_BYTES,
    ValidationCode,
    Verdict,
    parse_verdict,
    username_digest,
    verdict_from_fields,
)
from worker.errors import InvalidMessage
from worker.schema import json_schema, json_schema_text

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "worker" / "verdict.schema.json"
CONSTRAINTS = input_constraints(FEEDBACK_OPERATION)
FIELDS = ("UserPoolId", "Username", "EventId", "FeedbackValue")
# Keys that change how a body is read; generated extra fields must avoid them.
ENVELOPE_KEYS = frozenset({"Type", "Message", "detail", "detail-type", "source"})
VALID: dict[str, str] = {
    "UserPoolId": "eu-west-1_AbC123",
    "Username": "jörg.müller@example.com",
    "EventId": "3f1c-42_a+b",
    "FeedbackValue": "Valid",
}

WRONG_TYPES: tuple[object, ...] = (None, 7, 1.5, True, [], {})

Body = str | bytes


def body_of(fields: dict[str, Any], **extra: Any) -> str:
    return json.dumps({**fields, **extra})


def with_raw(name: str, raw_json: str) -> str:
    """A valid body whose field `name` holds `raw_json` verbatim."""
    return body_of({**VALID, name: "@@"}).replace('"@@"', raw_json)


def sns(message: str) -> str:
    return json.dumps(
        {"Type": "Notification", "MessageId": "m-1", "TopicArn": "arn:t", "Message": message}
    )


def eventbridge(detail: Any) -> str:
    return json.dumps(
        {"version": "0", "id": "e-1", "detail-type": "Verdict", "source": "fraud", "detail": detail}
    )


def rejection(body: Body) -> InvalidMessage:
    with pytest.raises(InvalidMessage) as caught:
        parse_verdict(body)
    return caught.value


# -- an oracle independent of the parser ------------------------------------------------------

_PROPERTY_CLASSES = re.compile(r"\\p\{(\w+)\}")


def assert_valid_for_cognito(verdict: Verdict) -> None:
    """Check every request parameter against the model with other engines than the parser's."""
    for name, value in verdict.to_request().items():
        constraint = CONSTRAINTS[name]
        assert isinstance(value, str)
        if constraint.min_length is not None:
            assert len(value) >= constraint.min_length, name
        if constraint.max_length is not None:
            assert len(value) <= constraint.max_length, name
        if constraint.enum:
            assert value in constraint.enum, name
        pattern = constraint.portable_pattern
        if pattern is None:
            continue
        if classes := _PROPERTY_CLASSES.findall(pattern):
            # Python's Unicode database may be older than the regex module's: characters it
            # does not know yet (Cn) are the one thing this oracle cannot judge.
            for char in value:
                category = unicodedata.category(char)
                assert category[0] in classes or category == "Cn", (name, hex(ord(char)))
        else:
            assert re.fullmatch(pattern, value), name


# -- strategies built from the model ----------------------------------------------------------


def _from_constraint(name: str) -> st.SearchStrategy[str]:
    constraint = CONSTRAINTS[name]
    low, high = constraint.min_length or 0, constraint.max_length
    if constraint.enum:
        # Every spelling of every value: each letter in either case.
        return st.sampled_from(constraint.enum).flatmap(
            lambda word: st.tuples(*(st.sampled_from((c.lower(), c.upper())) for c in word)).map(
                "".join
            )
        )
    assert constraint.portable_pattern is not None
    if classes := _PROPERTY_CLASSES.findall(constraint.portable_pattern):
        return st.text(st.characters(categories=classes), min_size=max(low, 1), max_size=high)
    return st.from_regex(constraint.portable_pattern, fullmatch=True).filter(
        lambda s: low <= len(s) <= (high or len(s))
    )


# A pool id is the model's pattern with a region botocore knows Cognito in before the "_".
pool_ids = st.builds(
    lambda region, suffix: f"{region}_{suffix}",
    st.sampled_from(sorted(cognito_regions())),
    st.from_regex(r"[0-9a-zA-Z]{1,20}", fullmatch=True),
)
valid_fields = st.fixed_dictionaries(
    {name: pool_ids if name == "UserPoolId" else _from_constraint(name) for name in FIELDS}
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)
extra_fields = st.dictionaries(
    st.text().filter(lambda key: key not in ENVELOPE_KEYS and key not in FIELDS),
    json_values,
    max_size=4,
)
WRAPPINGS: dict[str, Callable[[str], str]] = {
    "bare": lambda body: body,
    "sns": sns,
    "eventbridge": lambda body: eventbridge(json.loads(body)),
    "eventbridge in sns": lambda body: sns(eventbridge(json.loads(body))),
}


@st.composite
def valid_bodies(draw: st.DrawFn) -> tuple[dict[str, str], Body]:
    fields = draw(valid_fields)
    payload = {**draw(extra_fields), **fields}
    text = json.dumps(payload, ensure_ascii=draw(st.booleans()))
    body = WRAPPINGS[draw(st.sampled_from(sorted(WRAPPINGS)))](text)
    return fields, body.encode() if draw(st.booleans()) else body


@st.composite
def mutated_bodies(draw: st.DrawFn) -> bytes:
    _, body = draw(valid_bodies())
    data = bytearray(body.encode() if isinstance(body, str) else body)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        match draw(st.sampled_from(("insert", "delete", "replace"))):
            case "insert":
                data[at:at] = draw(st.binary(min_size=1, max_size=4))
            case "delete":
                del data[at : at + draw(st.integers(1, 8))]
            case _:
                data[at : at + 1] = draw(st.binary(min_size=1, max_size=1))
    return bytes(data)


@st.composite
def bodies_with_one_field_replaced(draw: st.DrawFn) -> str:
    fields: dict[str, Any] = dict(draw(valid_fields))
    name = draw(st.sampled_from(FIELDS))
    if draw(st.booleans()):
        del fields[name]
    else:
        fields[name] = draw(json_values)
    return json.dumps(fields)


arbitrary_bodies = st.one_of(
    st.binary(),
    st.text(),
    json_values.map(json.dumps),
    mutated_bodies(),
    bodies_with_one_field_replaced(),
)


# -- properties -------------------------------------------------------------------------------


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(valid_bodies())
def test_every_valid_body_is_accepted_with_its_values(case: tuple[dict[str, str], Body]) -> None:
    fields, body = case
    verdict = parse_verdict(body)
    assert verdict.user_pool_id == fields["UserPoolId"]
    assert verdict.username == fields["Username"]
    assert verdict.event_id == fields["EventId"]
    assert verdict.feedback_value.lower() == fields["FeedbackValue"].lower()
    assert verdict.feedback_value in CONSTRAINTS["FeedbackValue"].enum
    assert_valid_for_cognito(verdict)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(arbitrary_bodies)
def test_any_input_is_either_a_valid_verdict_or_an_invalid_message(body: Body) -> None:
    verdict: Verdict | None = None
    code: str | None = None
    try:
        verdict = parse_verdict(body)
    except InvalidMessage as exc:
        code = exc.code
    if verdict is None:
        assert code in set(ValidationCode)
    else:
        assert_valid_for_cognito(verdict)


@given(valid_fields)
def test_the_canonical_body_parses_back_to_the_same_verdict(fields: dict[str, str]) -> None:
    verdict = parse_verdict(json.dumps(fields))
    assert parse_verdict(verdict.to_body()) == verdict
    assert parse_verdict(verdict.to_body().encode()) == verdict


@given(valid_fields, st.text(min_size=1))
def test_an_invalid_username_is_never_quoted_in_the_error(
    fields: dict[str, str], suffix: str
) -> None:
    # Given a distinctive username made invalid by a space (not in any \p class it allows)
    username = f"secret-{suffix} "
    # When it is rejected
    error = rejection(body_of({**fields, "Username": username}))
    # Then neither the message nor the exception text shows it
    assert error.field == "Username"
    assert username not in str(error)
    assert username.strip() not in error.message


# -- examples: acceptance ---------------------------------------------------------------------


def test_a_verdict_exposes_typed_fields_region_request_and_canonical_body() -> None:
    verdict = parse_verdict(body_of(VALID))
    assert verdict == Verdict(
        user_pool_id="eu-west-1_AbC123",
        username="jörg.müller@example.com",
        event_id="3f1c-42_a+b",
        feedback_value="Valid",
    )
    assert verdict.region == "eu-west-1"
    assert verdict.to_request() == VALID
    assert verdict.to_body() == (
        '{"UserPoolId":"eu-west-1_AbC123","Username":"jörg.müller@example.com",'
        '"EventId":"3f1c-42_a+b","FeedbackValue":"Valid"}'
    )


@pytest.mark.parametrize(
    ("spelling", "wire"),
    [("Valid", "Valid"), ("valid", "Valid"), ("VALID", "Valid"), ("iNvAlId", "Invalid")],
)
def test_feedback_value_is_accepted_in_any_case_and_sent_in_wire_spelling(
    spelling: str, wire: str
) -> None:
    assert parse_verdict(body_of({**VALID, "FeedbackValue": spelling})).feedback_value == wire


@pytest.mark.parametrize("lookalike", ["vALİd", "ınvalıd", "Valid ", "Ｖalid"])
def test_feedback_value_lookalikes_outside_ascii_are_rejected(lookalike: str) -> None:
    error = rejection(body_of({**VALID, "FeedbackValue": lookalike}))
    assert (error.code, error.field) == (ValidationCode.INVALID_FIELD_VALUE, "FeedbackValue")


def test_unknown_fields_of_any_type_are_ignored() -> None:
    body = body_of(VALID, extra={"deep": [1, {"x": None}]}, n=10**400, note="ß", Type="Info")
    assert parse_verdict(body).to_request() == VALID


@pytest.mark.parametrize("wrap", sorted(WRAPPINGS))
def test_sns_and_eventbridge_envelopes_are_unwrapped(wrap: str) -> None:
    assert parse_verdict(WRAPPINGS[wrap](body_of(VALID))).to_request() == VALID


def test_a_duplicated_key_takes_its_last_value_as_json_parsers_commonly_do() -> None:
    body = body_of(VALID)[:-1] + ', "FeedbackValue": "Invalid"}'
    assert parse_verdict(body).feedback_value == "Invalid"


def test_verdict_from_fields_normalises_case_and_validates() -> None:
    verdict = verdict_from_fields("us-east-1_X1", "alice", "ev-1", "invalid")
    assert verdict.feedback_value == "Invalid"
    with pytest.raises(InvalidMessage) as caught:
        verdict_from_fields("us-east-1_X1", "alice bob", "ev-1", "invalid")
    assert caught.value.field == "Username"


def test_a_verdict_cannot_be_built_invalid_directly() -> None:
    with pytest.raises(InvalidMessage) as caught:
        Verdict(user_pool_id="pool", username="a", event_id="e", feedback_value="Valid")
    assert (caught.value.code, caught.value.field) == ("InvalidFieldValue", "UserPoolId")


def test_the_repr_of_a_verdict_hides_the_username() -> None:
    verdict = parse_verdict(body_of(VALID))
    assert VALID["Username"] not in repr(verdict)
    assert VALID["Username"] not in str(verdict)
    assert VALID["EventId"] in repr(verdict)


# -- examples: one per rejection code ---------------------------------------------------------

_PADDING = "x" * MAX_BODY_BYTES
_DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        pytest.param(b"\xff\xfe{}", "InvalidEncoding", None, id="bytes-not-utf8"),
        pytest.param(
            body_of(VALID)[:-1].encode() + b',"x":"\xc3"}',
            "InvalidEncoding",
            None,
            id="bad-utf8-in-an-ignored-field",
        ),
        pytest.param(
            body_of(VALID, x="\ud800"), "MalformedJson", None, id="escaped-lone-surrogate"
        ),
        pytest.param(
            body_of(VALID)[:-1] + ',"x":"\ud800"}',
            "InvalidEncoding",
            None,
            id="str-with-lone-surrogate",
        ),
        pytest.param(body_of(VALID, pad=_PADDING), "BodyTooLarge", None, id="str-over-1-MiB"),
        pytest.param(
            body_of(VALID, pad=_PADDING).encode(), "BodyTooLarge", None, id="bytes-over-1-MiB"
        ),
        pytest.param(
            body_of(VALID, pad="é" * (MAX_BODY_BYTES // 2)),
            "BodyTooLarge",
            None,
            id="under-1-Mi-characters-but-over-1-MiB-of-UTF-8",
        ),
        pytest.param("", "MalformedJson", None, id="empty"),
        pytest.param("{", "MalformedJson", None, id="truncated"),
        pytest.param('{"UserPoolId": NaN}', "MalformedJson", None, id="nan"),
        pytest.param("{'UserPoolId': 'x'}", "MalformedJson", None, id="single-quotes"),
        pytest.param(body_of(VALID) + "{}", "MalformedJson", None, id="trailing-data"),
        pytest.param('{"x":' + _DEEP + "}", "TooDeeplyNested", None, id="deep-ignored-field"),
        pytest.param("[]", "NotAnObject", None, id="array"),
        pytest.param("null", "NotAnObject", None, id="null"),
        pytest.param("1e999", "NotAnObject", None, id="number"),
        pytest.param('"text"', "NotAnObject", None, id="string"),
        pytest.param('{"Type":"Notification"}', "InvalidEnvelope", "Message", id="sns-no-message"),
        pytest.param(
            json.dumps({"Type": "Notification", "Message": {"a": 1}}),
            "InvalidEnvelope",
            "Message",
            id="sns-message-not-a-string",
        ),
        pytest.param(sns("not json"), "InvalidEnvelope", "Message", id="sns-message-not-json"),
        pytest.param(sns("[1]"), "InvalidEnvelope", "Message", id="sns-message-not-an-object"),
        pytest.param(eventbridge([VALID]), "InvalidEnvelope", "detail", id="detail-not-an-object"),
        pytest.param(sns(sns(body_of(VALID))), "InvalidEnvelope", None, id="sns-in-sns"),
        pytest.param(
            eventbridge(json.loads(eventbridge(VALID))),
            "InvalidEnvelope",
            None,
            id="eventbridge-in-eventbridge",
        ),
        pytest.param(
            eventbridge(json.loads(sns(body_of(VALID)))),
            "InvalidEnvelope",
            None,
            id="sns-in-eventbridge",
        ),
        *(
            pytest.param(
                body_of({k: v for k, v in VALID.items() if k != name}),
                "MissingField",
                name,
                id=f"missing-{name}",
            )
            for name in FIELDS
        ),
        *(
            pytest.param(
                body_of({**VALID, name: value}),
                "InvalidFieldType",
                name,
                id=f"{name}-{type(value).__name__}",
            )
            for name in FIELDS
            for value in WRONG_TYPES
        ),
        *(
            pytest.param(
                with_raw(name, "-1" + "0" * 5000),
                "InvalidFieldType",
                name,
                id=f"{name}-huge-number",
            )
            for name in FIELDS
        ),
        pytest.param(
            body_of({**VALID, "UserPoolId": "eu-west-1"}),
            "InvalidFieldValue",
            "UserPoolId",
            id="pool-without-suffix",
        ),
        pytest.param(
            body_of({**VALID, "UserPoolId": "e" * 50 + "_AbC12"}),
            "InvalidFieldValue",
            "UserPoolId",
            id="pool-too-long",
        ),
        pytest.param(
            body_of({**VALID, "UserPoolId": "eu-wëst-1_A"}),
            "InvalidFieldValue",
            "UserPoolId",
            id="pool-non-ascii-word",
        ),
        pytest.param(
            body_of({**VALID, "Username": ""}), "InvalidFieldValue", "Username", id="username-empty"
        ),
        pytest.param(
            body_of({**VALID, "Username": "a" * 129}),
            "InvalidFieldValue",
            "Username",
            id="username-too-long",
        ),
        pytest.param(
            body_of({**VALID, "Username": "tab\there"}),
            "InvalidFieldValue",
            "Username",
            id="username-control-character",
        ),
        pytest.param(
            body_of({**VALID, "EventId": "a/b"}),
            "InvalidFieldValue",
            "EventId",
            id="event-id-slash",
        ),
        pytest.param(
            body_of({**VALID, "EventId": "e" * 51}),
            "InvalidFieldValue",
            "EventId",
            id="event-id-too-long",
        ),
        pytest.param(
            body_of({**VALID, "FeedbackValue": "maybe"}),
            "InvalidFieldValue",
            "FeedbackValue",
            id="feedback-not-in-enum",
        ),
    ],
)
def test_each_kind_of_bad_body_is_rejected_with_its_code_and_field(
    body: Body, code: str, field: str | None
) -> None:
    error = rejection(body)
    assert (error.code, error.field) == (code, field)
    assert error.message
    assert VALID["Username"] not in str(error)


def test_a_body_of_exactly_1_mib_is_not_too_large() -> None:
    body = body_of(VALID, pad="")
    body = body_of(VALID, pad="x" * (MAX_BODY_BYTES - len(body.encode())))
    assert len(body.encode()) == MAX_BODY_BYTES
    assert parse_verdict(body).to_request() == VALID


def test_the_validation_codes_are_the_dead_letter_error_codes() -> None:
    assert {code.value for code in ValidationCode} == {
        "InvalidEncoding",
        "BodyTooLarge",
        "MalformedJson",
        "TooDeeplyNested",
        "NotAnObject",
        "InvalidEnvelope",
        "MissingField",
        "InvalidFieldType",
        "InvalidFieldValue",
    }


def test_a_bad_non_sensitive_value_is_quoted_but_cut_short() -> None:
    error = rejection(body_of({**VALID, "EventId": "bad id " + "z" * 500}))
    assert "'bad id " in error.message
    assert "z" * 100 not in error.message


# -- username digest --------------------------------------------------------------------------


@given(st.text(), st.binary(min_size=16, max_size=32))
def test_the_username_digest_is_short_hex_and_keyed(username: str, key: bytes) -> None:
    digest = username_digest(username, key)
    assert re.fullmatch(f"[0-9a-f]{{{DIGEST_HEX_CHARS}}}", digest)
    assert digest == username_digest(username, key)
    assume(len(username) >= 4)
    assert username not in digest


def test_the_username_digest_depends_on_the_key_and_the_username() -> None:
    assert username_digest("alice", b"k1" * 8) != username_digest("alice", b"k2" * 8)
    assert username_digest("alice", b"k1" * 8) != username_digest("bob", b"k1" * 8)


# -- JSON Schema ------------------------------------------------------------------------------


def test_the_checked_in_schema_is_the_one_built_from_the_model() -> None:
    checked_in = SCHEMA_FILE.read_text(encoding="utf-8")
    assert json.loads(checked_in) == json_schema(), (
        "regenerate: python -m worker.schema > worker/verdict.schema.json"
    )
    assert checked_in == json_schema_text()


def test_the_schema_takes_lengths_and_patterns_from_the_model() -> None:
    verdict = json_schema()["$defs"]["Verdict"]
    assert verdict["required"] == list(FIELDS)
    for name in ("UserPoolId", "Username", "EventId"):
        prop, constraint = verdict["properties"][name], CONSTRAINTS[name]
        assert (prop["minLength"], prop["maxLength"]) == (
            constraint.min_length,
            constraint.max_length,
        )
        assert prop["pattern"] == f"^{constraint.portable_pattern}$"
    assert verdict["properties"]["FeedbackValue"]["examples"] == list(
        CONSTRAINTS["FeedbackValue"].enum
    )


class EcmaSchema:
    """The checked-in schema under a 2020-12 validator whose patterns are ECMA-262 (u flag)."""

    def __init__(self) -> None:

        def ecma_pattern(validator: Any, pattern: str, instance: Any, _: Any) -> Any:
            if validator.is_type(instance, "string") and not regress.Regex(pattern, flags="u").find(
                instance
            ):
                yield jsonschema.ValidationError(f"does not match {pattern!r}")

        # The meta-schema's "regex" format must mean ECMA-262 too, not Python's re.
        ecma_formats = jsonschema.FormatChecker()
        ecma_formats.checks("regex", raises=regress.RegressError)(
            lambda pattern: regress.Regex(pattern, flags="u") is not None
        )
        schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
        jsonschema.Draft202012Validator.check_schema(schema, format_checker=ecma_formats)
        validator_class = jsonschema.validators.extend(
            jsonschema.Draft202012Validator, {"pattern": ecma_pattern}
        )
        self._validator = validator_class(schema)

    def accepts(self, body: str) -> bool:
        return bool(self._validator.is_valid(json.loads(body)))


@pytest.fixture(scope="module")
def ecma_schema() -> EcmaSchema:
    return EcmaSchema()


@pytest.mark.parametrize(
    "body",
    [
        body_of(VALID),
        body_of({**VALID, "FeedbackValue": "iNVALID", "Username": "用户😀"}, extra=1),
        eventbridge(VALID),
        sns(body_of(VALID)),
        sns(eventbridge(VALID)),
    ],
)
def test_example_bodies_are_valid_under_the_checked_in_schema(
    ecma_schema: EcmaSchema, body: str
) -> None:
    assert ecma_schema.accepts(body)


@pytest.mark.parametrize(
    "body",
    [
        body_of({k: v for k, v in VALID.items() if k != "EventId"}),
        body_of({**VALID, "FeedbackValue": "maybe"}),
        body_of({**VALID, "UserPoolId": "e" * 50 + "_AbC12"}),
        body_of({**VALID, "Username": "two words"}),
        body_of({**VALID, "EventId": 7}),
        eventbridge({**VALID, "EventId": "a/b"}),
        "[]",
    ],
)
def test_example_bad_bodies_are_invalid_under_the_checked_in_schema(
    ecma_schema: EcmaSchema, body: str
) -> None:
    assert not ecma_schema.accepts(body)


# Characters below U+0400 have had the same Unicode category for decades, so the schema's
# validator and the parser agree on them whatever Unicode version each was built with.
_stable_text = st.text(st.characters(max_codepoint=0x3FF), max_size=60)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.fixed_dictionaries(
        {
            name: _stable_text if name == "Username" else _stable_text | _from_constraint(name)
            for name in FIELDS
        }
    )
)
def test_the_schema_and_the_parser_agree_on_bare_verdicts(
    ecma_schema: EcmaSchema, fields: dict[str, str]
) -> None:
    body = json.dumps(fields)
    try:
        parse_verdict(body)
    except InvalidMessage:
        accepted = False
    else:
        accepted = True
    assert ecma_schema.accepts(body) == accepted


@given(pool_id=_from_constraint("UserPoolId"))
def test_a_pool_id_whose_region_has_no_cognito_is_an_invalid_field_value(pool_id: str) -> None:
    region = pool_id.rpartition("_")[0]
    assume(region not in cognito_regions())
    with pytest.raises(InvalidMessage) as caught:
        parse_verdict(body_of({**VALID, "UserPoolId": pool_id}))
    assert (caught.value.code, caught.value.field) == ("InvalidFieldValue", "UserPoolId")


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1", "us-gov-west-1", "ap-southeast-2"])
def test_pool_ids_of_cognito_regions_are_accepted(region: str) -> None:
    assert parse_verdict(body_of({**VALID, "UserPoolId": f"{region}_AbC123"})).region == region
