"""The bench's figures (tests.bench.figures) on apply times made up for each case: the
definitions the bench README states, held to what they say."""

from __future__ import annotations

import pytest

from tests.bench import figures


def steady(rate: float, start: float, end: float) -> list[float]:
    """Apply times at a steady `rate` from `start` until `end`."""
    count = round((end - start) * rate)
    return [start + i / rate for i in range(count)]


def test_a_backlog_at_the_quota_shows_the_quota_in_every_figure() -> None:
    # Given verdicts applied at 25/s for 20 s
    times = steady(25, 100.0, 120.0)

    # When the backlog's figures are taken
    got = figures.backlog(times, times[0], times[-1])

    # Then the third second, the lowest second and the rate after the first are all 25/s
    assert got["third_second_rate"] == 25
    assert got["lowest_1s_rate"] == 25
    assert got["rate_after_first_s"] == pytest.approx(25, rel=0.01)


def test_a_collapse_after_the_first_second_shows_as_the_lowest_second() -> None:
    # Given 25/s for 2 s, 2/s for 3 s, then 25/s again
    times = steady(25, 0.0, 2.0) + steady(2, 2.0, 5.0) + steady(25, 5.0, 10.0)

    got = figures.backlog(times, times[0], times[-1])

    assert got["lowest_1s_rate"] == 2
    assert got["third_second_rate"] == 2


@pytest.mark.parametrize(
    ("back_at", "recovered_share", "recovery_s"),
    [
        pytest.param(0.0, 1.0, 1.0, id="at once"),
        pytest.param(2.0, 1.0, 3.0, id="after 2 s"),
        pytest.param(6.0, 0.4, 7.0, id="after 6 s"),
    ],
)
def test_a_spike_is_measured_during_it_and_after_its_end(
    back_at: float, recovered_share: float, recovery_s: float
) -> None:
    # Given a neighbour at 15/s from 10 to 20 s, the consumer at 10/s during it and until
    # `back_at` seconds after it, then at the quota
    neighbour = {"started_at": 10.0, "stopped_at": 20.0, "successes": 150, "elapsed_s": 10.0}
    times = (
        steady(25, 0.0, 10.0) + steady(10, 10.0, 20.0 + back_at) + steady(25, 20.0 + back_at, 40.0)
    )

    got = figures.spike(times, 25.0, neighbour, 40.0)

    assert got["spike_share"] == pytest.approx(1.0)
    assert got["recovered_share"] == pytest.approx(recovered_share)
    assert got["recovery_s"] == pytest.approx(recovery_s)


def test_a_step_is_followed_once_the_rate_reaches_nine_tenths_of_the_new_capacity() -> None:
    # Given capacity 10/s from 15 s and 25/s from 30 s; the consumer reaches 10/s at once,
    # and 25/s only 4 s after the rise
    times = (
        steady(25, 0.0, 15.0)
        + steady(10, 15.0, 30.0)
        + steady(10, 30.0, 34.0)
        + steady(25, 34.0, 45.0)
    )
    per_second = [(s, 20, 1 if 15 <= s < 30 else 0) for s in range(45)]

    got = figures.steps(times, [(15.0, 10.0), (30.0, 25.0)], 45.0, per_second)

    assert got["step1_follow_s"] == 1.0
    assert got["step2_follow_s"] == 5.0
    assert got["step1_throttled"] == pytest.approx(0.05)
    assert got["step2_throttled"] == 0


def test_a_step_never_reached_has_no_follow_time() -> None:
    times = steady(25, 0.0, 15.0) + steady(10, 15.0, 45.0)

    got = figures.steps(times, [(15.0, 10.0), (30.0, 25.0)], 45.0, [])

    assert got["step2_follow_s"] is None


def test_a_trickle_message_never_applied_waits_until_the_end_of_the_run() -> None:
    sent = [float(i) for i in range(100)]
    applied: list[float | None] = [s + 0.5 for s in sent[:-1]] + [None]

    got = figures.latency(sent, applied, t_end=120.0)

    assert got["latency_p50_s"] == pytest.approx(0.5)
    assert got["latency_p99_s"] == pytest.approx(0.5)
    assert got["not_applied"] == 1
    assert figures.latency(sent[:1], [None], t_end=120.0)["latency_p99_s"] == 120.0


def test_the_floods_others_are_held_to_their_fair_share_time() -> None:
    others = steady(15, 1.0, 1.0 + 40 / 15)

    got = figures.finish(others, 1.0, expected=40, fair_s=40 / 15)

    assert got["finish_vs_fair"] == pytest.approx(1.0, abs=0.03)
    assert figures.finish(others[:-1], 1.0, expected=40, fair_s=1.0)["finish_s"] is None
