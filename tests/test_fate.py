"""fate.decide: the whole retry/dead-letter policy, read as a table and checked as properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.fate import Ack, Action, DeadLetter, Hold, Retry, decide
from worker.outcome import Kind, Outcome

MAX = 5

SUCCESS = Outcome(Kind.SUCCESS)
THROTTLED = Outcome(Kind.THROTTLED, "TooManyRequestsException", "Rate exceeded")
SYSTEMIC = Outcome(Kind.SYSTEMIC, "AccessDeniedException", "not allowed")
PERMANENT = Outcome(Kind.PERMANENT, "UserNotFoundException", "User does not exist.")
TRANSIENT = Outcome(Kind.TRANSIENT, "InternalErrorException", "try again")

outcomes = st.builds(Outcome, st.sampled_from(Kind), st.text(max_size=40), st.text(max_size=80))
counts = st.integers(min_value=0, max_value=10_000)
maxima = st.integers(min_value=1, max_value=1_000)


@pytest.mark.parametrize(
    ("outcome", "local_attempts", "receive_count", "expected"),
    [
        pytest.param(SUCCESS, 1, 1, Ack(), id="success-acks"),
        pytest.param(SUCCESS, MAX, MAX, Ack(), id="success-acks-even-after-many-attempts"),
        pytest.param(THROTTLED, 1, 1, Retry(throttled=True), id="throttle-retries-throttled"),
        pytest.param(
            THROTTLED, MAX, MAX, Retry(throttled=True), id="throttle-past-max-still-retries"
        ),
        pytest.param(SYSTEMIC, 1, 1, Hold(), id="systemic-holds"),
        pytest.param(SYSTEMIC, MAX, MAX, Hold(), id="systemic-past-max-still-holds"),
        pytest.param(
            PERMANENT,
            1,
            1,
            DeadLetter("UserNotFoundException", "User does not exist."),
            id="permanent-dead-letters-on-first-attempt",
        ),
        pytest.param(TRANSIENT, 1, 1, Retry(throttled=False), id="transient-first-attempt-retries"),
        pytest.param(
            TRANSIENT, MAX - 1, 1, Retry(throttled=False), id="transient-one-below-max-retries"
        ),
        pytest.param(TRANSIENT, MAX, 1, "dead-letter", id="transient-at-max-dead-letters"),
        pytest.param(TRANSIENT, MAX + 3, 1, "dead-letter", id="transient-past-max-dead-letters"),
        pytest.param(
            TRANSIENT,
            1,
            MAX - 1,
            Retry(throttled=False),
            id="earlier-deliveries-count-one-below-max-retries",
        ),
        pytest.param(
            TRANSIENT,
            1,
            MAX,
            "dead-letter",
            id="earlier-deliveries-count-reaching-max-dead-letters",
        ),
        pytest.param(
            TRANSIENT, 2, MAX - 1, "dead-letter", id="local-and-earlier-attempts-add-up-to-max"
        ),
        pytest.param(
            TRANSIENT, 1, 0, Retry(throttled=False), id="missing-receive-count-counts-as-first"
        ),
    ],
)
def test_decide_table(
    outcome: Outcome, local_attempts: int, receive_count: int, expected: Action | str
) -> None:
    action = decide(
        outcome, local_attempts=local_attempts, receive_count=receive_count, max_attempts=MAX
    )
    if expected == "dead-letter":
        assert isinstance(action, DeadLetter)
        assert action.code == outcome.code
        assert outcome.message in action.message
        assert str(MAX) in action.message
    else:
        assert action == expected


def test_every_kind_has_a_row_in_the_table() -> None:
    covered = {o.kind for o in (SUCCESS, THROTTLED, SYSTEMIC, PERMANENT, TRANSIENT)}
    assert covered == set(Kind)


@given(outcomes, counts, counts, maxima)
def test_throttled_and_systemic_outcomes_never_dead_letter(
    outcome: Outcome, local_attempts: int, receive_count: int, max_attempts: int
) -> None:
    action = decide(
        outcome,
        local_attempts=local_attempts,
        receive_count=receive_count,
        max_attempts=max_attempts,
    )
    if outcome.kind in (Kind.THROTTLED, Kind.SYSTEMIC):
        assert not isinstance(action, DeadLetter)
    if outcome.kind is Kind.THROTTLED:
        assert action == Retry(throttled=True)
    if outcome.kind is Kind.SYSTEMIC:
        assert action == Hold()


@given(st.text(max_size=40), st.text(max_size=80), counts, counts, maxima)
def test_permanent_outcomes_always_dead_letter_with_their_code(
    code: str, message: str, local_attempts: int, receive_count: int, max_attempts: int
) -> None:
    action = decide(
        Outcome(Kind.PERMANENT, code, message),
        local_attempts=local_attempts,
        receive_count=receive_count,
        max_attempts=max_attempts,
    )
    assert action == DeadLetter(code, message)


@given(
    st.integers(min_value=1, max_value=1_000),
    st.integers(min_value=1, max_value=1_000),
    maxima,
)
def test_transient_outcomes_dead_letter_iff_attempts_across_deliveries_reach_max(
    local_attempts: int, receive_count: int, max_attempts: int
) -> None:
    # Every earlier delivery counts as one attempt; this delivery made `local_attempts`.
    attempts_so_far = local_attempts + (receive_count - 1)
    action = decide(
        TRANSIENT,
        local_attempts=local_attempts,
        receive_count=receive_count,
        max_attempts=max_attempts,
    )
    if attempts_so_far >= max_attempts:
        assert isinstance(action, DeadLetter)
        assert action.code == TRANSIENT.code
    else:
        assert action == Retry(throttled=False)


@given(outcomes, counts, counts, maxima)
def test_success_always_acks(
    outcome: Outcome, local_attempts: int, receive_count: int, max_attempts: int
) -> None:
    action = decide(
        Outcome(Kind.SUCCESS, outcome.code, outcome.message),
        local_attempts=local_attempts,
        receive_count=receive_count,
        max_attempts=max_attempts,
    )
    assert action == Ack()


@given(outcomes, counts, counts, maxima)
def test_during_a_region_outage_nothing_but_the_message_itself_dead_letters(
    outcome: Outcome, local_attempts: int, receive_count: int, max_attempts: int
) -> None:
    action = decide(
        outcome,
        local_attempts=local_attempts,
        receive_count=receive_count,
        max_attempts=max_attempts,
        region_down=True,
    )
    if outcome.kind is Kind.TRANSIENT:
        assert action == Retry(throttled=False)
    if isinstance(action, DeadLetter):
        assert outcome.kind is Kind.PERMANENT
