"""fate.decide: the whole retry/dead-letter policy, read as a table and checked as properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.fate import (
    MIN_ATTEMPTS_FOR_UNKNOWN,
    Ack,
    Action,
    DeadLetter,
    Hold,
    Retry,
    counts_as_attempt,
    decide,
)
from worker.outcome import Kind, Outcome, Scope

MAX = 5

SUCCESS = Outcome(Kind.SUCCESS)
THROTTLED = Outcome(Kind.THROTTLED, "TooManyRequestsException", "Rate exceeded")
POOL_DENIED = Outcome(Kind.SYSTEMIC, "AccessDeniedException", "not allowed", Scope.POOL)
IDENTITY = Outcome(Kind.SYSTEMIC, "ExpiredTokenException", "expired", Scope.WORKER)
PERMANENT = Outcome(Kind.PERMANENT, "UserNotFoundException", "User does not exist.")
TRANSIENT = Outcome(Kind.TRANSIENT, "InternalErrorException", "try again")
UNKNOWN = Outcome(Kind.TRANSIENT, "BrandNewException", "?", known=False)

outcomes = st.builds(
    Outcome,
    st.sampled_from(Kind),
    st.text(max_size=40),
    st.text(max_size=80),
    st.sampled_from(Scope),
    st.booleans(),
)
counts = st.integers(min_value=0, max_value=10_000)
maxima = st.integers(min_value=1, max_value=1_000)


@pytest.mark.parametrize(
    ("outcome", "attempts", "region_down", "expected"),
    [
        pytest.param(SUCCESS, 0, False, Ack(), id="success-acks"),
        pytest.param(SUCCESS, MAX, False, Ack(), id="success-acks-after-many-attempts"),
        pytest.param(THROTTLED, 0, False, Retry(throttled=True), id="throttle-retries"),
        pytest.param(THROTTLED, MAX, False, Retry(throttled=True), id="throttle-never-gives-up"),
        pytest.param(POOL_DENIED, 0, False, Hold(Scope.POOL), id="pool-denied-pauses-the-pool"),
        pytest.param(IDENTITY, MAX, False, Hold(Scope.WORKER), id="identity-pauses-the-worker"),
        pytest.param(
            PERMANENT,
            0,
            False,
            DeadLetter("UserNotFoundException", "User does not exist."),
            id="permanent-dead-letters-at-once",
        ),
        pytest.param(TRANSIENT, 1, False, Retry(throttled=False), id="transient-retries"),
        pytest.param(TRANSIENT, MAX - 1, False, Retry(throttled=False), id="one-below-max"),
        pytest.param(TRANSIENT, MAX, False, "dead-letter", id="at-max-dead-letters"),
        pytest.param(TRANSIENT, MAX + 3, False, "dead-letter", id="past-max-dead-letters"),
        pytest.param(TRANSIENT, MAX + 3, True, Retry(throttled=False), id="outage-never-gives-up"),
        pytest.param(UNKNOWN, 1, False, Retry(throttled=False), id="unknown-code-first-retries"),
    ],
)
def test_the_decision_table(
    outcome: Outcome, attempts: int, region_down: bool, expected: Action | str
) -> None:
    action = decide(outcome, attempts=attempts, max_attempts=MAX, region_down=region_down)
    if expected == "dead-letter":
        assert isinstance(action, DeadLetter)
        assert action.code == outcome.code
        assert outcome.message in action.message
    else:
        assert action == expected


def test_an_unknown_code_is_never_dead_lettered_on_its_first_try_even_with_one_attempt() -> None:
    assert decide(UNKNOWN, attempts=1, max_attempts=1) == Retry(throttled=False)
    assert isinstance(
        decide(UNKNOWN, attempts=MIN_ATTEMPTS_FOR_UNKNOWN, max_attempts=1), DeadLetter
    )
    # A known transient code with one attempt allowed goes at once, as configured.
    assert isinstance(decide(TRANSIENT, attempts=1, max_attempts=1), DeadLetter)


@pytest.mark.parametrize(
    ("outcome", "region_down", "counts"),
    [
        (TRANSIENT, False, True),
        (UNKNOWN, False, True),
        (TRANSIENT, True, False),
        (THROTTLED, False, False),
        (POOL_DENIED, False, False),
        (PERMANENT, False, False),
        (SUCCESS, False, False),
    ],
)
def test_only_a_transient_failure_of_the_messages_own_counts_as_an_attempt(
    outcome: Outcome, region_down: bool, counts: bool
) -> None:
    assert counts_as_attempt(outcome, region_down=region_down) is counts


@given(outcome=outcomes, attempts=counts, max_attempts=maxima, region_down=st.booleans())
def test_only_a_permanent_error_or_used_up_attempts_ever_dead_letter(
    outcome: Outcome, attempts: int, max_attempts: int, region_down: bool
) -> None:
    action = decide(outcome, attempts=attempts, max_attempts=max_attempts, region_down=region_down)
    if isinstance(action, DeadLetter):
        assert outcome.kind is Kind.PERMANENT or (
            outcome.kind is Kind.TRANSIENT and not region_down and attempts >= max_attempts
        )


@given(outcome=outcomes, attempts=counts, max_attempts=maxima)
def test_throttles_and_systemic_failures_never_dead_letter_whatever_the_count(
    outcome: Outcome, attempts: int, max_attempts: int
) -> None:
    action = decide(outcome, attempts=attempts, max_attempts=max_attempts)
    if outcome.kind is Kind.THROTTLED:
        assert action == Retry(throttled=True)
    if outcome.kind is Kind.SYSTEMIC:
        assert action == Hold(outcome.scope)


@given(outcome=outcomes, attempts=counts, max_attempts=maxima)
def test_an_outage_never_dead_letters_a_transient_failure(
    outcome: Outcome, attempts: int, max_attempts: int
) -> None:
    action = decide(outcome, attempts=attempts, max_attempts=max_attempts, region_down=True)
    if outcome.kind is Kind.TRANSIENT:
        assert action == Retry(throttled=False)
