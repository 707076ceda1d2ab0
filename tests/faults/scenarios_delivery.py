"""Fault scenarios about the delivery contract: a slow DeleteMessageBatch, messages handed back
many times before one failed call, and older verdicts redriven from the DLQ after newer ones
were applied, into a new process.

What the worker holds stays within its budget until each delete lands; only real failed calls
count toward --max-attempts, never hand-backs; and a verdict that comes back through the queue
never overwrites a newer one.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import anyio

from feedback_local.emulator_client import injected_error
from tests.faults.base import (
    EXIT_GRACE_S,
    RECOVERY_TIMEOUT_S,
    Profile,
    Scenario,
    ScenarioResult,
    applies,
    finish,
    prepare,
)
from tests.faults.harness import BASE_WORKER_ENV, Harness, Run, RunSettings
from tests.faults.observe import held_now, log_lines, region_counts, sampling
from tests.faults.workload import (
    INVALID,
    USER_NOT_FOUND,
    VALID,
    Expect,
    Key,
    Planned,
    Universe,
    make_universe,
    verdict_body,
    verdict_rounds,
)
from tests.support.messages import drain_dlq, queue_depth
from tests.support.tcp_proxy import Mode
from tests.support.worker_process import WORKER_EXECUTABLE, WorkerProcess

INTERNAL_ERROR = "InternalErrorException"
# The worker's held-message budget: four times its call slots plus one receive batch.
HELD_BUDGET = 4 * int(BASE_WORKER_ENV["FEEDBACK_CONCURRENCY"]) + 10
# The budget must have been (nearly) reached, or the brownout never held anything up.
BUDGET_REACHED = HELD_BUDGET - 10
HELD_SAMPLE_S = 0.25
# Events in the backlog: enough verdicts to outlast the brownout.
BROWNOUT_EVENTS = 250
# The brownout lasts at least this many slow deletes, one after the other.
BROWNOUT_DELETES = 2
# Regions with one lone failing message each: apart, none sees the failures of several
# messages that would make it look down.
LONE_REGIONS = (
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "ca-central-1",
    "eu-west-2",
    "eu-west-3",
    "eu-central-1",
    "eu-north-1",
    "ap-northeast-1",
    "ap-south-1",
    "sa-east-1",
    "ap-southeast-1",
)
# Cognito's answers are held back this long meanwhile, so a failure's rule is gone before
# the worker's retry (at most 0.5 s after the failed answer) can meet it again.
ANSWER_LATE_S = 3.0
WATCH_S = 0.1
# Few attempts: had the hand-backs counted, one failed call would dead-letter the message.
LONE_MAX_ATTEMPTS = 2
HAND_BACK_VISIBILITY_S = 60
DLQ_WAIT_S = 60.0
REDRIVE_TIMEOUT_S = 120.0


async def delete_brownout(h: Harness, p: Profile) -> ScenarioResult:
    """Every DeleteMessageBatch answered late for a while, under a backlog: the worker holds no
    more than its budget, since a message's room is given back only once its delete lands."""
    started = time.monotonic()
    async with h.run("delete-brownout") as run:
        rounds = await prepare(run, p, scale=BROWNOUT_EVENTS / (p.users * p.events_per_user))
        await run.send_rounds(rounds)
        await run.start_worker()
        await run.wait_applied(applies(rounds) // 10, RECOVERY_TIMEOUT_S)
        sqs = h.sqs_proxy
        # Not cut: the calls in flight are answered; each delete from now on is late.
        sqs.set_mode(Mode.DELAY, delay_s=p.slow_delete_s, operation="DeleteMessageBatch", cut=False)
        brownout_s = max(p.outage_s, BROWNOUT_DELETES * p.slow_delete_s)
        async with sampling(lambda: held_now(run), HELD_SAMPLE_S) as held:
            await anyio.sleep(brownout_s)
            sqs.set_mode(Mode.PASS, cut=False)
            fault_end = time.monotonic()
            recovery = await run.recovery(fault_end, RECOVERY_TIMEOUT_S)
            # The deletes held back before the end are still answered late: watch until then.
            await anyio.sleep(max(0.0, fault_end + p.slow_delete_s - time.monotonic()))
        peak = max((value for _, value in held), default=-1.0)
        result = await finish(
            run,
            p,
            started,
            **{
                f"never more than {HELD_BUDGET} held (4 x concurrency + 10)": peak <= HELD_BUDGET,
                "the slow deletes filled the budget": peak >= BUDGET_REACHED,
                "/metrics answered throughout": all(value >= 0 for _, value in held),
            },
        )
        result.recoveries = [recovery]
        result.notes.append(
            f"deletes answered {p.slow_delete_s:g}s late for {brownout_s:g}s; held at most "
            f"{peak:g} of {HELD_BUDGET} ({len(held)} samples)"
        )
        return result


async def handed_back_then_500(h: Harness, p: Profile) -> ScenarioResult:
    """Messages handed back many times (received and released unprocessed), then each met by
    one InternalErrorException, with --max-attempts 2: a hand-back is no attempt, so none is
    dead-lettered."""
    started = time.monotonic()
    settings = RunSettings(max_attempts=LONE_MAX_ATTEMPTS)
    async with h.run("handed-back-then-500", settings) as run:
        lone = [make_universe(run.rng, 1, 1, region=r) for r in LONE_REGIONS[: p.lone_failures]]
        others = make_universe(run.rng, max(2, p.users // 4), p.events_per_user)
        for universe in [*lone, others]:
            await run.seed(universe)
        sent = await run.send(_one_verdict(u.keys()[0]) for u in lone)
        await _hand_back(run, {m.message_id for m in sent}, p.hand_backs)
        rules = {u.region: injected_error(INTERNAL_ERROR, pool=u.pool_id) for u in lone}
        await h.emulator.configure(injected_errors=list(rules.values()))
        h.cognito_proxy.set_mode(Mode.DELAY, delay_s=ANSWER_LATE_S, cut=False)
        await run.start_worker()
        await run.send_rounds(verdict_rounds(others.keys(), run.rng))
        await _one_failure_each(h, rules, RECOVERY_TIMEOUT_S)
        h.cognito_proxy.set_mode(Mode.PASS, cut=False)
        result = await finish(run, p, started)
        failures = {u.region: await _failures(h, u.region) for u in lone}
        pools = {u.pool_id for u in lone}
        done = [line for line in log_lines(run, "message.done") if line.get("pool_id") in pools]
        result.checks |= {
            "each handed-back message met exactly one 500": set(failures.values()) == {1},
            f"each was applied at a receive after {p.hand_backs} hand-backs": {
                line["pool_id"] for line in done if _applied_after(line, p.hand_backs)
            }
            == pools,
        }
        receives = sorted({int(line.get("receive_count", 0)) for line in done})
        result.notes.append(f"{len(lone)} messages, applied at receive counts {receives}")
        return result


def _one_verdict(key: Key) -> Planned:
    return Planned(verdict_body(*key, VALID), Expect.APPLY, "verdict", key, VALID)


def _applied_after(line: Mapping[str, Any], hand_backs: int) -> bool:
    """Applied by its second call, at a receive beyond the hand-backs."""
    return (
        line.get("outcome") == "applied"
        and line.get("attempts") == LONE_MAX_ATTEMPTS
        and int(line.get("receive_count", 0)) > hand_backs
    )


async def _hand_back(run: Run, ids: set[str], times: int) -> None:
    """Receive each message of `ids` and give it back unprocessed, `times` over, as a worker
    shutting down or parking it would."""
    sqs = run.harness.sqs
    for _ in range(times):
        pending, handles = set(ids), []
        with anyio.fail_after(RECOVERY_TIMEOUT_S):
            while pending:
                response = await sqs.receive_message(
                    QueueUrl=run.queues.url,
                    MaxNumberOfMessages=10,
                    VisibilityTimeout=HAND_BACK_VISIBILITY_S,
                    WaitTimeSeconds=1,
                )
                for message in response.get("Messages", []):
                    pending.discard(message["MessageId"])
                    handles.append(message["ReceiptHandle"])
        await _release(run, run.queues.url, handles)


async def _release(run: Run, queue_url: str, handles: Iterable[str]) -> None:
    """Make the messages of `handles` visible again at once."""
    listed = list(handles)
    for start in range(0, len(listed), 10):
        await run.harness.sqs.change_message_visibility_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                for i, handle in enumerate(listed[start : start + 10])
            ],
        )


async def _failures(h: Harness, region: str) -> int:
    return int((await region_counts(h, region)).get("errors", {}).get(INTERNAL_ERROR, 0))


async def _one_failure_each(h: Harness, rules: dict[str, Any], timeout_s: float) -> None:
    """Keep each region's rule until its first failure is counted, then drop it. Cognito
    counts an answer as it sends it; the proxy holds it back from the worker meanwhile."""
    active = dict(rules)
    with anyio.move_on_after(timeout_s):
        while active:
            failed = [region for region in active if await _failures(h, region)]
            if failed:
                for region in failed:
                    del active[region]
                await h.emulator.configure(injected_errors=list(active.values()))
            await anyio.sleep(WATCH_S)
    await h.emulator.clear_injected_errors()


async def redrive_older_verdicts(h: Harness, p: Profile) -> ScenarioResult:
    """Older verdicts dead-lettered during a fault, newer ones for half of their events applied,
    then `dlq redrive` into a new process: the copies a newer verdict superseded are skipped
    on readback, the others applied."""
    started = time.monotonic()
    async with h.run("redrive-older-verdicts") as run:
        universe = make_universe(run.rng, max(2, p.users // 3), p.events_per_user)
        await run.seed(universe)
        older, newer = _older_and_newer(universe, run)
        await run.start_worker()
        # The pool's users vanish for a while (a directory migration gone wrong).
        await h.emulator.inject(USER_NOT_FOUND, pool=universe.pool_id)
        await run.send(older)
        dead = await _wait_dlq(run, len(older))
        await h.emulator.clear_injected_errors()
        await run.send(newer)
        await run.wait_applied(len(newer), RECOVERY_TIMEOUT_S)
        await run.worker.stop(run.settings.shutdown_timeout_s + EXIT_GRACE_S)
        copies = await _peek_dlq(run)
        redrive = await _redrive(run)
        after = await queue_depth(h.sqs, run.queues.dlq_url)
        await run.start_worker()
        result = await finish(run, p, started)
        skipped, applied = _readbacks(run.workers[-1])
        superseded = {key[2] for key in _keys(newer)}
        result.checks |= {
            "the older verdicts were dead-lettered during the fault": dead == len(older),
            "each DLQ copy kept its OriginalSentTimestamp": len(copies) == len(older)
            and all(_has_original_sent(copy) for copy in copies),
            "dlq redrive moved every copy": redrive == 0 and after == (0, 0),
            "the new process skipped each copy a newer verdict superseded": skipped == superseded,
            "and applied the others": applied == {key[2] for key in _keys(older)} - superseded,
        }
        result.notes.append(
            f"{len(older)} older verdicts redriven; {len(skipped)} skipped on readback, "
            f"{len(applied)} applied"
        )
        return result


def _keys(plans: Iterable[Planned]) -> list[Key]:
    return [plan.key for plan in plans if plan.key is not None]


def _readbacks(worker: WorkerProcess) -> tuple[set[str], set[str]]:
    """The events whose verdict `worker` skipped on readback, and those it applied after it."""
    skipped: set[str] = set()
    applied: set[str] = set()
    for line in worker.events("message.done"):
        seen = (line.get("outcome"), line.get("readback"))
        if seen in (_SKIPPED, _APPLIED):
            (skipped if seen == _SKIPPED else applied).add(str(line.get("event_id")))
    return skipped, applied


_SKIPPED = ("superseded", "newer feedback")
_APPLIED = ("applied", "ok")


def _older_and_newer(universe: Universe, run: Run) -> tuple[list[Planned], list[Planned]]:
    """A verdict for every event, and a newer, opposite one for every other event."""
    older, newer = [], []
    for i, key in enumerate(universe.keys()):
        value = run.rng.choice((VALID, INVALID))
        older.append(Planned(verdict_body(*key, value), Expect.APPLY, "older", key, value, 0))
        if i % 2 == 0:
            value = INVALID if value == VALID else VALID
            newer.append(Planned(verdict_body(*key, value), Expect.APPLY, "newer", key, value, 1))
    return older, newer


async def _wait_dlq(run: Run, count: int) -> int:
    """Wait until the DLQ holds `count` messages; returns how many it holds."""
    depth = 0
    with anyio.move_on_after(DLQ_WAIT_S):
        while (depth := sum(await queue_depth(run.harness.sqs, run.queues.dlq_url))) < count:
            await anyio.sleep(0.5)
    return depth


async def _peek_dlq(run: Run) -> list[dict[str, Any]]:
    """Every DLQ copy, read and made visible again at once."""
    copies = await drain_dlq(run.harness.sqs, run.queues.dlq_url)
    await _release(run, run.queues.dlq_url, (copy["ReceiptHandle"] for copy in copies))
    return copies


def _has_original_sent(copy: Mapping[str, Any]) -> bool:
    value = copy.get("MessageAttributes", {}).get("OriginalSentTimestamp", {})
    return str(value.get("StringValue", "")).isdigit()


async def _redrive(run: Run) -> int | None:
    """`feedback-worker dlq redrive --client-side --yes` (moto has no StartMessageMoveTask);
    its exit code, its output in the run's folder."""
    command = [str(WORKER_EXECUTABLE), "dlq", "redrive", "--client-side", "--yes"]
    mover = WorkerProcess(
        run.worker_env(), command, log_path=run.directory / "redrive.log", name="redrive"
    ).start()
    code = await mover.wait_exit(REDRIVE_TIMEOUT_S)
    mover.kill()
    return code


DELIVERY_SCENARIOS: dict[str, Scenario] = {
    "delete-brownout": delete_brownout,
    "handed-back-then-500": handed_back_then_500,
    "redrive-older-verdicts": redrive_older_verdicts,
}
