"""Temporary credentials, as a container's credentials endpoint hands them out, and their check.

``GET /_emulator/container-credentials`` answers the ECS container-credentials JSON, so that
botocore's container provider (``AWS_CONTAINER_CREDENTIALS_FULL_URI`` pointed there) fetches and
refreshes them. A session token is self-describing and signed with a per-process key: it carries
its access key id, its expiry and the generation it was issued in, so nothing is stored per
token. ``expire_all`` starts a new generation: every token issued before it is expired at once.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from typing import Any

from feedback_local.emulator_wire import EXPIRED_TOKEN, UNRECOGNIZED_CLIENT, ApiError

SESSION_KEY_PREFIX = "ASIA"  # AWS's prefix for temporary access key ids
ACCOUNT_ID = "123456789012"  # the account every local stand-in (moto too) pretends to be
TASK_ROLE = "feedback-worker"
TASK_ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/{TASK_ROLE}"
INVALID_TOKEN_MESSAGE = "The security token included in the request is invalid."  # noqa: S105
EXPIRED_TOKEN_MESSAGE = "The security token included in the request is expired"  # noqa: S105
_KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_KEY_LENGTH = 16


@dataclass(frozen=True)
class SessionCredentials:
    access_key: str
    secret_key: str
    token: str
    expires_at: float  # epoch seconds

    def to_container_json(self) -> dict[str, Any]:
        """The container credentials endpoint's answer (what botocore's provider reads)."""
        expiration = dt.datetime.fromtimestamp(self.expires_at, dt.UTC)
        return {
            "AccessKeyId": self.access_key,
            "SecretAccessKey": self.secret_key,
            "Token": self.token,
            "Expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "RoleArn": TASK_ROLE_ARN,
        }


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionIssuer:
    """Issues session credentials and checks the tokens requests carry."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or os.urandom(32)
        self._generation = 0
        self._issued_in_generation = 0
        self.last: SessionCredentials | None = None

    def issue(self, lifetime_s: float, now: float) -> SessionCredentials:
        access_key = SESSION_KEY_PREFIX + "".join(
            secrets.choice(_KEY_ALPHABET) for _ in range(_KEY_LENGTH)
        )
        expires_at = now + lifetime_s
        claims = {"k": access_key, "e": expires_at, "g": self._generation}
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        token = f"{payload}.{self._mac(payload)}"
        self.last = SessionCredentials(access_key, self._secret_for(access_key), token, expires_at)
        self._issued_in_generation += 1
        return self.last

    def expire_all(self) -> int:
        """Expire every token issued so far; returns how many were issued since the last call."""
        expired = self._issued_in_generation
        self._generation += 1
        self._issued_in_generation = 0
        return expired

    def secret_for(self, access_key: str, token: str, now: float) -> str:
        """The secret key of a session's access key, once its token checks out; otherwise
        the ApiError AWS answers (an invalid token, or an expired one)."""
        claims = self._claims(token)
        if claims is None or claims.get("k") != access_key:
            raise ApiError(UNRECOGNIZED_CLIENT, INVALID_TOKEN_MESSAGE)
        expires_at, generation = claims.get("e"), claims.get("g")
        if not isinstance(expires_at, int | float) or not isinstance(generation, int):
            raise ApiError(UNRECOGNIZED_CLIENT, INVALID_TOKEN_MESSAGE)
        if now >= expires_at or generation < self._generation:
            raise ApiError(EXPIRED_TOKEN, EXPIRED_TOKEN_MESSAGE)
        return self._secret_for(access_key)

    def _claims(self, token: str) -> dict[str, Any] | None:
        payload, _, mac = token.partition(".")
        if not mac or not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            claims = json.loads(_unb64(payload))
        except (ValueError, binascii.Error):
            return None
        return claims if isinstance(claims, dict) else None

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def _secret_for(self, access_key: str) -> str:
        digest = hmac.new(self._key, b"secret/" + access_key.encode(), hashlib.sha256).digest()
        return base64.b64encode(digest).decode()[:40]
