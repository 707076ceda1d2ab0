"""What a Cognito call (or the parser) said about a message, classified by error code.

Classification is by error *code*, never by HTTP status: Cognito has answered throttling with
HTTP 400, and even with an untyped ``{"message": "Rate exceeded"}`` body that botocore reports
as code ``"400"``. Every error the service model lists for the calls the worker makes has a row
in ``CODES`` (a test walks botocore's model); a code nobody knows is transient, with attempts.

A failure that is not the message's fault also has a *scope*, the widest thing it says is
wrong: one user pool (the worker's IAM policy leaves it out, or its WAF refuses us), one
region (its endpoint refuses our signature), or the whole worker (its credentials).
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


class Scope(enum.Enum):
    """What a failure is about: the message alone, or a pool, region or the whole worker."""

    MESSAGE = "message"
    POOL = "pool"
    REGION = "region"
    WORKER = "worker"


@dataclass(frozen=True, slots=True)
class Outcome:
    """The classified result of one attempt: its kind and scope, an error code and a message."""

    kind: Kind
    code: str = ""
    message: str = ""
    scope: Scope = Scope.MESSAGE
    known: bool = True  # False for a code no row of CODES names


SUCCESS = Outcome(Kind.SUCCESS)

_THROTTLED = (Kind.THROTTLED, Scope.MESSAGE)
_TRANSIENT = (Kind.TRANSIENT, Scope.MESSAGE)
_PERMANENT = (Kind.PERMANENT, Scope.MESSAGE)
# The pool's own set-up (plan, threat protection, features): its verdicts fail until it changes.
_POOL_SETUP = (Kind.PERMANENT, Scope.POOL)
_POOL_DENIED = (Kind.SYSTEMIC, Scope.POOL)
_REGION_REFUSED = (Kind.SYSTEMIC, Scope.REGION)
_IDENTITY_REFUSED = (Kind.SYSTEMIC, Scope.WORKER)

CODES: dict[str, tuple[Kind, Scope]] = {
    # The documented errors of AdminUpdateAuthEventFeedback and AdminListUserAuthEvents.
    "TooManyRequestsException": _THROTTLED,
    "InternalErrorException": _TRANSIENT,
    "InvalidParameterException": _PERMANENT,
    "UserNotFoundException": _PERMANENT,
    "ResourceNotFoundException": _PERMANENT,
    "UserPoolAddOnNotEnabledException": _POOL_SETUP,
    "OperationNotEnabledException": _POOL_SETUP,
    "FeatureUnavailableInTierException": _POOL_SETUP,
    "InvalidUserPoolConfigurationException": _POOL_SETUP,
    # "User isn't authorized": for an admin call, the caller for this pool.
    "NotAuthorizedException": _POOL_DENIED,
    "AccessDeniedException": _POOL_DENIED,
    "AccessDenied": _POOL_DENIED,
    # The pool's web ACL (AWS WAF) refuses the request.
    "ForbiddenException": _POOL_DENIED,
    # An account limit on a resource, not the request rate: it may pass, so it gets attempts.
    "LimitExceededException": _TRANSIENT,
    # Common AWS errors of any JSON API.
    "ThrottlingException": _THROTTLED,
    "Throttling": _THROTTLED,
    "ThrottledException": _THROTTLED,
    "RequestLimitExceeded": _THROTTLED,
    "SlowDown": _THROTTLED,
    "ServiceUnavailable": _TRANSIENT,
    "ServiceUnavailableException": _TRANSIENT,
    "InternalFailure": _TRANSIENT,
    "RequestTimeout": _TRANSIENT,
    "RequestTimeoutException": _TRANSIENT,
    # The region's endpoint refuses our signature: a VPC or regional endpoint configured for
    # another region, or the signature itself (a clock far off shows in every region).
    "InvalidSignatureException": _REGION_REFUSED,
    "SignatureDoesNotMatch": _REGION_REFUSED,
    "IncompleteSignature": _REGION_REFUSED,
    # The identity itself: unknown, expired or malformed credentials.
    "UnrecognizedClientException": _IDENTITY_REFUSED,
    "InvalidClientTokenId": _IDENTITY_REFUSED,
    "InvalidAccessKeyId": _IDENTITY_REFUSED,
    "ExpiredTokenException": _IDENTITY_REFUSED,
    "ExpiredToken": _IDENTITY_REFUSED,
    "RequestExpired": _IDENTITY_REFUSED,
    "MissingAuthenticationToken": _IDENTITY_REFUSED,
    "MissingAuthenticationTokenException": _IDENTITY_REFUSED,
    # STS answers while refreshing credentials (IRSA's AssumeRoleWithWebIdentity and the like).
    "InvalidIdentityToken": _IDENTITY_REFUSED,
    "IDPCommunicationError": _IDENTITY_REFUSED,
    "IDPRejectedClaim": _IDENTITY_REFUSED,
    "RegionDisabledException": _IDENTITY_REFUSED,
}
THROTTLING_CODES = frozenset(c for c, (kind, _) in CODES.items() if kind is Kind.THROTTLED)
PERMANENT_CODES = frozenset(c for c, (kind, _) in CODES.items() if kind is Kind.PERMANENT)
ACCESS_DENIED_CODES = frozenset({"AccessDeniedException", "AccessDenied"})
REFUSED_CREDENTIAL_CODES = frozenset(
    c for c, (kind, scope) in CODES.items() if kind is Kind.SYSTEMIC and scope is not Scope.POOL
)
SYSTEMIC_CODES = frozenset(c for c, (kind, _) in CODES.items() if kind is Kind.SYSTEMIC)
# HTTP statuses botocore reports as the code of an error without a type (an HTML page).
_UNTYPED_THROTTLE = "429"
_UNTYPED_SERVER_ERROR = "5"
# The body of an untyped throttle, as Cognito has sent it.
_RATE_EXCEEDED = "rate exceeded"
# Operations botocore calls on its own to get credentials: their failures are the identity's.
_CREDENTIAL_OPERATIONS = frozenset(
    {"AssumeRole", "AssumeRoleWithWebIdentity", "AssumeRoleWithSAML", "GetRoleCredentials"}
)

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


def classify_error_code(code: str, message: str = "") -> tuple[Kind, Scope]:
    """The kind and scope of a service error, from its code (and, untyped, its message)."""
    known = CODES.get(code)
    if known is not None:
        return known
    if code == _UNTYPED_THROTTLE:
        return _THROTTLED
    if (not code or code.isdigit()) and _RATE_EXCEEDED in message.lower():
        return _THROTTLED
    # 5xx pages, InternalErrorException's kin, and any code we do not know: retry, count.
    return _TRANSIENT


def is_known_code(code: str) -> bool:
    """Whether `code` has a row of its own (an HTTP status of an untyped answer has not)."""
    return code in CODES or code == _UNTYPED_THROTTLE or code.startswith(_UNTYPED_SERVER_ERROR)


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
        code = code or "UnknownError"
        if getattr(exc, "operation_name", "") in _CREDENTIAL_OPERATIONS:
            return Outcome(Kind.SYSTEMIC, code, message, Scope.WORKER)
        kind, scope = classify_error_code(code, message)
        return Outcome(kind, code, message, scope, known=is_known_code(code))
    if isinstance(exc, CREDENTIAL_ERRORS):
        return Outcome(Kind.SYSTEMIC, type(exc).__name__, str(exc), Scope.WORKER)
    if isinstance(exc, NETWORK_ERRORS):
        return Outcome(Kind.TRANSIENT, type(exc).__name__, str(exc))
    return Outcome(Kind.TRANSIENT, type(exc).__name__, str(exc) or type(exc).__name__, known=False)
