"""Parameter constraints read from botocore's own Cognito service model, never retyped.

botocore validates only required members, types and minimum lengths on the client; the
service enforces maximum length, pattern and enum. Both the message contract and the local
emulator check requests against the constraints loaded here, so they cannot drift from AWS.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import botocore.session
import regex

SERVICE_NAME = "cognito-idp"
FEEDBACK_OPERATION = "AdminUpdateAuthEventFeedback"
LIST_EVENTS_OPERATION = "AdminListUserAuthEvents"

# AWS patterns are Java regular expressions: \w there is ASCII-only, while \p{..} classes are
# Unicode. The `regex` module's ASCII flag would narrow \p{..} too, so \w is spelled out instead.
_JAVA_WORD_CLASS = "A-Za-z0-9_"


def _translate_java_pattern(pattern: str) -> str:
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            pair = pattern[i : i + 2]
            if pair == r"\w":
                out.append(_JAVA_WORD_CLASS if in_class else f"[{_JAVA_WORD_CLASS}]")
            else:
                out.append(pair)
            i += 2
            continue
        if char == "[":
            in_class = True
        elif char == "]":
            in_class = False
        out.append(char)
        i += 1
    return "".join(out)


@dataclass(frozen=True)
class FieldConstraint:
    """What the service model allows for one string member of a request."""

    name: str
    required: bool
    min_length: int | None
    max_length: int | None
    pattern: str | None
    enum: tuple[str, ...]
    sensitive: bool

    @functools.cached_property
    def portable_pattern(self) -> str | None:
        """The pattern with Java's ASCII-only \\w spelled out, so that ECMA-262 (JSON Schema),
        Python's re and the regex module all read it as the service does."""
        return _translate_java_pattern(self.pattern) if self.pattern else None

    @functools.cached_property
    def _compiled(self) -> regex.Pattern[str] | None:
        return regex.compile(self.portable_pattern) if self.portable_pattern else None

    def violation(self, value: str) -> str | None:
        """Why `value` breaks this constraint, in plain words, or None if it is allowed.

        Lengths count Unicode code points, as Smithy's length trait does for strings.
        """
        if self.min_length is not None and len(value) < self.min_length:
            return f"shorter than {self.min_length} characters"
        if self.max_length is not None and len(value) > self.max_length:
            return f"longer than {self.max_length} characters"
        if self.enum and value not in self.enum:
            return f"not one of {', '.join(self.enum)}"
        compiled = self._compiled
        if compiled is not None and compiled.fullmatch(value) is None:
            return f"does not match the pattern {self.pattern}"
        return None


@functools.cache
def _service_model() -> Any:
    return botocore.session.get_session().get_service_model(SERVICE_NAME)


@functools.cache
def input_constraints(operation: str) -> dict[str, FieldConstraint]:
    """Constraints of every string member of `operation`'s input, keyed by member name."""
    shape = _service_model().operation_model(operation).input_shape
    required = set(shape.required_members)
    constraints: dict[str, FieldConstraint] = {}
    for name, member in shape.members.items():
        if member.type_name != "string":
            continue
        meta = member.metadata
        constraints[name] = FieldConstraint(
            name=name,
            required=name in required,
            min_length=meta.get("min"),
            max_length=meta.get("max"),
            pattern=meta.get("pattern"),
            enum=tuple(getattr(member, "enum", None) or ()),
            sensitive=bool(meta.get("sensitive", False)),
        )
    return constraints


@functools.cache
def operation_error_codes(operation: str) -> frozenset[str]:
    """The error codes the model documents for `operation`."""
    return frozenset(e.name for e in _service_model().operation_model(operation).error_shapes)


def target_prefix() -> str:
    """The X-Amz-Target prefix of the service, e.g. ``AWSCognitoIdentityProviderService``."""
    return str(_service_model().metadata["targetPrefix"])


@functools.cache
def input_integer_bounds(operation: str) -> dict[str, tuple[int | None, int | None]]:
    """(min, max) of every integer member of `operation`'s input, keyed by member name."""
    shape = _service_model().operation_model(operation).input_shape
    return {
        name: (member.metadata.get("min"), member.metadata.get("max"))
        for name, member in shape.members.items()
        if member.type_name == "integer"
    }


@functools.cache
def cognito_regions() -> frozenset[str]:
    """Every region botocore's endpoint data lists for Cognito user pools, in any partition.

    A pool id's prefix outside this set is no pool of AWS's: a verdict for it is refused
    rather than given a client, a rate and a metric series of its own. A region launched after
    the installed botocore is refused too, until botocore is upgraded.
    """
    session = botocore.session.get_session()
    return frozenset(
        region
        for partition in session.get_available_partitions()
        for region in session.get_available_regions(SERVICE_NAME, partition_name=partition)
    )
