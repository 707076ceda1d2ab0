"""Region outage detection: when every call to a region fails, failures stop counting."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from worker.outcome import SUCCESS, Kind, Outcome
from worker.region_health import DOWN_AFTER_FAILURES, RegionHealth

FAILURE = Outcome(Kind.TRANSIENT, "EndpointConnectionError", "connection refused")
THROTTLE = Outcome(Kind.THROTTLED, "TooManyRequestsException", "")
DENIED = Outcome(Kind.SYSTEMIC, "AccessDeniedException", "")
GONE = Outcome(Kind.PERMANENT, "UserNotFoundException", "")


def test_a_region_is_down_after_enough_failures_in_a_row() -> None:
    health = RegionHealth("eu-west-1", clock=lambda: 5.0)
    for _ in range(DOWN_AFTER_FAILURES - 1):
        assert not health.record(FAILURE)
    assert health.record(FAILURE)
    assert health.down_since == 5.0
    assert health.last_error == "EndpointConnectionError"


def test_any_real_answer_ends_the_outage() -> None:
    for answer in (SUCCESS, THROTTLE, GONE):
        health = RegionHealth("eu-west-1")
        for _ in range(DOWN_AFTER_FAILURES):
            health.record(FAILURE)
        assert not health.record(answer)
        assert health.down_since is None


def test_a_systemic_answer_neither_starts_nor_ends_an_outage() -> None:
    health = RegionHealth("eu-west-1")
    for _ in range(DOWN_AFTER_FAILURES):
        health.record(FAILURE)
    assert health.record(DENIED)
    fresh = RegionHealth("eu-west-1")
    for _ in range(DOWN_AFTER_FAILURES * 2):
        assert not fresh.record(DENIED)


@given(st.lists(st.sampled_from([SUCCESS, FAILURE, THROTTLE, GONE]), max_size=100))
def test_down_iff_the_last_answers_were_enough_failures_in_a_row(answers: list[Outcome]) -> None:
    health = RegionHealth("us-east-1")
    for answer in answers:
        health.record(answer)
    trailing = 0
    for answer in reversed(answers):
        if answer is not FAILURE:
            break
        trailing += 1
    assert health.down == (trailing >= DOWN_AFTER_FAILURES)
