"""What a fault run sends: seeded pools, users and events, and messages with known fates.

Every planned message says what must become of it: APPLY (a verdict for a seeded event; its
event must end with the newest verdict sent for it) or DEAD_LETTER (with one of a set of
ErrorCodes). Several verdicts for one event go out in successive rounds, never together, so
their SentTimestamps order them and the expected final value is the last round's.
"""

from __future__ import annotations

import json
import random
import string
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from worker.contract import MAX_BODY_BYTES, ValidationCode

REGION = "us-east-1"
VALID, INVALID = "Valid", "Invalid"
USER_NOT_FOUND = "UserNotFoundException"
RESOURCE_NOT_FOUND = "ResourceNotFoundException"
ADDON_NOT_ENABLED = "UserPoolAddOnNotEnabledException"
ANY_VALIDATION_CODE = frozenset(ValidationCode)
# Room a huge body leaves below the SQS limit (bytes), so it stays sendable.
HUGE_MARGIN_BYTES = 64

Key = tuple[str, str, str]  # (pool id, username, event id)


class Expect(StrEnum):
    """The fate a message must meet."""

    APPLY = "apply"
    DEAD_LETTER = "dead-letter"


@dataclass(frozen=True)
class Planned:
    """One message body to send and its required fate."""

    body: str
    expect: Expect
    label: str
    key: Key | None = None
    verdict: str | None = None
    round: int = 0
    codes: frozenset[str] = frozenset()  # acceptable DLQ ErrorCodes

    @classmethod
    def dead_letter(cls, body: str, label: str, *codes: str) -> Planned:
        return cls(body, Expect.DEAD_LETTER, label, codes=frozenset(codes))


@dataclass
class Universe:
    """What the emulator is seeded with for one run."""

    pool_id: str
    addon_off_pool_id: str
    users: dict[str, list[str]] = field(default_factory=dict)

    def seed_spec(self) -> dict[str, Any]:
        return {
            "pools": [
                {"id": self.pool_id, "threat_protection": True, "users": self.users},
                {
                    "id": self.addon_off_pool_id,
                    "threat_protection": False,
                    "users": {"plain-user": ["plain-event"]},
                },
            ]
        }

    def keys(self) -> list[Key]:
        return [(self.pool_id, u, e) for u, events in self.users.items() for e in events]

    @property
    def region(self) -> str:
        """The region of the pool: its id up to the underscore."""
        return self.pool_id.rpartition("_")[0]


def _suffix(rng: random.Random, length: int = 10) -> str:
    return "".join(rng.choices(string.ascii_letters + string.digits, k=length))


def make_universe(
    rng: random.Random, users: int, events_per_user: int, *, region: str = REGION
) -> Universe:
    """A fresh pool in `region` (ids never repeat across runs) with `users` x
    `events_per_user` events."""
    universe = Universe(f"{region}_{_suffix(rng)}", f"{region}_{_suffix(rng)}")
    for u in range(users):
        # Usernames exercise the model's Unicode classes; the pool id keeps them unique.
        name = f"user-{u}@example.com" if u % 3 else f"usér-{u}+ü"
        universe.users[name] = [f"ev-{u}-{e}-{_suffix(rng, 6)}" for e in range(events_per_user)]
    return universe


def verdict_body(pool_id: str, username: str, event_id: str, value: str, **extra: Any) -> str:
    body = {
        "UserPoolId": pool_id,
        "Username": username,
        "EventId": event_id,
        "FeedbackValue": value,
        **extra,
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def verdict_rounds(
    keys: list[Key], rng: random.Random, *, max_versions: int = 3, multi_share: float = 0.3
) -> list[list[Planned]]:
    """One verdict per key, and for `multi_share` of them up to `max_versions`, alternating in
    value so that the final value tells which one won."""
    rounds: list[list[Planned]] = [[] for _ in range(max_versions)]
    for key in keys:
        versions = rng.randint(2, max_versions) if rng.random() < multi_share else 1
        value = rng.choice((VALID, INVALID))
        for r in range(versions):
            rounds[r].append(
                Planned(verdict_body(*key, value), Expect.APPLY, "verdict", key, value, r)
            )
            value = INVALID if value == VALID else VALID
    return [r for r in rounds if r]


def unknown_targets(universe: Universe, rng: random.Random, count: int) -> list[Planned]:
    """Well-formed verdicts Cognito must refuse for good: unknown user, event or pool, and a
    pool without threat protection."""
    some_user = next(iter(universe.users))
    makers = [
        lambda i: Planned.dead_letter(
            verdict_body(universe.pool_id, f"ghost-{i}-{_suffix(rng, 4)}", "ev-x", VALID),
            "unknown user",
            USER_NOT_FOUND,
        ),
        lambda i: Planned.dead_letter(
            verdict_body(universe.pool_id, some_user, f"no-such-event-{i}", INVALID),
            "unknown event",
            RESOURCE_NOT_FOUND,
        ),
        lambda i: Planned.dead_letter(
            verdict_body(f"{REGION}_Missing{_suffix(rng, 6)}", some_user, "ev-x", VALID),
            "unknown pool",
            RESOURCE_NOT_FOUND,
        ),
        lambda i: Planned.dead_letter(
            verdict_body(universe.addon_off_pool_id, "plain-user", "plain-event", VALID),
            "threat protection off",
            ADDON_NOT_ENABLED,
        ),
    ]
    return [makers[i % len(makers)](i) for i in range(count)]


def malformed(universe: Universe) -> list[Planned]:
    """Hand-made bodies the contract must reject, each with the code it must get."""
    pool, user = universe.pool_id, next(iter(universe.users))
    event = universe.users[user][0]
    c = ValidationCode
    return [
        Planned.dead_letter("not json at all", "not json", c.MALFORMED_JSON),
        Planned.dead_letter('{"UserPoolId": ', "truncated json", c.MALFORMED_JSON),
        Planned.dead_letter("[1, 2, 3]", "array", c.NOT_AN_OBJECT),
        Planned.dead_letter('"Valid"', "bare string", c.NOT_AN_OBJECT),
        Planned.dead_letter(
            json.dumps({"UserPoolId": pool, "Username": user, "EventId": event}),
            "missing FeedbackValue",
            c.MISSING_FIELD,
        ),
        Planned.dead_letter(
            json.dumps(
                {"UserPoolId": pool, "Username": user, "EventId": event, "FeedbackValue": 1}
            ),
            "number FeedbackValue",
            c.INVALID_FIELD_TYPE,
        ),
        Planned.dead_letter(
            verdict_body(pool, user, event, "Maybe"), "bad enum", c.INVALID_FIELD_VALUE
        ),
        Planned.dead_letter(
            verdict_body("no-underscore", user, event, VALID), "bad pool id", c.INVALID_FIELD_VALUE
        ),
        Planned.dead_letter(
            verdict_body(pool, "u" * 129, event, VALID), "long username", c.INVALID_FIELD_VALUE
        ),
        Planned.dead_letter(
            verdict_body(pool, user, "bad event id!", VALID), "bad event id", c.INVALID_FIELD_VALUE
        ),
        Planned.dead_letter(" ", "blank body", c.MALFORMED_JSON),
    ]


def huge_bodies(universe: Universe, key: Key) -> list[Planned]:
    """Bodies just under the 1 MiB limit: junk (dead-lettered) and a padded, valid verdict."""
    junk = "x" * (MAX_BODY_BYTES - HUGE_MARGIN_BYTES)
    head = verdict_body(*key, VALID, Padding="")
    padded = verdict_body(
        *key, VALID, Padding="p" * (MAX_BODY_BYTES - HUGE_MARGIN_BYTES - len(head))
    )
    return [
        Planned.dead_letter(junk, "huge junk", ValidationCode.MALFORMED_JSON),
        Planned(padded, Expect.APPLY, "huge verdict", key, VALID),
    ]


def standard_mix(
    universe: Universe, rng: random.Random, *, invalid_share: float = 0.1
) -> list[list[Planned]]:
    """The default workload: verdicts over every seeded event in rounds, plus unknown targets
    and malformed bodies (about `invalid_share` of the total) mixed into the first round."""
    rounds = verdict_rounds(universe.keys(), rng)
    total = sum(len(r) for r in rounds)
    bad = malformed(universe)
    unknown = unknown_targets(universe, rng, max(4, int(total * invalid_share) - len(bad)))
    first = rounds[0] + bad + unknown
    rng.shuffle(first)
    rounds[0] = first
    return rounds
