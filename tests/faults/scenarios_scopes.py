"""Fault scenarios about a failure's scope: one pool denied, one region down, a pause that
outlasts the queue's maxReceiveCount, and a region answering only 5xx and throttles.

A failure in one pool or region must stay there: the other pools and regions keep being
applied while it lasts, /readyz stays 200 while something still works (and lists what does
not), nothing is dead-lettered for it, and the stalled scope's verdicts are applied once it
is back.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import anyio

from feedback_local.emulator_client import injected_error
from tests.faults.base import (
    RECOVERY_TIMEOUT_S,
    Profile,
    Scenario,
    ScenarioResult,
    applies,
    finish,
    prepare,
)
from tests.faults.checker import REDRIVEN
from tests.faults.harness import Harness, Run, RunSettings
from tests.faults.observe import (
    FEEDBACK_OPERATION,
    feedback_counts,
    log_lines,
    progress_while,
    readiness_body,
    region_counts,
    sampling,
)
from tests.faults.workload import (
    REGION,
    Planned,
    Universe,
    make_universe,
    standard_mix,
    verdict_rounds,
)

ACCESS_DENIED = "AccessDeniedException"
# The region that goes down, beside two that keep working.
DOWN_REGION = "eu-west-1"
HEALTHY_REGIONS = (REGION, "ap-southeast-2")
# What a region in an outage answers, a third of the time each.
OUTAGE_ANSWERS = ("HTTP503", "HTTP502", "InternalErrorException")
# The 5xx of a storm of 5xx and throttles (one, then the other), and their share of the
# answers; throttles are the rest. A throttle ends neither a run of failures nor an outage.
STORM_5XX = ("InternalErrorException", "HTTP503")
STORM_5XX_SHARE = 0.5
# Few attempts, so that a storm taken for the messages' own failures would dead-letter them.
STORM_MAX_ATTEMPTS = 4
# A low maxReceiveCount that a paused pool's parked messages reach while the pause lasts.
LOW_MAX_RECEIVE_COUNT = 3
# The parts of a fault in each of which the healthy scopes must make progress.
FAULT_STEPS = 4
READINESS_SAMPLE_S = 0.5
# A call in flight when a fault is staged may still be answered the old way this soon after.
SETTLE_S = 0.5


async def _universes(
    run: Run, p: Profile, regions: Sequence[str], *, scale: float = 0.5
) -> list[Universe]:
    """A freshly seeded pool in each of `regions` (a region may repeat)."""
    users = max(2, int(p.users * scale))
    universes = [
        make_universe(run.rng, users, p.events_per_user, region=region) for region in regions
    ]
    for universe in universes:
        await run.seed(universe)
    return universes


def _verdicts(universes: Sequence[Universe], run: Run) -> list[Planned]:
    """Verdicts for every event of `universes`, oldest round first."""
    rounds = verdict_rounds(list(chain.from_iterable(u.keys() for u in universes)), run.rng)
    return [plan for plans in rounds for plan in plans]


def _paused(bodies: list[tuple[float, dict[str, Any]]], scope: str, name: str) -> bool:
    """Whether any /readyz body listed `name` as a paused `scope`."""
    return any(
        entry.get("scope") == scope and entry.get("name") == name
        for _, body in bodies
        for entry in body.get("paused", [])
    )


def _listed_down(bodies: list[tuple[float, dict[str, Any]]], region: str) -> bool:
    """Whether any /readyz body listed `region` among the regions down."""
    return any(
        entry.split(":")[0] == region
        for _, body in bodies
        for entry in body.get("regions_down", [])
    )


def _only_pool_paused(run: Run, pool: str) -> bool:
    """The log says the pool was paused, and no other scope ever was."""
    lines = log_lines(run, "scope.paused")
    return bool(lines) and all(
        line.get("scope") == "pool" and line.get("name") == pool for line in lines
    )


async def one_pool_denied(h: Harness, p: Profile) -> ScenarioResult:
    """Three pools in one region; the worker is denied one of them for a while."""
    started = time.monotonic()
    async with h.run("one-pool-denied") as run:
        denied, *healthy = await _universes(run, p, [REGION] * 3)
        healthy_pools = [u.pool_id for u in healthy]
        others = _verdicts(healthy, run)
        warm_up, others = others[: len(others) // 4], others[len(others) // 4 :]
        await run.send(warm_up)
        await run.start_worker()
        await run.wait_applied(len(warm_up) // 2, RECOVERY_TIMEOUT_S)
        fault_start = time.monotonic()
        await h.emulator.inject(ACCESS_DENIED, pool=denied.pool_id)
        async with sampling(lambda: readiness_body(run), READINESS_SAMPLE_S) as bodies:
            await run.send_rounds(standard_mix(denied, run.rng))
            gains = await progress_while(run, healthy_pools, others, p.outage_s, FAULT_STEPS)
        await h.emulator.clear_injected_errors()
        fault_end = time.monotonic()
        recovery = await run.recovery(fault_end, RECOVERY_TIMEOUT_S)
        denials = (await feedback_counts(h)).get("errors", {}).get(ACCESS_DENIED, 0)
        result = await finish(
            run,
            p,
            started,
            **{
                "the denied pool's calls were refused": denials > 0,
                "the other pools were applied in every part of the fault": all(gains),
                "/readyz stayed 200 while one pool was denied": not run.ready.unready_between(
                    fault_start, fault_end
                ),
                "/readyz listed the denied pool as paused": _paused(bodies, "pool", denied.pool_id),
                "only the denied pool was paused": _only_pool_paused(run, denied.pool_id),
            },
        )
        result.recoveries = [recovery]
        result.notes.append(f"{denials} calls denied; other pools' writes per step: {gains}")
        return result


async def one_region_down(h: Harness, p: Profile) -> ScenarioResult:
    """Pools in three regions; one region answers 503 and 502 pages and 500s for a while."""
    started = time.monotonic()
    async with h.run("one-region-down") as run:
        *healthy, down = await _universes(run, p, [*HEALTHY_REGIONS, DOWN_REGION])
        healthy_pools = [u.pool_id for u in healthy]
        others, down_plans = _verdicts(healthy, run), _verdicts([down], run)
        # Every region called and working before the fault.
        warm_up = others[: len(others) // 4] + down_plans[: len(down_plans) // 4]
        others, down_plans = others[len(others) // 4 :], down_plans[len(down_plans) // 4 :]
        await run.send(warm_up)
        await run.start_worker()
        await run.wait_applied(len(warm_up) // 2, RECOVERY_TIMEOUT_S)
        fault_start = time.monotonic()
        gains: list[int] = []
        async with sampling(lambda: readiness_body(run), READINESS_SAMPLE_S) as bodies:
            for part, code in enumerate(OUTAGE_ANSWERS):
                await h.emulator.configure(
                    injected_errors=[injected_error(code, region=down.region)]
                )
                if part == 0:
                    await run.send(down_plans)
                share = others[part * len(others) // 3 : (part + 1) * len(others) // 3]
                gains += await progress_while(run, healthy_pools, share, p.outage_s / 3, 2)
        await h.emulator.clear_injected_errors()
        fault_end = time.monotonic()
        recovery = await run.recovery(fault_end, RECOVERY_TIMEOUT_S)
        failed = sum((await region_counts(h, down.region)).get("errors", {}).values())
        down_lines = log_lines(run, "region.down")
        result = await finish(
            run,
            p,
            started,
            **{
                "the region's calls failed": failed > 0,
                "the other regions were applied in every part of the outage": all(gains),
                "/readyz stayed 200 while one region was down": not run.ready.unready_between(
                    fault_start, fault_end
                ),
                "/readyz listed the region as down": _listed_down(bodies, down.region),
                "only that region was reported down": bool(down_lines)
                and all(line.get("region") == down.region for line in down_lines),
            },
        )
        result.recoveries = [recovery]
        result.notes.append(f"{failed} calls to {down.region} failed; writes per step: {gains}")
        return result


async def paused_past_max_receives(h: Harness, p: Profile) -> ScenarioResult:
    """A pool denied for longer than its parked messages take to reach the queue's low
    maxReceiveCount: they are requeued with their history, never moved to the DLQ by SQS."""
    started = time.monotonic()
    settings = RunSettings(max_receive_count=LOW_MAX_RECEIVE_COUNT, max_attempts=3)
    async with h.run("paused-past-max-receives", settings) as run:
        denied, healthy = await _universes(run, p, [REGION] * 2)
        await run.start_worker()
        await h.emulator.inject(ACCESS_DENIED, pool=denied.pool_id)
        await run.send_rounds(standard_mix(denied, run.rng))
        gains = await progress_while(
            run, [healthy.pool_id], _verdicts([healthy], run), p.outage_s, FAULT_STEPS
        )
        await h.emulator.clear_injected_errors()
        recovery = await run.recovery(time.monotonic(), RECOVERY_TIMEOUT_S)
        result = await finish(run, p, started)
        requeued = log_lines(run, "message.done", outcome="requeued")
        result.checks |= {
            "messages were requeued at their last receive": bool(requeued),
            "none moved to the DLQ by SQS, without a reason": not result.tally.dead_lettered[
                REDRIVEN
            ],
            "only the denied pool was paused": _only_pool_paused(run, denied.pool_id),
            "the other pool was applied in every part of the pause": all(gains),
        }
        result.recoveries = [recovery]
        result.notes.append(f"{len(requeued)} requeued at receive {LOW_MAX_RECEIVE_COUNT}")
        return result


async def mixed_5xx_and_throttles(h: Harness, p: Profile) -> ScenarioResult:
    """The only region answers 5xx and throttles for a while, half and half, never a success:
    an outage, not the messages' own failures."""
    started = time.monotonic()
    settings = RunSettings(max_attempts=STORM_MAX_ATTEMPTS)
    async with h.run("5xx-and-throttles", settings) as run:
        rounds = await prepare(run, p, scale=0.5)
        await run.send(rounds[0])
        await run.start_worker()
        await run.wait_applied(applies(rounds[:1]) // 4, RECOVERY_TIMEOUT_S)
        storm = await _storm(run, p, rounds[1:])
        recovery = await run.recovery(storm.end, RECOVERY_TIMEOUT_S)
        result = await finish(
            run,
            p,
            started,
            **{
                "no call succeeded while the storm lasted": storm.count("successes") == 0,
                "the storm mixed 5xx and throttles": storm.count("errors") > 0
                and storm.count("throttles") > 0,
                "the region was reported down, and stayed down while the storm lasted": bool(
                    storm.down
                )
                and not storm.up
                and _listed_down(storm.bodies, REGION),
                "/readyz unready while its only region was down": run.ready.unready_between(
                    storm.start, storm.end
                ),
            },
        )
        result.recoveries = [recovery]
        result.notes.append(
            f"during the storm: {storm.count('errors')} 5xx, {storm.count('throttles')} "
            "throttles, no success"
        )
        return result


@dataclass
class _Storm:
    """What a storm of 5xx and throttles did: Cognito's counters before and after, the
    /readyz bodies meanwhile, and the worker's region lines by the storm's end."""

    start: float
    before: dict[str, Any]
    after: dict[str, Any] = field(default_factory=dict)
    bodies: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    down: list[dict[str, Any]] = field(default_factory=list)
    up: list[dict[str, Any]] = field(default_factory=list)
    end: float = 0.0

    def count(self, name: str) -> int:
        """Calls of kind `name` (successes, throttles, errors) during the storm; errors
        leave out the throttles, which the emulator counts among them too."""

        def total(counts: dict[str, Any]) -> int:
            value = counts.get(name, 0)
            return int(sum(value.values()) if isinstance(value, dict) else value)

        calls = total(self.after) - total(self.before)
        return calls - self.count("throttles") if name == "errors" else calls


async def _storm(run: Run, p: Profile, later: list[list[Planned]]) -> _Storm:
    """Half of the calls answer a 5xx (a 500, then 503 pages); the rest are throttled ("Rate
    exceeded", untyped). `later` goes out once it has begun."""
    h = run.harness
    start = time.monotonic()
    first, then = (
        [injected_error(code, fraction=STORM_5XX_SHARE, operation=FEEDBACK_OPERATION)]
        for code in STORM_5XX
    )
    await h.emulator.configure(injected_errors=first, fault_untyped_throttle=1.0)
    await anyio.sleep(SETTLE_S)
    storm = _Storm(start, await feedback_counts(h))
    async with sampling(lambda: readiness_body(run), READINESS_SAMPLE_S) as storm.bodies:
        await run.send_rounds(later)
        await anyio.sleep(p.storm_s)
        await h.emulator.configure(injected_errors=then)
        await anyio.sleep(p.storm_s)
        storm.after = await feedback_counts(h)
        storm.down = log_lines(run, "region.down", region=REGION)
        storm.up = log_lines(run, "region.up", region=REGION)
    await h.emulator.configure(injected_errors=[], fault_untyped_throttle=0.0)
    storm.end = time.monotonic()
    return storm


SCOPE_SCENARIOS: dict[str, Scenario] = {
    "one-pool-denied": one_pool_denied,
    "one-region-down": one_region_down,
    "paused-past-max-receives": paused_past_max_receives,
    "5xx-and-throttles": mixed_5xx_and_throttles,
}
