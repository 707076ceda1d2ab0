"""full_jitter: exponential backoff with full jitter and a cap, as a pure function."""

from __future__ import annotations

import math
import random
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker import backoff
from worker.backoff import full_jitter

bases = st.floats(min_value=1e-3, max_value=100.0)
caps = st.floats(min_value=1e-3, max_value=1_000.0)
attempts = st.integers(min_value=1, max_value=10_000)
# Exponents past this overflow a float: the ceiling is the cap long before.
_FLOAT_EXPONENT_LIMIT = sys.float_info.max_exp - 1

PRESETS = [
    pytest.param(backoff.RETRY_BASE_S, backoff.RETRY_CAP_S, id="retry"),
    pytest.param(backoff.THROTTLE_BASE_S, backoff.THROTTLE_CAP_S, id="throttle"),
    pytest.param(backoff.PROBE_BASE_S, backoff.PROBE_CAP_S, id="probe"),
    pytest.param(backoff.RECEIVE_BASE_S, backoff.RECEIVE_CAP_S, id="receive"),
]


def ceiling(attempt: int, base_s: float, cap_s: float) -> float:
    if attempt - 1 > _FLOAT_EXPONENT_LIMIT:
        return cap_s
    return min(cap_s, base_s * 2.0 ** (attempt - 1))


class _Extreme(random.Random):
    """Draws always at one end of the interval, to expose the interval itself."""

    def __init__(self, *, top: bool) -> None:
        super().__init__(0)
        self.top = top

    def uniform(self, a: float, b: float) -> float:
        return b if self.top else a


@given(attempts, bases, caps, st.integers())
def test_the_delay_lies_between_zero_and_the_capped_exponential(
    attempt: int, base_s: float, cap_s: float, seed: int
) -> None:
    delay = full_jitter(attempt, base_s=base_s, cap_s=cap_s, rand=random.Random(seed))
    assert 0.0 <= delay <= ceiling(attempt, base_s, cap_s)


@given(st.integers(min_value=1, max_value=40), bases, caps)
def test_the_top_of_the_interval_doubles_per_attempt_until_the_cap(
    attempt: int, base_s: float, cap_s: float
) -> None:
    top = full_jitter(attempt, base_s=base_s, cap_s=cap_s, rand=_Extreme(top=True))
    assert top == pytest.approx(ceiling(attempt, base_s, cap_s))


@given(attempts, bases, caps)
def test_full_jitter_can_retry_at_once(attempt: int, base_s: float, cap_s: float) -> None:
    assert full_jitter(attempt, base_s=base_s, cap_s=cap_s, rand=_Extreme(top=False)) == 0.0


@given(st.integers(max_value=0), bases, caps)
def test_attempt_numbers_below_one_are_refused(attempt: int, base_s: float, cap_s: float) -> None:
    with pytest.raises(ValueError, match="1-based"):
        full_jitter(attempt, base_s=base_s, cap_s=cap_s)


@given(st.integers(min_value=1_000, max_value=sys.maxsize * 4), bases, caps)
def test_huge_attempt_numbers_do_not_overflow(attempt: int, base_s: float, cap_s: float) -> None:
    delay = full_jitter(attempt, base_s=base_s, cap_s=cap_s, rand=random.Random(attempt))
    assert math.isfinite(delay)
    assert 0.0 <= delay <= cap_s


@given(st.integers(), st.lists(attempts, min_size=1, max_size=20))
def test_a_seeded_random_gives_reproducible_delays(seed: int, numbers: list[int]) -> None:
    def run() -> list[float]:
        rand = random.Random(seed)
        return [full_jitter(n, base_s=0.5, cap_s=20.0, rand=rand) for n in numbers]

    assert run() == run()


def test_the_delay_comes_from_the_given_random_not_the_module_one() -> None:
    random.seed(1)
    first = full_jitter(5, base_s=1.0, cap_s=60.0, rand=random.Random(7))
    random.seed(2)
    second = full_jitter(5, base_s=1.0, cap_s=60.0, rand=random.Random(7))
    assert first == second


@pytest.mark.parametrize(("base_s", "cap_s"), PRESETS)
def test_each_preset_starts_at_its_base_and_ends_at_its_cap(base_s: float, cap_s: float) -> None:
    assert 0 < base_s <= cap_s
    assert full_jitter(1, base_s=base_s, cap_s=cap_s, rand=_Extreme(top=True)) == base_s
    assert full_jitter(10_000, base_s=base_s, cap_s=cap_s, rand=_Extreme(top=True)) == cap_s
