"""The fault scenarios, by name: kills, outages, error storms, fuzz and duplicates here; the
scopes of a failure (scenarios_scopes) and the delivery contract (scenarios_delivery) beside.
"""

from __future__ import annotations

import signal
import time

import anyio

from tests.faults.base import (
    EXIT_GRACE_S,
    PARKED_VISIBLE_WITHIN_S,
    RECOVERY_TIMEOUT_S,
    SHORT_SHUTDOWN_S,
    SHORT_VISIBILITY_S,
    Profile,
    Scenario,
    ScenarioResult,
    applies,
    finish,
    prepare,
)
from tests.faults.fuzz import fuzz_plan
from tests.faults.harness import Harness, Recovery, Run, RunSettings
from tests.faults.scenarios_delivery import DELIVERY_SCENARIOS
from tests.faults.scenarios_scopes import SCOPE_SCENARIOS
from tests.faults.workload import Planned, huge_bodies, make_universe
from tests.support.tcp_proxy import Mode, TcpProxy

BAD_REQUEST_CODES = ("InvalidParameterException", "SerializationException")


async def _outage(run: Run, proxy: TcpProxy, seconds: float, later: list[Planned]) -> Recovery:
    """A third of the time blackholed (calls hang), then refused (calls fail at once); new
    messages arrive meanwhile."""
    proxy.set_mode(Mode.BLACKHOLE)
    await run.send(later)
    await anyio.sleep(seconds / 3)
    proxy.set_mode(Mode.REFUSE)
    await anyio.sleep(seconds * 2 / 3)
    proxy.set_mode(Mode.PASS)
    return await run.recovery(time.monotonic(), RECOVERY_TIMEOUT_S)


# -- scenarios ---------------------------------------------------------------------------------


async def sigkill(h: Harness, p: Profile) -> ScenarioResult:
    """SIGKILL at random moments, several times, each followed by a restart."""
    started = time.monotonic()
    settings = RunSettings(visibility_timeout_s=SHORT_VISIBILITY_S, shutdown_timeout_s=5)
    async with h.run("sigkill", settings) as run:
        rounds = await prepare(run, p)
        # Calls that take a while, as real ones do, so that kills land on calls in flight.
        await h.emulator.configure(latency_s=0.1, latency_jitter_s=0.2)
        await run.send(rounds[0])
        pending = rounds[1:]
        await run.start_worker()
        recoveries = []
        for _ in range(p.kills):
            await anyio.sleep(run.rng.uniform(0.3, 3.0))
            run.worker.kill()
            if pending:
                await run.send_rounds([pending.pop(0)])
            restarted = time.monotonic()
            await run.start_worker()
            recoveries.append(await run.recovery(restarted, RECOVERY_TIMEOUT_S))
        await run.send_rounds(pending)
        result = await finish(run, p, started)
        result.recoveries = recoveries
        result.tally.stale_allowed = True
        if result.tally.stale:
            result.notes.append(
                f"{result.tally.stale} event(s) ended on an older verdict after a kill: the "
                "newest-wins memory is per process (known limitation, see the README)"
            )
        return result


async def sigterm(h: Harness, p: Profile) -> ScenarioResult:
    """SIGTERM under load: exit 0 within the shutdown timeout, nothing left in flight."""
    started = time.monotonic()
    # The default poll wait (1 s): a poll in progress at SIGTERM answers within it, and what
    # it brings is handed back, so it does not hold up the exit.
    settings = RunSettings(
        shutdown_timeout_s=SHORT_SHUTDOWN_S, worker_env={"FEEDBACK_WAIT_TIME": ""}
    )
    async with h.run("sigterm", settings) as run:
        rounds = await prepare(run, p)
        await h.emulator.configure(latency_s=0.3, latency_jitter_s=0.3)  # calls in flight
        await run.send_rounds(rounds)
        await run.start_worker()
        await run.wait_applied(applies(rounds) // 4, RECOVERY_TIMEOUT_S)
        signalled = time.monotonic()
        run.worker.send_signal(signal.SIGTERM)
        code = await run.worker.wait_exit(settings.shutdown_timeout_s + EXIT_GRACE_S)
        exit_s = time.monotonic() - signalled
        # What was released at the stop is visible at once; what was parked (beyond its
        # scope's share) within its short delay; a message left hidden would take the whole
        # visibility timeout.
        with anyio.move_on_after(PARKED_VISIBLE_WITHIN_S):
            while (in_flight := (await run.depth())[1]) > 0:
                await anyio.sleep(0.5)
        run.notes.append(f"exit code {code} after {exit_s:.1f}s; {in_flight} left in flight")
        await h.emulator.configure(latency_s=0.0, latency_jitter_s=0.0)
        await run.start_worker()
        return await finish(
            run,
            p,
            started,
            **{
                "exit code 0": code == 0,
                "exited within the shutdown timeout": code is not None,
                "nothing in flight after exit": in_flight == 0,
            },
        )


async def sqs_outage(h: Harness, p: Profile) -> ScenarioResult:
    """SQS unreachable mid-run (refused, then blackholed); recovery without a restart."""
    return await _proxy_outage(h, p, "sqs-outage", h.sqs_proxy)


async def cognito_outage(h: Harness, p: Profile) -> ScenarioResult:
    """Cognito unreachable mid-run (refused, then blackholed); nothing dead-lettered for it."""
    return await _proxy_outage(h, p, "cognito-outage", h.cognito_proxy)


async def _proxy_outage(h: Harness, p: Profile, name: str, proxy: TcpProxy) -> ScenarioResult:
    started = time.monotonic()
    async with h.run(name) as run:
        rounds = await prepare(run, p)
        await run.send(rounds[0])
        await run.start_worker()
        await run.wait_applied(applies(rounds[:1]) // 4, RECOVERY_TIMEOUT_S)
        fault_start = time.monotonic()
        recovery = await _outage(run, proxy, p.outage_s, rounds[1] if len(rounds) > 1 else [])
        unready = run.ready.unready_between(fault_start, fault_start + p.outage_s + 1)
        await run.send_rounds(rounds[2:])
        result = await finish(run, p, started, **{"/readyz unready during the outage": unready})
        result.recoveries = [recovery]
        return result


async def cognito_5xx_storm(h: Harness, p: Profile) -> ScenarioResult:
    """Half of all Cognito calls answer InternalErrorException (HTTP 500) for a while."""
    started = time.monotonic()
    async with h.run("cognito-5xx-storm") as run:
        rounds = await prepare(run, p)
        await run.send(rounds[0])
        await run.start_worker()
        await h.emulator.configure(fault_internal_error=0.5)
        await run.send_rounds(rounds[1:])
        await anyio.sleep(p.storm_s)
        await h.emulator.configure(fault_internal_error=0.0)
        recovery = await run.recovery(time.monotonic(), RECOVERY_TIMEOUT_S)
        stats = await h.emulator.stats()
        errors = stats.get("errors", {}).get("InternalErrorException", 0)
        result = await finish(run, p, started, **{"the storm hit calls": errors > 0})
        result.recoveries = [recovery]
        result.notes.append(f"{errors} calls answered InternalErrorException")
        return result


async def latency_spike(h: Harness, p: Profile) -> ScenarioResult:
    """Cognito answers later than the visibility timeout: the heartbeat must hold messages."""
    started = time.monotonic()
    settings = RunSettings(visibility_timeout_s=SHORT_VISIBILITY_S, shutdown_timeout_s=5)
    async with h.run("latency-spike", settings) as run:
        rounds = await prepare(run, p, scale=0.5)
        await run.send(rounds[0])
        await run.start_worker()
        # Not cut: a call reset mid-flight would be retried and applied twice, which is
        # at-least-once at work, not the heartbeat failing.
        h.cognito_proxy.set_mode(Mode.DELAY, delay_s=SHORT_VISIBILITY_S * 1.2, cut=False)
        await run.send_rounds(rounds[1:])
        await anyio.sleep(p.spike_s)
        h.cognito_proxy.set_mode(Mode.PASS, cut=False)
        recovery = await run.recovery(time.monotonic(), RECOVERY_TIMEOUT_S)
        # Every message settled by the one incarnation: a receive beyond one per message is a
        # redelivery the heartbeat should have prevented.
        await run.wait_drained(p.drain_timeout_s)
        samples = await run.worker.metrics()
        received = samples.get("feedback_worker_messages_received_total", 0)
        # Handed back on purpose (parked beyond a scope's share, requeued) is no redelivery.
        handed_back = sum(
            value
            for name, value in samples.items()
            if name.startswith(
                ("feedback_worker_messages_released_total", "feedback_worker_messages_requeued")
            )
        )
        redelivered = int(received - handed_back) - len(run.sent)
        result = await finish(
            run, p, started, **{"no message redelivered while held": redelivered <= 0}
        )
        result.recoveries = [recovery]
        result.notes.append(
            f"received {int(received)} for {len(run.sent)} sent, {int(handed_back)} handed back"
        )
        return result


async def throttling(h: Harness, p: Profile) -> ScenarioResult:
    """A quota far below the worker's rate, plus untyped "Rate exceeded" throttles."""
    started = time.monotonic()
    async with h.run("throttling") as run:
        rounds = await prepare(run, p)
        await run.send(rounds[0])
        await run.start_worker()
        await h.emulator.configure(quota_per_region=4, burst=4, fault_untyped_throttle=0.2)
        await run.send_rounds(rounds[1:])
        await anyio.sleep(p.storm_s * 1.5)
        throttles = int((await h.emulator.stats()).get("throttles", 0))
        await h.emulator.configure(quota_per_region=25, burst=None, fault_untyped_throttle=0.0)
        recovery = await run.recovery(time.monotonic(), RECOVERY_TIMEOUT_S)
        result = await finish(run, p, started, **{"calls were throttled": throttles > 0})
        result.recoveries = [recovery]
        result.notes.append(f"{throttles} calls throttled during the burst")
        return result


async def revoked_credentials(h: Harness, p: Profile) -> ScenarioResult:
    """The worker's access key is revoked for a while (UnrecognizedClientException: its own
    identity, so the whole worker pauses), then restored."""
    started = time.monotonic()
    async with h.run("revoked-credentials") as run:
        rounds = await prepare(run, p)
        await run.send(rounds[0])
        await run.start_worker()
        await run.wait_applied(applies(rounds[:1]) // 4, RECOVERY_TIMEOUT_S)
        fault_start = time.monotonic()
        known = (await h.emulator.config())["known_keys"]
        await h.emulator.configure(known_keys={})
        await run.send_rounds(rounds[1:])
        await anyio.sleep(p.outage_s)
        await h.emulator.configure(known_keys=known)
        fault_end = time.monotonic()
        recovery = await run.recovery(fault_end, RECOVERY_TIMEOUT_S)
        unready = run.ready.unready_between(fault_start, fault_end + 1)
        result = await finish(
            run, p, started, **{"/readyz unready while credentials were revoked": unready}
        )
        result.recoveries = [recovery]
        return result


async def fuzzed_bodies(h: Harness, p: Profile) -> ScenarioResult:
    """Hypothesis-drawn, random, deep and huge bodies: all dead-lettered, none reaching Cognito
    as a bad request, the worker never down."""
    started = time.monotonic()
    async with h.run("fuzzed-bodies") as run:
        universe = make_universe(run.rng, 3, 3)
        await run.seed(universe)
        plans, run.unsendable = fuzz_plan(p.fuzz_count, seed=run.rng.randrange(2**32))
        plans += huge_bodies(universe, universe.keys()[0])
        run.rng.shuffle(plans)
        await run.start_worker()
        await run.send(plans)
        result = await finish(run, p, started)
        stats = await h.emulator.stats()
        bad = {code: stats.get("errors", {}).get(code, 0) for code in BAD_REQUEST_CODES}
        result.checks["no malformed request reached Cognito"] = not any(bad.values())
        result.checks["a single worker incarnation"] = len(run.workers) == 1
        result.notes.append(
            f"{len(run.unsendable)} bodies SQS would refuse, not sent: "
            + ", ".join(sorted({f"{label} ({why})" for label, why in run.unsendable}))
        )
        return result


async def duplicate_deliveries(h: Harness, p: Profile) -> ScenarioResult:
    """Every message sent twice, byte for byte: harmless."""
    started = time.monotonic()
    async with h.run("duplicates") as run:
        rounds = await prepare(run, p, scale=0.5)
        await run.start_worker()
        for plans in rounds:
            await run.send(plans)
            await run.send(plans)
            await anyio.sleep(0.05)
        return await finish(run, p, started)


SCENARIOS: dict[str, Scenario] = {
    "sigkill": sigkill,
    "sigterm": sigterm,
    "sqs-outage": sqs_outage,
    "cognito-outage": cognito_outage,
    "cognito-5xx-storm": cognito_5xx_storm,
    "latency-spike": latency_spike,
    "throttling": throttling,
    "revoked-credentials": revoked_credentials,
    "fuzzed-bodies": fuzzed_bodies,
    "duplicates": duplicate_deliveries,
    **SCOPE_SCENARIOS,
    **DELIVERY_SCENARIOS,
}
