"""Parsers of setting values: each takes the raw text of a flag or variable and returns the
value, or raises ValueError with the reason in plain words (worker.config names the setting)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from urllib.parse import urlparse


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be a whole number of at least 1")
    return value


def port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError("must be a port number from 0 to 65535 (0 turns it off)")
    return value


def seconds(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = float(text)
        if not low <= value <= high:
            raise ValueError(f"must be a number of seconds from {low:g} to {high:g}")
        return value

    return parse


def rate(text: str) -> float:
    value = float(text)
    if not 0 < value <= 10_000:
        raise ValueError("must be a number of calls per second above 0")
    return value


def queue_url(text: str) -> str:
    parsed = urlparse(text)
    if parsed.scheme not in ("http", "https") or not parsed.netloc or len(parsed.path) < 2:
        raise ValueError(
            "must be an SQS queue URL such as https://sqs.eu-west-1.amazonaws.com/123456789012/name"
        )
    return text


# A host name as DNS allows it (RFC 1123 labels), for addresses that are not IP literals.
_HOST_NAME = re.compile(r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+")


def bind_address(text: str) -> str:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        if not _HOST_NAME.fullmatch(text) or text.replace(".", "").isdigit():
            raise ValueError(
                "must be an IP address (127.0.0.1, 0.0.0.0, ::) or a host name, without a port"
            ) from None
    return text


def choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.lower() not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return text.lower()

    return parse


def hash_key(text: str) -> bytes:
    if len(text) < 16:
        raise ValueError("must be at least 16 characters long")
    try:
        return text.encode()
    except UnicodeEncodeError:
        # Not from the exception: its text would quote a piece of the secret.
        raise ValueError("must be valid UTF-8 text") from None
