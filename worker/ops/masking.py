"""Usernames masked for printing: a DLQ sample shows a keyed digest where the username was.

Usernames are marked sensitive in Cognito's model and are often e-mail addresses, so an operator
tool that prints message bodies masks them whatever the body's shape.
"""

from __future__ import annotations

import json
import re
from typing import Any

from worker.contract import parse_verdict, username_digest
from worker.errors import InvalidMessage

SAMPLE_CHARS = 300
USER_MASK = "user#"
_USERNAME = "username"  # matched in any case: a producer's "username" is one too
_KEYED_USERNAME = re.compile(r'\\*"Username\\*"\s*:\s*', re.IGNORECASE)
_SIMPLE_STRING = re.compile(r'(\\*")([^"\\]*)(\\*")')


def masked_body(body: str, key: bytes) -> str:
    """The body fit to print: a verdict with its username replaced by its keyed digest, or a
    truncated, JSON-escaped prefix with every Username value masked."""
    try:
        verdict = parse_verdict(body)
    except InvalidMessage:
        pass
    else:
        shown = verdict.to_request() | {"Username": _mask(verdict.username, key)}
        return json.dumps(shown, ensure_ascii=False)
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        text = json.dumps(_masked_text(body, key), ensure_ascii=False)
    else:
        text = json.dumps(_masked_json(document, key), ensure_ascii=False)
    return text[:SAMPLE_CHARS] + ("…" if len(text) > SAMPLE_CHARS else "")


def _mask(username: str, key: bytes) -> str:
    return f"{USER_MASK}{username_digest(username, key)}"


def _masked_json(value: Any, key: bytes) -> Any:
    """`value` with every username member masked, inside JSON-in-a-string (SNS) too."""
    if isinstance(value, dict):
        return {
            name: (
                _mask(str(member), key) if name.lower() == _USERNAME else _masked_json(member, key)
            )
            for name, member in value.items()
        }
    if isinstance(value, list):
        return [_masked_json(item, key) for item in value]
    if isinstance(value, str) and _USERNAME in value.lower():
        try:
            inner = json.loads(value)
        except (ValueError, RecursionError):
            return _masked_text(value, key)
        return json.dumps(_masked_json(inner, key), ensure_ascii=False)
    return value


def _masked_text(text: str, key: bytes) -> str:
    """Text that is not JSON, with each username value masked.

    A simple quoted value is replaced by its digest; where a value cannot be told apart from
    what follows it, everything from there on is cut: better a short sample than a leak.
    """
    out: list[str] = []
    position = 0
    while (found := _KEYED_USERNAME.search(text, position)) is not None:
        out.append(text[position : found.end()])
        value = _SIMPLE_STRING.match(text, found.end())
        if value is None or value.group(1) != value.group(3):
            out.append("<masked>")
            return "".join(out)
        out.append(f"{value.group(1)}{_mask(value.group(2), key)}{value.group(3)}")
        position = value.end()
    out.append(text[position:])
    return "".join(out)
