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
    CODES,
    PERMANENT_CODES,
    SYSTEMIC_CODES,
    THROTTLING_CODES,
    Kind,
    Scope,
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


# The calls the worker makes: the feedback itself, and the readback of a redriven verdict.
CALLED_OPERATIONS = ("AdminUpdateAuthEventFeedback", "AdminListUserAuthEvents")
# Listed for AdminUpdateAuthEventFeedback by newer service models than the pinned botocore's.
NEWER_MODEL_CODES = ("OperationNotEnabledException",)


def _model_error_codes() -> list[str]:
    codes = {
        shape.name
        for operation in CALLED_OPERATIONS
        for shape in _SERVICE.operation_model(operation).error_shapes
    }
    return sorted(codes | set(NEWER_MODEL_CODES))


@pytest.mark.parametrize("code", _model_error_codes())
def test_every_error_the_service_model_lists_for_our_calls_has_a_row(code: str) -> None:
    assert code in CODES, f"{code} is documented for a call the worker makes: classify it"


@pytest.mark.parametrize(
    ("code", "kind", "scope"),
    [
        ("TooManyRequestsException", Kind.THROTTLED, Scope.MESSAGE),
        ("InternalErrorException", Kind.TRANSIENT, Scope.MESSAGE),
        ("LimitExceededException", Kind.TRANSIENT, Scope.MESSAGE),
        ("InvalidParameterException", Kind.PERMANENT, Scope.MESSAGE),
        ("UserNotFoundException", Kind.PERMANENT, Scope.MESSAGE),
        ("ResourceNotFoundException", Kind.PERMANENT, Scope.MESSAGE),
        ("UserPoolAddOnNotEnabledException", Kind.PERMANENT, Scope.POOL),
        ("OperationNotEnabledException", Kind.PERMANENT, Scope.POOL),
        ("FeatureUnavailableInTierException", Kind.PERMANENT, Scope.POOL),
        ("InvalidUserPoolConfigurationException", Kind.PERMANENT, Scope.POOL),
        ("AccessDeniedException", Kind.SYSTEMIC, Scope.POOL),
        ("NotAuthorizedException", Kind.SYSTEMIC, Scope.POOL),
        ("ForbiddenException", Kind.SYSTEMIC, Scope.POOL),
        ("InvalidSignatureException", Kind.SYSTEMIC, Scope.REGION),
        ("UnrecognizedClientException", Kind.SYSTEMIC, Scope.WORKER),
        ("ExpiredTokenException", Kind.SYSTEMIC, Scope.WORKER),
        ("InvalidIdentityToken", Kind.SYSTEMIC, Scope.WORKER),
        ("429", Kind.THROTTLED, Scope.MESSAGE),
        ("503", Kind.TRANSIENT, Scope.MESSAGE),
        ("BrandNewException", Kind.TRANSIENT, Scope.MESSAGE),
    ],
)
def test_the_decision_table_of_error_codes(code: str, kind: Kind, scope: Scope) -> None:
    assert classify_error_code(code) == (kind, scope)


@pytest.mark.parametrize("code", sorted(THROTTLING_CODES))
def test_throttling_codes_are_throttled(code: str) -> None:
    assert classify_error_code(code)[0] is Kind.THROTTLED


@pytest.mark.parametrize("code", sorted(PERMANENT_CODES))
def test_permanent_codes_are_permanent(code: str) -> None:
    assert classify_error_code(code)[0] is Kind.PERMANENT


@pytest.mark.parametrize("code", sorted(SYSTEMIC_CODES))
def test_systemic_codes_are_systemic_with_a_scope_wider_than_the_message(code: str) -> None:
    kind, scope = classify_error_code(code)
    assert kind is Kind.SYSTEMIC
    assert scope is not Scope.MESSAGE


def test_an_unknown_code_is_marked_unknown_so_it_never_dead_letters_on_its_first_try() -> None:
    outcome = classify_exception(typed_error("BrandNewException", "?"))
    assert outcome.kind is Kind.TRANSIENT
    assert not outcome.known
    assert classify_exception(typed_error("InternalErrorException")).known


def test_a_failure_to_get_credentials_from_sts_is_the_whole_workers_problem() -> None:
    # IRSA: botocore calls AssumeRoleWithWebIdentity itself; its error surfaces from our call.
    response: Any = {"Error": {"Code": "InvalidParameterValue", "Message": "bad token"}}
    error = botocore.exceptions.ClientError(response, "AssumeRoleWithWebIdentity")
    outcome = classify_exception(error)
    assert (outcome.kind, outcome.scope) == (Kind.SYSTEMIC, Scope.WORKER)


def test_an_untyped_429_is_a_throttle() -> None:
    outcome = classify_exception(cognito_error(429, b""))
    assert outcome.kind is Kind.THROTTLED
    assert outcome.code == "429"


@pytest.mark.parametrize("status", [502, 503, 504])
def test_an_html_5xx_page_is_transient(status: int) -> None:
    outcome = classify_exception(
        cognito_error(status, b"<html><body>Service Unavailable</body></html>")
    )
    assert outcome.kind is Kind.TRANSIENT
    assert outcome.code == str(status)


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
        pytest.param("NotAuthorizedException", Kind.SYSTEMIC, id="not-authorized"),
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
def test_missing_credentials_are_systemic_for_the_whole_worker(exc: Exception) -> None:
    outcome = classify_exception(exc)
    assert outcome.kind is Kind.SYSTEMIC
    assert outcome.scope is Scope.WORKER
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
        assert outcome.kind is classify_error_code(code, message)[0]


@given(code=st.text(max_size=60), message=st.text(max_size=200))
def test_only_an_untyped_error_is_read_as_throttling_from_its_message(
    code: str, message: str
) -> None:
    kind, _ = classify_error_code(code, message)
    if kind is Kind.THROTTLED and code not in THROTTLING_CODES and code != "429":
        assert not code or code.isdigit()
        assert "rate exceeded" in message.lower()
