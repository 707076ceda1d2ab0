"""Fuzzed message bodies: hypothesis-generated text and JSON, random bytes, deep nesting.

SQS carries bodies as text restricted to XML characters (#x9 | #xA | #xD | #x20-#xD7FF |
#xE000-#xFFFD | #x10000-#x10FFFF) of at most 1 MiB of UTF-8. moto checks neither, so
``sqs_rejection`` applies the real service's rule and such bodies are reported as unsendable
rather than sent: invalid UTF-8 in particular can never reach the worker through SQS.

The expected fate of a sendable body comes from the contract's own parser: a body it rejects
must be dead-lettered with that ValidationCode; one it accepts names a pool that does not
exist, so Cognito must refuse it for good.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from tests.faults.workload import RESOURCE_NOT_FOUND, USER_NOT_FOUND, Planned
from worker.contract import MAX_BODY_BYTES, parse_verdict
from worker.errors import InvalidMessage

_NOT_XML_CHAR = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
DEEP_LEVELS = 100_000
# A pool id that matches the model's pattern but is never seeded.
PHANTOM_POOL = "us-east-1_Phantom0"


def sqs_rejection(body: str) -> str | None:
    """Why real SQS would refuse to carry `body`, or None if it would."""
    if not body:
        return "an empty body"
    if match := _NOT_XML_CHAR.search(body):
        return f"character U+{ord(match.group()):04X} is not allowed in a message"
    if len(body.encode("utf-8", "surrogatepass")) > MAX_BODY_BYTES:
        return "longer than 1 MiB"
    return None


def expected(body: str, label: str) -> Planned:
    """The fate the contract assigns to `body`."""
    try:
        parse_verdict(body)
    except InvalidMessage as exc:
        return Planned.dead_letter(body, label, exc.code)
    return Planned.dead_letter(
        body, f"{label} (contract-valid)", RESOURCE_NOT_FOUND, USER_NOT_FOUND
    )


# Mostly characters SQS can carry, so most drawn bodies are sent; the raw random bytes below
# cover the unsendable ones.
_chars = st.characters(exclude_categories=["Cs", "Cc"], include_characters="\t\n\r")
_json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(_chars, max_size=40)
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.text(_chars, max_size=10), inner, max_size=5)
    ),
    max_leaves=30,
)
_field_values = st.one_of(
    st.text(_chars, max_size=200),
    st.sampled_from(["Valid", "Invalid", "VALID", "valid ", "Válid", ""]),
    _json_values,
)
# Objects shaped like a verdict with fuzzed values: the bodies most likely to slip through.
_verdict_like = st.fixed_dictionaries(
    {},
    optional={
        "UserPoolId": st.one_of(st.just(PHANTOM_POOL), _field_values),
        "Username": _field_values,
        "EventId": _field_values,
        "FeedbackValue": _field_values,
        "Type": st.sampled_from(["Notification", "Other"]),
        "Message": _field_values,
        "detail": _json_values,
        "detail-type": st.text(_chars, max_size=5),
        "source": st.text(_chars, max_size=5),
    },
)
_all_fields = st.fixed_dictionaries(
    {
        "UserPoolId": st.one_of(st.just(PHANTOM_POOL), _field_values),
        "Username": st.one_of(st.just("someone"), _field_values),
        "EventId": st.one_of(st.just("ev-1"), _field_values),
        "FeedbackValue": _field_values,
    }
)
_bodies = st.one_of(
    _all_fields.map(lambda d: json.dumps(d, ensure_ascii=False)),
    st.text(_chars, max_size=500),
    _json_values.map(json.dumps),
    _verdict_like.map(lambda d: json.dumps(d, ensure_ascii=False)),
)


def hypothesis_bodies(count: int, seed: int) -> list[str]:
    """Up to `count` distinct bodies drawn by hypothesis (generation only, no shrinking)."""
    drawn: list[str] = []

    @hypothesis_seed(seed)
    @settings(
        max_examples=count,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(_bodies)
    def collect(body: str) -> None:
        drawn.append(body)

    collect()
    return list(dict.fromkeys(drawn))


def _random_bytes_as_text(rng: random.Random, *, sendable: bool) -> str:
    # Bytes decoded as Latin-1 give a text of arbitrary code points below 256; `sendable` keeps
    # to those SQS carries (no C0 controls but tab, newline and carriage return).
    alphabet = [b for b in range(256) if not sendable or b >= 0x20 or b in (9, 10, 13)]
    return bytes(rng.choices(alphabet, k=rng.randint(1, 400))).decode("latin-1")


def _invalid_utf8_as_text(rng: random.Random) -> str:
    # What a producer holding invalid UTF-8 would try to send: lone surrogates.
    return '{"Username": "' + chr(0xD800 + rng.randint(0, 0x7FF)) + '"}'


_SPECIAL: list[tuple[str, Callable[[random.Random], str]]] = [
    ("deep arrays", lambda rng: "[" * DEEP_LEVELS + "]" * DEEP_LEVELS),
    ("deep objects", lambda rng: '{"a":' * DEEP_LEVELS + "1" + "}" * DEEP_LEVELS),
    (
        "deep field",
        lambda rng: '{"UserPoolId":' + "[" * DEEP_LEVELS + "]" * DEEP_LEVELS + "}",
    ),
    ("huge junk", lambda rng: "z" * (MAX_BODY_BYTES - 1)),
    ("huge unicode", lambda rng: "é" * (MAX_BODY_BYTES // 2 - 1)),
    ("over the limit", lambda rng: "y" * (MAX_BODY_BYTES + 1)),
    ("nul byte", lambda rng: '{"Username": "a\x00b"}'),
    ("invalid utf-8", _invalid_utf8_as_text),
    ("non-characters", lambda rng: "\ufffe\uffff"),
]


def fuzz_plan(count: int, seed: int) -> tuple[list[Planned], list[tuple[str, str]]]:
    """`count` fuzzed bodies plus the special cases: (sendable plans, unsendable (label, why))."""
    rng = random.Random(seed)
    candidates: list[tuple[str, str]] = [("hypothesis", b) for b in hypothesis_bodies(count, seed)]
    candidates += [
        ("random bytes", _random_bytes_as_text(rng, sendable=True)) for _ in range(count // 5)
    ]
    candidates += [("raw random bytes", _random_bytes_as_text(rng, sendable=False))]
    candidates += [(label, make(rng)) for label, make in _SPECIAL]
    plans: list[Planned] = []
    unsendable: list[tuple[str, str]] = []
    for label, body in candidates:
        if (why := sqs_rejection(body)) is not None:
            unsendable.append((label, why))
        else:
            plans.append(expected(body, label))
    return plans, unsendable
