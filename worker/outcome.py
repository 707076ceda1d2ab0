"""What a Cognito call (or the parser) said about a message, classified by error code.

Classification is by error *code*, never by HTTP status: Cognito has answered throttling with
HTTP 400, and even with an untyped ``{"message": "Rate exceeded"}`` body that botocore reports
as code ``"400"``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import botocore.exceptions
from aiohttp import ClientError as AiohttpClientError

from worker.errors import InvalidMessage


class Kind(enum.Enum):
    """What kind of result a call had, which decides what happens to the message."""

    SUCCESS = "success"
    THROTTLED = "throttled"
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    SYSTEMIC = "systemic"


@dataclass(frozen=True, slots=True)
class Outcome:
    """The classified result of one attempt: its kind, an error code and a message."""

    kind: Kind
    code: str = ""
    message: str = ""


SUCCESS = Outcome(Kind.SUCCESS)

THROTTLING_CODES = frozenset(
    {
        "TooManyRequestsException",
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "SlowDown",
    }
)
PERMANENT_CODES = frozenset(
    {
        "InvalidParameterException",
        "UserNotFoundException",
        "ResourceNotFoundException",
        "NotAuthorizedException",
        "UserPoolAddOnNotEnabledException",
    }
)
# Our deployment's identity is refused: permissions, or the credentials themselves.
ACCESS_DENIED_CODES = frozenset({"AccessDeniedException", "AccessDenied"})
REFUSED_CREDENTIAL_CODES = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "ExpiredTokenException",
        "ExpiredToken",
        "RequestExpired",
        "MissingAuthenticationToken",
        "MissingAuthenticationTokenException",
    }
)
SYSTEMIC_CODES = ACCESS_DENIED_CODES | REFUSED_CREDENTIAL_CODES
# The body of an untyped throttle, as Cognito has sent it.
_RATE_EXCEEDED = "rate exceeded"

# Exceptions that mean "no usable credentials": our deployment's fault, never the message's.
CREDENTIAL_ERRORS: tuple[type[BaseException], ...] = (
    botocore.exceptions.NoCredentialsError,
    botocore.exceptions.PartialCredentialsError,
    botocore.exceptions.CredentialRetrievalError,
    botocore.exceptions.ProfileNotFound,
    botocore.exceptions.NoRegionError,
)
# The endpoint could not be reached or did not answer in time.
NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectionError,
    botocore.exceptions.HTTPClientError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ConnectTimeoutError,
    AiohttpClientError,
    OSError,
)
# Everything an AWS call may raise besides a bug of ours.
AWS_CALL_ERRORS: tuple[type[BaseException], ...] = (
    botocore.exceptions.ClientError,
    botocore.exceptions.BotoCoreError,
    AiohttpClientError,
    OSError,
)


def classify_error_code(code: str, message: str = "") -> Kind:
    """The kind of a service error, from its code (and, for untyped errors, its message)."""
    if code in THROTTLING_CODES:
        return Kind.THROTTLED
    if code in PERMANENT_CODES:
        return Kind.PERMANENT
    if code in SYSTEMIC_CODES:
        return Kind.SYSTEMIC
    if (not code or code.isdigit()) and _RATE_EXCEEDED in message.lower():
        return Kind.THROTTLED
    # InternalErrorException, 5xx, and any code we do not know: retry, then dead-letter.
    return Kind.TRANSIENT


def classify_exception(exc: BaseException) -> Outcome:
    """Classify what a Cognito call raised. Never raises; unknown errors are transient."""
    if isinstance(exc, InvalidMessage):
        return Outcome(Kind.PERMANENT, exc.code, exc.message)
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "")
        message = str(error.get("Message") or "")
        if not code:
            code = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        return Outcome(classify_error_code(code, message), code or "UnknownError", message)
    if isinstance(exc, CREDENTIAL_ERRORS):
        return Outcome(Kind.SYSTEMIC, type(exc).__name__, str(exc))
    if isinstance(exc, NETWORK_ERRORS):
        return Outcome(Kind.TRANSIENT, type(exc).__name__, str(exc))
    return Outcome(Kind.TRANSIENT, type(exc).__name__, str(exc) or type(exc).__name__)
