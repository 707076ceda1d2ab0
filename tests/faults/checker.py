"""The end-state check: every message sent is applied (its event ends with the newest verdict)
or dead-lettered with the expected ErrorCode and its body byte for byte, and nothing is left.

Counts, per run:
- lost: an APPLY message whose event was never written, or a DEAD_LETTER one with no DLQ copy;
- wrongly dead-lettered: a DLQ copy of an APPLY message, with an unexpected ErrorCode (a copy
  SQS's own redrive made has none), with an altered body, or of a message never sent;
- stale: an event whose final value is not the newest verdict sent for it;
- duplicates applied: successful writes beyond the messages sent for an event (at-least-once
  allows them; they show how often work was redone);
- left: messages still in the source queue once the run ended.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.faults.workload import Expect, Key, Planned
from tests.support.messages import drain_dlq

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

REDRIVEN = "(redrive, no ErrorCode)"
MAX_PROBLEMS_LISTED = 20


@dataclass(frozen=True)
class SentMessage:
    message_id: str
    plan: Planned


@dataclass(frozen=True)
class DlqCopy:
    message_id: str
    source_id: str
    body: str
    code: str
    attributes: dict[str, str]


@dataclass
class EventState:
    writes: int
    value: str | None


@dataclass
class EndState:
    events: dict[Key, EventState]
    dlq: list[DlqCopy]
    left_visible: int
    left_in_flight: int


@dataclass
class Tally:
    """The outcome of one run, as the report prints it."""

    sent: int = 0
    applied: int = 0
    dead_lettered: Counter[str] = field(default_factory=Counter)
    lost: int = 0
    wrongly_dead_lettered: int = 0
    stale: int = 0
    duplicates_applied: int = 0
    duplicate_dlq_copies: int = 0
    left: int = 0
    unsendable: int = 0
    problems: list[str] = field(default_factory=list)
    # Newest-wins memory is per process (README, delivery contract): after a SIGKILL, an older
    # verdict redelivered to the restarted worker can overwrite a newer one the killed process
    # applied. Runs with kills report such events but do not fail on them.
    stale_allowed: bool = False

    @property
    def ok(self) -> bool:
        stale = self.stale and not self.stale_allowed
        return not (self.lost or self.wrongly_dead_lettered or stale or self.left)

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS_LISTED:
            self.problems.append(text)


def _attribute(raw: dict[str, Any], name: str) -> str:
    value = (raw.get("MessageAttributes") or {}).get(name) or {}
    return str(value.get("StringValue", ""))


async def read_dlq(sqs: SQSClient, dlq_url: str) -> list[DlqCopy]:
    """Every copy in the DLQ, left in place (hidden for a while, never deleted)."""
    return [
        DlqCopy(
            message_id=raw["MessageId"],
            source_id=_attribute(raw, "SourceMessageId") or raw["MessageId"],
            body=raw.get("Body", ""),
            code=_attribute(raw, "ErrorCode") or REDRIVEN,
            attributes={name: _attribute(raw, name) for name in raw.get("MessageAttributes", {})},
        )
        for raw in await drain_dlq(sqs, dlq_url)
    ]


def events_from_writes(writes: dict[str, Any]) -> dict[Key, EventState]:
    """The emulator's ``/_emulator/writes`` answer, keyed by (pool, user, event)."""
    return {
        (row["pool_id"], row["username"], row["event_id"]): EventState(
            int(row["writes"]), row["feedback_value"]
        )
        for row in writes["events"]
    }


def check(sent: list[SentMessage], state: EndState, *, unsendable: int = 0) -> Tally:
    """Hold the end state against what was sent."""
    tally = Tally(sent=len(sent), unsendable=unsendable)
    tally.left = state.left_visible + state.left_in_flight
    if tally.left:
        tally.problem(f"{tally.left} message(s) left in the source queue")
    by_id = {m.message_id: m for m in sent}
    copies: dict[str, list[DlqCopy]] = defaultdict(list)
    for copy in state.dlq:
        copies[copy.source_id].append(copy)
        tally.dead_lettered[copy.code] += 1
        if copy.source_id not in by_id:
            tally.wrongly_dead_lettered += 1
            tally.problem(f"DLQ copy {copy.message_id} of unknown message {copy.source_id}")
    tally.duplicate_dlq_copies = sum(len(c) - 1 for c in copies.values() if len(c) > 1)

    per_key: dict[Key, list[SentMessage]] = defaultdict(list)
    for message in sent:
        plan, found = message.plan, copies.get(message.message_id, [])
        if plan.expect is Expect.DEAD_LETTER:
            if not found:
                tally.lost += 1
                tally.problem(f"never dead-lettered: {plan.label} {message.message_id}")
            elif bad := [c for c in found if not _dlq_copy_ok(c, plan)]:
                tally.wrongly_dead_lettered += 1
                tally.problem(
                    f"bad DLQ copy of {plan.label} {message.message_id}: code {bad[0].code}"
                    f"{'' if bad[0].body == plan.body else ', body altered'}"
                )
        elif found:
            tally.wrongly_dead_lettered += 1
            tally.problem(
                f"valid verdict dead-lettered: {message.message_id} code {found[0].code} "
                f"({found[0].attributes.get('ErrorMessage', '')[:120]})"
            )
        else:
            assert plan.key is not None
            per_key[plan.key].append(message)

    for key, messages in per_key.items():
        newest = max(messages, key=lambda m: m.plan.round)
        event = state.events.get(key, EventState(0, None))
        if event.writes == 0:
            tally.lost += len(messages)
            tally.problem(f"never applied: event {key[2]} ({len(messages)} message(s))")
            continue
        tally.applied += len(messages)
        tally.duplicates_applied += max(0, event.writes - len(messages))
        if event.value != newest.plan.verdict:
            tally.stale += 1
            tally.problem(
                f"stale: event {key[2]} ends {event.value}, newest verdict "
                f"(round {newest.plan.round}) is {newest.plan.verdict}"
            )
    return tally


def _dlq_copy_ok(copy: DlqCopy, plan: Planned) -> bool:
    return copy.body == plan.body and (not plan.codes or copy.code in plan.codes)
