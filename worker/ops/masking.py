"""Usernames masked for printing: a DLQ sample shows a keyed digest where a username was.

Usernames are marked sensitive in Cognito's model and are often e-mail addresses, and a body
in the DLQ may have any shape (that is often why it is there). So whatever can be parsed is:
a verdict, JSON (with JSON inside its strings, as SNS sends it), a Python-style dict, a
form-encoded body; the value of every member whose name looks like a username is replaced by
its digest, in any case and spelling (``Username``, ``user_name``, ``User``, ``login``,
``email``...). What cannot be parsed is masked as text: a value after such a name is cut off.
Last, anything shaped like an e-mail address, anywhere, is replaced by its digest too.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode

from worker.contract import parse_verdict, username_digest
from worker.errors import InvalidMessage

SAMPLE_CHARS = 300
USER_MASK = "user#"
MASKED = "<masked>"
# Member names that hold a username, compared without case, "_" or "-".
USERNAME_NAMES = frozenset(
    {"username", "user", "login", "loginname", "email", "emailaddress", "mail", "userid", "sub"}
)
# name[quote] separator [quote]: the start of a username's value in unparsed text.
_NAMED_VALUE = re.compile(
    r"""(?P<name>[\w-]+)(?P<q1>\\*["']?)\s*[:=]\s*(?P<q2>\\*["']?)""", re.IGNORECASE
)
_EMAIL = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+", re.UNICODE)
_FORM = re.compile(r"^[^=&\s]+=[^&\s]*(?:&[^=&\s]+=[^&\s]*)*$")


def masked_body(body: str, key: bytes) -> str:
    """The body fit to print: every username replaced by its keyed digest, at most
    SAMPLE_CHARS long."""
    try:
        verdict = parse_verdict(body)
    except InvalidMessage:
        text = _masked_any(body, key)
    else:
        shown = verdict.to_request() | {"Username": _mask(verdict.username, key)}
        text = json.dumps(shown, ensure_ascii=False)
    text = _EMAIL.sub(lambda found: _mask(found.group(0), key), text)
    return text[:SAMPLE_CHARS] + ("…" if len(text) > SAMPLE_CHARS else "")


def is_username_name(name: str) -> bool:
    return re.sub(r"[_\-\s]", "", name).lower() in USERNAME_NAMES


def _mask(username: str, key: bytes) -> str:
    return f"{USER_MASK}{username_digest(username, key)}"


def _masked_any(body: str, key: bytes) -> str:
    """The first reading of `body` that parses, masked: JSON, a Python literal, a form, text."""
    try:
        return json.dumps(_masked_value(json.loads(body), key), ensure_ascii=False)
    except (ValueError, RecursionError):
        pass
    try:
        literal = ast.literal_eval(body)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        pass
    else:
        if isinstance(literal, dict | list):
            return json.dumps(_masked_value(literal, key), ensure_ascii=False, default=str)
    if _FORM.match(body.strip()):
        pairs = parse_qsl(body.strip(), keep_blank_values=True)
        return urlencode([(n, _mask(v, key) if is_username_name(n) else v) for n, v in pairs])
    return json.dumps(_masked_text(body, key), ensure_ascii=False)


def _masked_value(value: Any, key: bytes) -> Any:
    """`value` with every username member masked, inside JSON-in-a-string (SNS) too."""
    if isinstance(value, dict):
        return {
            name: _mask(str(member), key)
            if is_username_name(str(name))
            else _masked_value(member, key)
            for name, member in value.items()
        }
    if isinstance(value, list | tuple):
        return [_masked_value(item, key) for item in value]
    if isinstance(value, str) and value[:1] in "{[":
        try:
            inner = json.loads(value)
        except (ValueError, RecursionError):
            return _masked_text(value, key)
        return json.dumps(_masked_value(inner, key), ensure_ascii=False)
    return value


def _masked_text(text: str, key: bytes) -> str:
    """Text that parses as nothing, with each username's value masked.

    A value quoted plainly is replaced by its digest; where a value's end cannot be told, all
    that follows is cut: better a short sample than a leak.
    """
    out: list[str] = []
    position = 0
    for found in _NAMED_VALUE.finditer(text):
        if found.start() < position or not is_username_name(found.group("name")):
            continue
        out.append(text[position : found.end()])
        quote = found.group("q2")
        closing = text.find(quote, found.end()) if quote else -1
        if not quote or closing < 0 or "\n" in text[found.end() : closing]:
            out.append(MASKED)
            return "".join(out)
        out.append(_mask(text[found.end() : closing], key))
        position = closing
    out.append(text[position:])
    return "".join(out)
