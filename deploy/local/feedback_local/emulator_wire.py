"""AWS JSON 1.1 wire details of the emulated service: error codes, their HTTP statuses and body
shapes, the untyped answers a load balancer gives, content type and request ids.

Statuses follow the Amazon Cognito API reference (the operation pages and Common Error Types);
tests/data/cognito_error_shapes.json records them with their sources, and a test holds every
code the emulator can answer to that record.
"""

from __future__ import annotations

import itertools
import json
import os
from typing import Any

from aiohttp import web

CONTENT_TYPE = "application/x-amz-json-1.1"
HTTP_CLIENT_ERROR = 400
HTTP_FORBIDDEN = 403
HTTP_NOT_FOUND = 404
HTTP_SERVER_ERROR = 500

# Error codes of the emulated service (the __type of an error body).
INVALID_PARAMETER = "InvalidParameterException"
RESOURCE_NOT_FOUND = "ResourceNotFoundException"
USER_NOT_FOUND = "UserNotFoundException"
ADDON_NOT_ENABLED = "UserPoolAddOnNotEnabledException"
NOT_AUTHORIZED = "NotAuthorizedException"
OPERATION_NOT_ENABLED = "OperationNotEnabledException"
FORBIDDEN = "ForbiddenException"
LIMIT_EXCEEDED = "LimitExceededException"
TOO_MANY_REQUESTS = "TooManyRequestsException"
INTERNAL_ERROR = "InternalErrorException"
MISSING_AUTH_TOKEN = "MissingAuthenticationTokenException"  # noqa: S105 - an error code
INVALID_SIGNATURE = "InvalidSignatureException"
INCOMPLETE_SIGNATURE = "IncompleteSignatureException"
UNRECOGNIZED_CLIENT = "UnrecognizedClientException"
EXPIRED_TOKEN = "ExpiredTokenException"  # noqa: S105 - an error code
ACCESS_DENIED = "AccessDeniedException"
UNKNOWN_OPERATION = "UnknownOperationException"
SERIALIZATION = "SerializationException"

# Every typed code the emulator can answer.
ERROR_CODES = frozenset(
    {
        INVALID_PARAMETER,
        RESOURCE_NOT_FOUND,
        USER_NOT_FOUND,
        ADDON_NOT_ENABLED,
        NOT_AUTHORIZED,
        OPERATION_NOT_ENABLED,
        FORBIDDEN,
        LIMIT_EXCEEDED,
        TOO_MANY_REQUESTS,
        INTERNAL_ERROR,
        MISSING_AUTH_TOKEN,
        INVALID_SIGNATURE,
        INCOMPLETE_SIGNATURE,
        UNRECOGNIZED_CLIENT,
        EXPIRED_TOKEN,
        ACCESS_DENIED,
        UNKNOWN_OPERATION,
        SERIALIZATION,
    }
)

# Statuses that are not 400 (the API reference's "HTTP Status Code" of each error).
_STATUS = {
    INTERNAL_ERROR: HTTP_SERVER_ERROR,
    ACCESS_DENIED: HTTP_FORBIDDEN,
    EXPIRED_TOKEN: HTTP_FORBIDDEN,
    UNRECOGNIZED_CLIENT: HTTP_FORBIDDEN,
    MISSING_AUTH_TOKEN: HTTP_FORBIDDEN,
    UNKNOWN_OPERATION: HTTP_NOT_FOUND,
}
# Cognito spells the message member "Message" in a SerializationException, "message" elsewhere.
_MESSAGE_KEY = {SERIALIZATION: "Message"}

# Answers with no __type, named here for injection and for the stats.
HTTP_503 = "HTTP503"  # a load balancer's 503: HTML body
HTTP_502 = "HTTP502"  # a load balancer's 502: HTML body
HTTP_429 = "HTTP429"  # a 429 with an empty body
UNTYPED_THROTTLE = "UntypedThrottle"  # 400 {"message": "Rate exceeded"}
DROPPED_CONNECTION = "DroppedConnection"
UNTYPED_ANSWERS = frozenset({HTTP_503, HTTP_502, HTTP_429})
THROTTLE_OUTCOMES = frozenset({TOO_MANY_REQUESTS, UNTYPED_THROTTLE, HTTP_429})

_GATEWAY_PAGE = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {reason}</h1></center>\r\n</body>\r\n</html>\r\n"
)
_UNTYPED_STATUS = {
    HTTP_503: (503, "Service Temporarily Unavailable"),
    HTTP_502: (502, "Bad Gateway"),
}

# Cheap unique request ids: a per-process random prefix and a counter, in UUID layout.
_REQUEST_ID_PREFIX = os.urandom(8).hex()
_request_counter = itertools.count(1)


def request_id() -> str:
    p, n = _REQUEST_ID_PREFIX, f"{next(_request_counter):016x}"
    return f"{p[:8]}-{p[8:12]}-{p[12:16]}-{n[:4]}-{n[4:]}"


def status_of(code: str) -> int:
    """The HTTP status AWS documents for an error code."""
    return _STATUS.get(code, HTTP_CLIENT_ERROR)


def message_key(code: str) -> str:
    return _MESSAGE_KEY.get(code, "message")


class ApiError(Exception):
    """An error answer of the emulated service, in the shape real AWS sends."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status_of(code)

    def response(self) -> web.Response:
        if self.code == UNTYPED_THROTTLE:
            return untyped_throttle_response()
        body = {"__type": self.code, message_key(self.code): self.message}
        return json_response(body, self.status, error_type=self.code)


def json_response(body: Any, status: int = 200, *, error_type: str | None = None) -> web.Response:
    headers = {"x-amzn-RequestId": request_id()}
    if error_type is not None:
        headers["x-amzn-ErrorType"] = error_type
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(),
        status=status,
        headers=headers,
        content_type=CONTENT_TYPE,
    )


def untyped_throttle_response() -> web.Response:
    """The bare throttle Cognito has been seen to send: no __type, so botocore's code is "400"."""
    return json_response({"message": "Rate exceeded"}, HTTP_CLIENT_ERROR)


def untyped_response(kind: str) -> web.Response:
    """HTTP503/HTTP502: a load balancer's HTML page; HTTP429: a 429 with an empty body. None
    has a __type, so botocore reports the status as the code ("503", "502", "429")."""
    if kind == HTTP_429:
        return web.Response(status=429, body=b"")
    status, reason = _UNTYPED_STATUS[kind]
    return web.Response(
        status=status,
        text=_GATEWAY_PAGE.format(status=status, reason=reason),
        content_type="text/html",
    )
