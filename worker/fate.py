"""The one place that decides what happens to a message after an attempt.

A pure function from (outcome, attempts, receive count) to an action, so the whole policy is
readable in one screen and tested as a table.
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.outcome import Kind, Outcome


@dataclass(frozen=True, slots=True)
class Ack:
    """Cognito accepted the verdict (or it is superseded): delete the message."""


@dataclass(frozen=True, slots=True)
class Retry:
    """Try again in this process after a backoff; keep the message hidden meanwhile."""

    throttled: bool


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """The message can never succeed (or used up its attempts): copy it to the DLQ, then delete."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Hold:
    """Not the message's fault and not its turn: keep it, stop taking work, probe with backoff."""


Action = Ack | Retry | DeadLetter | Hold


def transient_attempts(local_attempts: int, receive_count: int) -> int:
    """Attempts counted across deliveries: earlier deliveries each count as one attempt.

    A delivery released without a call (shutdown, systemic pause) also counts, so the total
    errs on the side of dead-lettering a little early rather than retrying forever.
    """
    return local_attempts + max(receive_count - 1, 0)


def decide(
    outcome: Outcome,
    *,
    local_attempts: int,
    receive_count: int,
    max_attempts: int,
    region_down: bool = False,
) -> Action:
    """Decide the fate of a message after its latest attempt.

    `local_attempts` counts this process's transient failures that were the message's own;
    `region_down` says every call to the region is failing (an outage, see outage.py).
    """
    match outcome.kind:
        case Kind.SUCCESS:
            return Ack()
        case Kind.THROTTLED:
            # Throttling is never the message's fault: it neither dead-letters nor counts.
            return Retry(throttled=True)
        case Kind.SYSTEMIC:
            return Hold()
        case Kind.PERMANENT:
            return DeadLetter(outcome.code, outcome.message)
        case Kind.TRANSIENT:
            if region_down:
                # An outage is not the message's fault: hold on and retry, however long.
                return Retry(throttled=False)
            if transient_attempts(local_attempts, receive_count) >= max_attempts:
                return DeadLetter(
                    outcome.code,
                    f"gave up after {max_attempts} attempts; last error: {outcome.message}",
                )
            return Retry(throttled=False)
