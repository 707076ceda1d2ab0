"""AWS JSON 1.1 wire details of the emulated service: error shape, content type, request ids."""

from __future__ import annotations

import itertools
import json
import os
from typing import Any

from aiohttp import web

CONTENT_TYPE = "application/x-amz-json-1.1"
HTTP_CLIENT_ERROR = 400
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


class ApiError(Exception):
    """An error answer of the emulated service, in the shape real AWS sends."""

    def __init__(self, code: str, message: str, status: int = HTTP_CLIENT_ERROR) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status

    def response(self) -> web.Response:
        return json_response(
            {"__type": self.code, "message": self.message}, self.status, error_type=self.code
        )


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
