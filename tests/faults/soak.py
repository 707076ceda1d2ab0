"""The soak: the worker at its rate limit for a long while, with a fault every few minutes.

A producer keeps the queue fed at the worker's own rate (so the queue stays shallow and moto
stays fast), cycling through the seeded events so that verdicts for one event are minutes
apart. Faults rotate on a fixed schedule and never kill the process: the point is to watch
one process's resident memory, open file descriptors, threads and held messages over time.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

from tests.faults.base import RECOVERY_TIMEOUT_S, ScenarioResult
from tests.faults.harness import Harness, Run, RunSettings
from tests.faults.workload import (
    INVALID,
    VALID,
    Expect,
    Planned,
    make_universe,
    malformed,
    unknown_targets,
    verdict_body,
)
from tests.support.tcp_proxy import Mode
from tests.support.worker_process import Sample

DEFAULT_SOAK_MINUTES = 30.0
RATE_PER_S = 20  # the worker's default rate limit, under the emulator's 25/s quota
SEND_BATCH = 10
INVALID_EVERY = 20  # one dead-letter-bound body per this many verdicts
FAULT_EVERY_S = 150.0
FAULT_LENGTH_S = 20.0
SAMPLE_EVERY_S = 30.0
WARM_UP_S = 60.0
DRAIN_TIMEOUT_S = 600.0


async def _cognito_storm(h: Harness, on: bool) -> None:
    await h.emulator.configure(fault_internal_error=0.5 if on else 0.0)


async def _cognito_down(h: Harness, on: bool) -> None:
    h.cognito_proxy.set_mode(Mode.REFUSE if on else Mode.PASS)


async def _throttle_burst(h: Harness, on: bool) -> None:
    await h.emulator.configure(quota_per_region=8 if on else 25, fault_untyped_throttle=0.1 * on)


async def _slow_cognito(h: Harness, on: bool) -> None:
    h.cognito_proxy.set_mode(Mode.DELAY if on else Mode.PASS, delay_s=3.0 * on, cut=False)


async def _sqs_down(h: Harness, on: bool) -> None:
    h.sqs_proxy.set_mode(Mode.REFUSE if on else Mode.PASS)


async def _denied(h: Harness, on: bool) -> None:
    await h.emulator.configure(denied_access_keys=["testing"] if on else [])


FAULTS: list[tuple[str, Callable[[Harness, bool], Awaitable[None]]]] = [
    ("cognito 5xx storm", _cognito_storm),
    ("cognito refused", _cognito_down),
    ("throttle burst", _throttle_burst),
    ("cognito slow", _slow_cognito),
    ("sqs refused", _sqs_down),
    ("credentials denied", _denied),
]


async def _produce(run: Run, deadline: float) -> None:
    universe = make_universe(run.rng, 100, 20)
    await run.seed(universe)
    keys = universe.keys()
    run.rng.shuffle(keys)
    value = dict.fromkeys(keys, VALID)
    extras = malformed(universe) + unknown_targets(universe, run.rng, 40)
    seq = 0
    while time.monotonic() < deadline:
        batch: list[Planned] = []
        for _ in range(SEND_BATCH):
            key = keys[seq % len(keys)]
            seq += 1
            verdict = value[key]
            value[key] = INVALID if verdict == VALID else VALID
            batch.append(
                Planned(verdict_body(*key, verdict), Expect.APPLY, "soak", key, verdict, seq)
            )
            if seq % INVALID_EVERY == 0:
                batch.append(extras[(seq // INVALID_EVERY) % len(extras)])
        await run.send(batch)
        await anyio.sleep(SEND_BATCH / RATE_PER_S)


async def soak(h: Harness, minutes: float, workdir: Path) -> ScenarioResult:
    started = time.monotonic()
    deadline = started + minutes * 60
    samples: list[tuple[float, Sample, float]] = []
    async with h.run(f"soak-{minutes:g}min", RunSettings(max_attempts=8)) as run:
        async with anyio.create_task_group() as group:
            group.start_soon(_produce, run, deadline)
            await run.start_worker()
            recoveries = []
            next_fault, next_sample, fault_index = started + FAULT_EVERY_S, started + WARM_UP_S, 0
            while time.monotonic() < deadline:
                now = time.monotonic()
                if now >= next_sample:
                    sample = run.worker.sample()
                    held = (await run.worker.metrics()).get("feedback_worker_messages_held", -1)
                    if sample is not None:
                        samples.append((now - started, sample, held))
                    next_sample += SAMPLE_EVERY_S
                if now >= next_fault and now + FAULT_LENGTH_S < deadline:
                    name, toggle = FAULTS[fault_index % len(FAULTS)]
                    fault_index += 1
                    await toggle(h, True)
                    await anyio.sleep(FAULT_LENGTH_S)
                    await toggle(h, False)
                    recovery = await run.recovery(time.monotonic(), RECOVERY_TIMEOUT_S)
                    run.notes.append(f"{name}: {recovery.describe()}")
                    recoveries.append(recovery)
                    next_fault += FAULT_EVERY_S
                await anyio.sleep(1.0)
        alive = run.worker.returncode is None
        tally = await run.finish(DRAIN_TIMEOUT_S)
    result = ScenarioResult(run.name, tally, recoveries, {"worker up at the end": alive})
    result.notes = run.notes + _resource_notes(samples)
    result.elapsed_s = time.monotonic() - started
    (workdir / "soak-samples.tsv").write_text(
        "t_s\trss_bytes\topen_fds\tthreads\theld\n"
        + "".join(
            f"{t:.0f}\t{s.rss_bytes}\t{s.open_fds}\t{s.threads}\t{held:.0f}\n"
            for t, s, held in samples
        )
    )
    return result


def _resource_notes(samples: list[tuple[float, Sample, float]]) -> list[str]:
    if len(samples) < 2:
        return ["too few resource samples"]
    (t0, first, held0), (t1, last, held1) = samples[0], samples[-1]
    peak = max(s.rss_bytes for _, s, _ in samples)
    mib = 1024 * 1024
    return [
        f"RSS {first.rss_bytes / mib:.1f} MiB at {t0:.0f}s -> {last.rss_bytes / mib:.1f} MiB at "
        f"{t1:.0f}s (peak {peak / mib:.1f} MiB)",
        f"open fds {first.open_fds} -> {last.open_fds}; threads {first.threads} -> {last.threads}",
        f"held messages (one task each) {held0:.0f} -> {held1:.0f}",
    ]
