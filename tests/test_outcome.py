"""Outcome classification: by error code (never HTTP status), from errors built as botocore
builds them out of a Cognito response."""

from __future__ import annotations

import json
from typing import Any, cast

import aiohttp
import botocore.errorfactory
import botocore.exceptions
import botocore.parsers
import botocore.session
import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.errors import InvalidMessage
from worker.outcome import (
    PERMANENT_CODES,
    SYSTEMIC_CODES,
    THROTTLING_CODES,
    Kind,
    classify_error_code,
    classify_exception,
)

OPERATION = "AdminUpdateAuthEventFeedback"
_SERVICE = botocore.session.get_session().get_service_model("cognito-idp")
_PARSER = botocore.parsers.create_parser(_SERVICE.metadata["protocol"])
_EXCEPTIONS = botocore.errorfactory.ClientExceptionsFactory().create_client_exceptions(_SERVICE)


def cognito_error(status: int, body: bytes) -> botocore.exceptions.ClientError:
    """The exception botocore raises for this HTTP answer to AdminUpdateAuthEventFeedback."""
    shape = _SERVICE.operation_model(OPERATION).output_shape
    assert shape is not None
    parsed = _PARSER.parse({"status_code": status, "headers": {}, "body": body}, shape)
    # botocore raises the modeled subclass for a known code, plain ClientError otherwise.
    error_class = cast(
        "type[botocore.exceptions.ClientError]", _EXCEPTIONS.from_code(parsed["Error"]["Code"])
    )
    return error_class(parsed, OPERATION)


def typed_error(code: str, message: str = "", status: int = 400) -> botocore.exceptions.ClientError:
    return cognito_error(status, json.dumps({"__type": code, "message": message}).encode())


@pytest.mark.parametrize("code", sorted(THROTTLING_CODES))
def test_throttling_codes_are_throttled(code: str) -> None:
    assert classify_error_code(code) is Kind.THROTTLED


@pytest.mark.parametrize("code", sorted(PERMANENT_CODES))
def test_permanent_codes_are_permanent(code: str) -> None:
    assert classify_error_code(code) is Kind.PERMANENT


@pytest.mark.parametrize("code", sorted(SYSTEMIC_CODES))
def test_systemic_codes_are_systemic(code: str) -> None:
    assert classify_error_code(code) is Kind.SYSTEMIC


def test_the_code_lists_do_not_overlap() -> None:
    assert not THROTTLING_CODES & PERMANENT_CODES
    assert not THROTTLING_CODES & SYSTEMIC_CODES
    assert not PERMANENT_CODES & SYSTEMIC_CODES


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        pytest.param("TooManyRequestsException", Kind.THROTTLED, id="throttle"),
        pytest.param("InvalidParameterException", Kind.PERMANENT, id="invalid-parameter"),
        pytest.param("UserNotFoundException", Kind.PERMANENT, id="user-not-found"),
        pytest.param("ResourceNotFoundException", Kind.PERMANENT, id="resource-not-found"),
        pytest.param("NotAuthorizedException", Kind.PERMANENT, id="not-authorized"),
        pytest.param("UserPoolAddOnNotEnabledException", Kind.PERMANENT, id="addon-not-enabled"),
        pytest.param("AccessDeniedException", Kind.SYSTEMIC, id="access-denied"),
        pytest.param("UnrecognizedClientException", Kind.SYSTEMIC, id="unrecognized-client"),
        pytest.param("InvalidSignatureException", Kind.SYSTEMIC, id="invalid-signature"),
        pytest.param("ExpiredTokenException", Kind.SYSTEMIC, id="expired-token"),
        pytest.param("InternalErrorException", Kind.TRANSIENT, id="internal-error"),
        pytest.param("BrandNewException", Kind.TRANSIENT, id="unknown-code"),
    ],
)
@pytest.mark.parametrize("status", [400, 500], ids=["http-400", "http-500"])
def test_a_cognito_error_is_classified_by_its_code_whatever_the_http_status(
    code: str, kind: Kind, status: int
) -> None:
    outcome = classify_exception(typed_error(code, "details", status))
    assert outcome.kind is kind
    assert outcome.code == code
    assert outcome.message == "details"


def test_a_namespaced_type_is_classified_by_its_bare_code() -> None:
    outcome = classify_exception(
        typed_error("com.amazonaws.cognito#TooManyRequestsException", "Rate exceeded")
    )
    assert outcome.kind is Kind.THROTTLED
    assert outcome.code == "TooManyRequestsException"


def test_an_untyped_rate_exceeded_body_is_throttling() -> None:
    error = cognito_error(400, b'{"message": "Rate exceeded"}')
    assert error.response["Error"]["Code"] == "400"  # what botocore makes of it
    outcome = classify_exception(error)
    assert outcome.kind is Kind.THROTTLED
    assert outcome.code == "400"


def test_an_empty_code_falls_back_to_the_status_and_still_sees_rate_exceeded() -> None:
    error = cognito_error(400, b'{"__type": "", "message": "Rate exceeded"}')
    assert error.response["Error"]["Code"] == ""
    outcome = classify_exception(error)
    assert outcome.kind is Kind.THROTTLED
    assert outcome.code == "400"


def test_an_empty_code_without_a_throttle_message_is_transient() -> None:
    outcome = classify_exception(cognito_error(500, b'{"__type": ""}'))
    assert outcome.kind is Kind.TRANSIENT
    assert outcome.code == "500"


@pytest.mark.parametrize("body", [b"", b"{}", b"<html>Bad Gateway</html>"], ids=repr)
def test_an_untyped_server_error_is_transient(body: bytes) -> None:
    outcome = classify_exception(cognito_error(502, body))
    assert outcome.kind is Kind.TRANSIENT
    assert outcome.code


def test_an_untyped_400_without_a_throttle_message_is_not_throttling() -> None:
    assert classify_exception(cognito_error(400, b'{"message": "Bad"}')).kind is Kind.TRANSIENT


def test_a_typed_code_is_not_second_guessed_by_its_message() -> None:
    error = typed_error("UserNotFoundException", "Rate exceeded")
    assert classify_exception(error).kind is Kind.PERMANENT


def test_a_client_error_without_an_error_entry_is_transient() -> None:
    outcome = classify_exception(botocore.exceptions.ClientError({}, OPERATION))
    assert outcome.kind is Kind.TRANSIENT
    assert outcome.code


@pytest.mark.parametrize(
    "exc",
    [
        botocore.exceptions.NoCredentialsError(),
        botocore.exceptions.PartialCredentialsError(provider="env", cred_var="secret"),
        botocore.exceptions.NoRegionError(),
    ],
    ids=type,
)
def test_missing_credentials_are_systemic(exc: Exception) -> None:
    outcome = classify_exception(exc)
    assert outcome.kind is Kind.SYSTEMIC
    assert outcome.code == type(exc).__name__


@pytest.mark.parametrize(
    "exc",
    [
        botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
        botocore.exceptions.ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
        botocore.exceptions.ConnectTimeoutError(endpoint_url="http://127.0.0.1:1"),
        aiohttp.ServerDisconnectedError(),
        ConnectionResetError(),
        TimeoutError(),
    ],
    ids=type,
)
def test_network_failures_are_transient(exc: Exception) -> None:
    outcome = classify_exception(exc)
    assert outcome.kind is Kind.TRANSIENT
    assert outcome.code == type(exc).__name__


def test_an_unexpected_exception_is_transient_and_named() -> None:
    outcome = classify_exception(RuntimeError())
    assert outcome.kind is Kind.TRANSIENT
    assert outcome.code == "RuntimeError"
    assert outcome.message


def test_an_invalid_message_is_permanent_with_its_validation_code() -> None:
    outcome = classify_exception(InvalidMessage("BadEventId", "EventId has a space", "EventId"))
    assert outcome.kind is Kind.PERMANENT
    assert outcome.code == "BadEventId"
    assert outcome.message == "EventId has a space"


@given(code=st.text(max_size=60), message=st.text(max_size=200), status=st.integers(0, 999))
def test_classify_exception_never_raises_for_any_code_or_message(
    code: str, message: str, status: int
) -> None:
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    error = botocore.exceptions.ClientError(response, OPERATION)
    outcome = classify_exception(error)
    assert outcome.kind in Kind
    assert outcome.kind is not Kind.SUCCESS
    assert outcome.code
    if code:
        assert outcome.code == code
        assert outcome.kind is classify_error_code(code, message)


@given(code=st.text(max_size=60), message=st.text(max_size=200))
def test_only_an_untyped_error_is_read_as_throttling_from_its_message(
    code: str, message: str
) -> None:
    kind = classify_error_code(code, message)
    if kind is Kind.THROTTLED and code not in THROTTLING_CODES:
        assert not code or code.isdigit()
        assert "rate exceeded" in message.lower()
