"""Region outage detection: enough failures in a row, from several distinct messages, with no
real answer between (throttles neither end nor hide an outage)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.outcome import SUCCESS, Kind, Outcome
from worker.region_health import (
    DOWN_AFTER_FAILURES,
    DOWN_AFTER_MESSAGES,
    OUTAGE_PARK_MAX_S,
    OUTAGE_PARK_MIN_S,
    RegionHealth,
)

FAILURE = Outcome(Kind.TRANSIENT, "EndpointConnectionError", "connection refused")
THROTTLE = Outcome(Kind.THROTTLED, "TooManyRequestsException", "")
DENIED = Outcome(Kind.SYSTEMIC, "AccessDeniedException", "")
GONE = Outcome(Kind.PERMANENT, "UserNotFoundException", "")


def fail_from_many(health: RegionHealth, count: int) -> bool:
    """`count` failures, each from another message; returns whether the region is down."""
    down = False
    for i in range(count):
        down = health.record(FAILURE, f"message-{i}")
    return down


def test_a_region_is_down_after_enough_failures_in_a_row_from_several_messages() -> None:
    health = RegionHealth("eu-west-1", clock=lambda: 5.0)
    assert not fail_from_many(health, DOWN_AFTER_FAILURES - 1)
    assert health.record(FAILURE, "message-last")
    assert health.down_since == 5.0
    assert health.last_error == "EndpointConnectionError"


def test_one_message_failing_alone_is_never_an_outage_however_often() -> None:
    health = RegionHealth("eu-west-1")
    for _ in range(DOWN_AFTER_FAILURES * 20):
        assert not health.record(FAILURE, "the-poison-message")


def test_two_messages_failing_are_not_enough_either() -> None:
    health = RegionHealth("eu-west-1")
    messages = itertools.cycle([f"m{i}" for i in range(DOWN_AFTER_MESSAGES - 1)])
    for _ in range(DOWN_AFTER_FAILURES * 10):
        assert not health.record(FAILURE, next(messages))


def test_throttles_mixed_in_neither_end_nor_hide_an_outage() -> None:
    # Given a region that answers only 5xx and throttles, never a success
    health = RegionHealth("eu-west-1")
    for i in range(DOWN_AFTER_FAILURES):
        health.record(THROTTLE, f"message-{i}")
        health.record(FAILURE, f"message-{i}")
        health.record(THROTTLE, f"message-{i}")
    # Then it is down, and a further throttle does not bring it up
    assert health.down
    assert health.record(THROTTLE, "another")


@pytest.mark.parametrize("answer", [SUCCESS, GONE], ids=["success", "permanent"])
def test_a_real_answer_ends_the_outage(answer: Outcome) -> None:
    health = RegionHealth("eu-west-1")
    fail_from_many(health, DOWN_AFTER_FAILURES)
    assert not health.record(answer, "m")
    assert health.down_since is None
    # And counting starts afresh
    assert not fail_from_many(health, DOWN_AFTER_FAILURES - 1)


def test_a_systemic_answer_neither_starts_nor_ends_an_outage() -> None:
    health = RegionHealth("eu-west-1")
    fail_from_many(health, DOWN_AFTER_FAILURES)
    assert health.record(DENIED, "m")
    fresh = RegionHealth("eu-west-1")
    for i in range(DOWN_AFTER_FAILURES * 2):
        assert not fresh.record(DENIED, f"m{i}")


def test_messages_of_a_region_down_stay_away_longer_the_longer_it_is_down() -> None:
    now = [0.0]
    health = RegionHealth("eu-west-1", clock=lambda: now[0])
    assert health.park_for_s() is None
    fail_from_many(health, DOWN_AFTER_FAILURES)
    assert health.park_for_s() == OUTAGE_PARK_MIN_S
    now[0] = 3600.0
    assert health.park_for_s() == OUTAGE_PARK_MAX_S


@given(
    st.lists(
        st.tuples(st.sampled_from([SUCCESS, FAILURE, THROTTLE, GONE]), st.integers(0, 5)),
        max_size=100,
    )
)
def test_down_iff_the_failures_since_the_last_real_answer_are_enough_and_from_enough_messages(
    answers: list[tuple[Outcome, int]],
) -> None:
    health = RegionHealth("us-east-1")
    for answer, message in answers:
        health.record(answer, message)
    failures: list[int] = []
    for answer, message in reversed(answers):
        if answer in (SUCCESS, GONE):
            break
        if answer is FAILURE:
            failures.append(message)
    expected = len(failures) >= DOWN_AFTER_FAILURES and len(set(failures)) >= DOWN_AFTER_MESSAGES
    assert health.down == expected
