"""The one place that decides what happens to a message after an attempt.

A pure function from (outcome, attempts) to an action, so the whole policy is readable in one
screen and tested as a table. `attempts` counts only real failed calls that were the message's
own: never a hand-back (shutdown, a paused scope, parking), a throttle, or a call made while
its region was down.
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.outcome import Kind, Outcome, Scope

# A code no row of the classification knows is retried at least this often before the
# message is dead-lettered, whatever --max-attempts says: it may be a new kind of outage.
MIN_ATTEMPTS_FOR_UNKNOWN = 2


@dataclass(frozen=True, slots=True)
class Ack:
    """Cognito accepted the verdict: delete the message."""


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
    """Not the message's fault: pause `scope`, keep the message, probe with backoff."""

    scope: Scope


Action = Ack | Retry | DeadLetter | Hold


def counts_as_attempt(outcome: Outcome, *, region_down: bool) -> bool:
    """Whether this call's failure counts toward --max-attempts: a transient failure of the
    message's own, not one of many while its region is down."""
    return outcome.kind is Kind.TRANSIENT and not region_down


def decide(
    outcome: Outcome,
    *,
    attempts: int,
    max_attempts: int,
    region_down: bool = False,
) -> Action:
    """Decide the fate of a message after its latest attempt.

    `attempts` is the number of counted failed calls, this one included (see
    counts_as_attempt); `region_down` says every call to the region is failing, an outage.
    """
    match outcome.kind:
        case Kind.SUCCESS:
            return Ack()
        case Kind.THROTTLED:
            # Throttling is never the message's fault: it neither dead-letters nor counts.
            return Retry(throttled=True)
        case Kind.SYSTEMIC:
            return Hold(outcome.scope)
        case Kind.PERMANENT:
            return DeadLetter(outcome.code, outcome.message)
        case Kind.TRANSIENT:
            if region_down:
                # An outage is not the message's fault: hold on and retry, however long.
                return Retry(throttled=False)
            limit = max_attempts if outcome.known else max(max_attempts, MIN_ATTEMPTS_FOR_UNKNOWN)
            if attempts >= limit:
                return DeadLetter(
                    outcome.code,
                    f"gave up after {attempts} attempts; last error: {outcome.message}",
                )
            return Retry(throttled=False)
