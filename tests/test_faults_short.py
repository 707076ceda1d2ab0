"""The fault suite's short form: the real worker process through kills, outages, error storms,
fuzzed bodies, duplicates, a pool or a region failing alone, slow deletes, hand-backs and
redrives, each run ending with nothing lost and nothing wrongly dead-lettered. The end-state
checker itself is tested first, on made-up end states.

The long form, with bigger runs and a soak, is ``python -m tests.faults --full``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from feedback_local.stack import LocalStack
from tests.faults import scenarios
from tests.faults.base import SHORT, ScenarioResult
from tests.faults.checker import REDRIVEN, DlqCopy, EndState, EventState, SentMessage, check
from tests.faults.harness import Harness
from tests.faults.workload import Expect, Planned, verdict_body

# A scenario drains a few hundred messages through moto after its fault; the drain itself has
# a bound inside the scenario, this only stops a hung run.
SCENARIO_TIMEOUT_S = 600

POOL = "us-east-1_Pool1"
KEY = (POOL, "alice", "ev-1")


def _verdict(message_id: str, value: str, round_: int = 0) -> SentMessage:
    body = verdict_body(*KEY, value)
    return SentMessage(message_id, Planned(body, Expect.APPLY, "verdict", KEY, value, round_))


def _bad(message_id: str, body: str = "nope") -> SentMessage:
    return SentMessage(message_id, Planned.dead_letter(body, "not json", "MalformedJson"))


def _state(*dlq: DlqCopy, writes: int = 1, value: str | None = "Valid") -> EndState:
    return EndState({KEY: EventState(writes, value)}, list(dlq), 0, 0)


def _copy(source: str, code: str = "MalformedJson", body: str = "nope") -> DlqCopy:
    return DlqCopy(f"dlq-{source}", source, body, code, {"ErrorCode": code})


# -- the checker ---------------------------------------------------------------------------


def test_the_checker_passes_an_applied_verdict_and_a_dead_lettered_body() -> None:
    tally = check([_verdict("m1", "Valid"), _bad("m2")], _state(_copy("m2")))
    assert tally.ok
    assert (tally.applied, tally.dead_lettered["MalformedJson"]) == (1, 1)


def test_the_checker_counts_a_verdict_never_applied_as_lost() -> None:
    tally = check([_verdict("m1", "Valid")], _state(writes=0, value=None))
    assert tally.lost == 1
    assert not tally.ok


def test_the_checker_counts_a_body_never_dead_lettered_as_lost() -> None:
    tally = check([_verdict("m1", "Valid"), _bad("m2")], _state())
    assert tally.lost == 1


def test_the_checker_flags_an_older_verdict_that_won() -> None:
    sent = [_verdict("m1", "Invalid", round_=0), _verdict("m2", "Valid", round_=1)]
    tally = check(sent, _state(writes=2, value="Invalid"))
    assert tally.stale == 1
    assert not tally.ok


@pytest.mark.parametrize(
    ("copy", "why"),
    [
        (_copy("m1", code="TooManyRequestsException"), "a valid verdict dead-lettered"),
        (_copy("m2", code="InvalidFieldValue"), "the wrong ErrorCode"),
        (_copy("m2", body="nope!"), "an altered body"),
        (_copy("m2", code=REDRIVEN), "SQS's redrive instead of the worker"),
        (_copy("m9"), "a copy of a message never sent"),
    ],
)
def test_the_checker_flags_a_wrong_dead_letter(copy: DlqCopy, why: str) -> None:
    sent = [_verdict("m1", "Valid"), _bad("m2")]
    copies = [copy] if copy.source_id == "m2" else [copy, _copy("m2")]
    tally = check(sent, _state(*copies))
    assert tally.wrongly_dead_lettered == 1, why


def test_the_checker_counts_extra_writes_as_duplicates_and_messages_left_as_failures() -> None:
    state = _state(writes=3)
    state.left_in_flight = 2
    tally = check([_verdict("m1", "Valid")], state)
    assert (tally.duplicates_applied, tally.left) == (2, 2)
    assert not tally.ok


# -- the scenarios -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fault_stack() -> Iterator[LocalStack]:
    """A stack of its own: the scenarios reset the emulator and turn its faults on."""
    with LocalStack() as stack:
        yield stack


@pytest.fixture(scope="module")
async def harness(
    fault_stack: LocalStack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Harness]:
    workdir: Path = tmp_path_factory.mktemp("faults")
    async with Harness(fault_stack, workdir) as started:
        yield started


def assert_nothing_lost(result: ScenarioResult) -> None:
    tally = result.tally
    assert tally.lost == 0, tally.problems
    assert tally.wrongly_dead_lettered == 0, tally.problems
    assert tally.stale == 0 or tally.stale_allowed, tally.problems
    assert tally.left == 0, tally.problems
    failed = [name for name, passed in result.checks.items() if not passed]
    assert not failed, (failed, result.notes)


@pytest.mark.faults
@pytest.mark.timeout(SCENARIO_TIMEOUT_S)
@pytest.mark.parametrize(
    "name",
    [
        pytest.param("sigkill", id="sigkill-at-random-moments-then-restart"),
        pytest.param("sigterm", id="sigterm-under-load-leaves-nothing-in-flight"),
        pytest.param("sqs-outage", id="sqs-unreachable-then-back"),
        pytest.param("cognito-outage", id="cognito-unreachable-then-back"),
        pytest.param("cognito-5xx-storm", id="half-of-cognito-calls-fail-with-500"),
        pytest.param("latency-spike", id="cognito-slower-than-the-visibility-timeout"),
        pytest.param("throttling", id="throttled-and-untyped-throttles"),
        pytest.param("revoked-credentials", id="credentials-revoked-then-restored"),
        pytest.param("fuzzed-bodies", id="fuzzed-huge-and-deep-bodies"),
        pytest.param("duplicates", id="every-message-sent-twice"),
        pytest.param("one-pool-denied", id="one-pool-denied-while-two-others-go-on"),
        pytest.param("one-region-down", id="one-region-of-three-answers-5xx-pages"),
        pytest.param("paused-past-max-receives", id="a-pool-paused-past-the-max-receive-count"),
        pytest.param("5xx-and-throttles", id="a-region-answering-only-5xx-and-throttles"),
        pytest.param("delete-brownout", id="every-delete-answered-late-under-a-backlog"),
        pytest.param("handed-back-then-500", id="handed-back-many-times-then-one-500"),
        pytest.param("redrive-older-verdicts", id="older-verdicts-redriven-into-a-new-process"),
    ],
)
async def test_the_worker_loses_nothing_and_dead_letters_nothing_wrongly_under(
    harness: Harness, name: str
) -> None:
    # Given the real worker process behind fault-injecting proxies
    # When the scenario's fault hits it mid-run and then goes away
    result = await scenarios.SCENARIOS[name](harness, SHORT)

    # Then every verdict ends applied (newest wins) or dead-lettered with its code, and the
    # scenario's own property holds
    assert result.tally.sent > 0
    assert_nothing_lost(result)
