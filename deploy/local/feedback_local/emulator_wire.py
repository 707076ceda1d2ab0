"""AWS JSON 1.1 wire details of the emulated service: error codes, their HTTP statuses and body
shapes, content type and request ids.

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
TOO_MANY_REQUESTS = "TooManyRequestsException"
INTERNAL_ERROR = "InternalErrorException"
MISSING_AUTH_TOKEN = "MissingAuthenticationTokenException"  # noqa: S105 - an error code
INVALID_SIGNATURE = "InvalidSignatureException"
INCOMPLETE_SIGNATURE = "IncompleteSignatureException"
UNRECOGNIZED_CLIENT = "UnrecognizedClientException"
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
        TOO_MANY_REQUESTS,
        INTERNAL_ERROR,
        MISSING_AUTH_TOKEN,
        INVALID_SIGNATURE,
        INCOMPLETE_SIGNATURE,
        UNRECOGNIZED_CLIENT,
        ACCESS_DENIED,
        UNKNOWN_OPERATION,
        SERIALIZATION,
    }
)

# Statuses that are not 400 (the API reference's "HTTP Status Code" of each error).
_STATUS = {
    INTERNAL_ERROR: HTTP_SERVER_ERROR,
    ACCESS_DENIED: HTTP_FORBIDDEN,
    UNRECOGNIZED_CLIENT: HTTP_FORBIDDEN,
    MISSING_AUTH_TOKEN: HTTP_FORBIDDEN,
    UNKNOWN_OPERATION: HTTP_NOT_FOUND,
}
# Cognito spells the message member "Message" in a SerializationException, "message" elsewhere.
_MESSAGE_KEY = {SERIALIZATION: "Message"}

# Outcomes that have no __type on the wire, named for the stats only.
UNTYPED_THROTTLE = "UntypedThrottle"
DROPPED_CONNECTION = "DroppedConnection"
THROTTLE_OUTCOMES = frozenset({TOO_MANY_REQUESTS, UNTYPED_THROTTLE})

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
