"""What every fault scenario shares: its size (Profile), its result, and the steps that begin
and end a run.

Every scenario returns a ScenarioResult whose tally must show nothing lost, nothing wrongly
dead-lettered, no stale verdict and nothing left, plus its own checks (named properties such
as "/readyz went unready during the outage").
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tests.faults.checker import Tally
from tests.faults.harness import Harness, Recovery, Run
from tests.faults.workload import Expect, Planned, make_universe, standard_mix

# Worker visibility timeout where a scenario wants held messages to come back quickly.
SHORT_VISIBILITY_S = 10
SHORT_SHUTDOWN_S = 5.0
RECOVERY_TIMEOUT_S = 120.0
# Slack on top of the shutdown timeout for the process to exit after its deadline.
EXIT_GRACE_S = 5.0
# Parked messages come back within a few seconds (a released or parked one is no loss).
PARKED_VISIBLE_WITHIN_S = 10.0


@dataclass(frozen=True)
class Profile:
    """How big and how long: the short form runs in CI, the full form on demand."""

    name: str
    users: int
    events_per_user: int
    outage_s: float
    storm_s: float
    spike_s: float
    kills: int
    fuzz_count: int
    drain_timeout_s: float
    # How late each DeleteMessageBatch is answered during a delete brownout.
    slow_delete_s: float
    # How often the test itself hands a message back before the worker sees it.
    hand_backs: int
    # Messages that each meet one failure of their own.
    lone_failures: int


SHORT = Profile(
    name="short",
    users=12,
    events_per_user=8,
    outage_s=24.0,
    storm_s=10.0,
    spike_s=15.0,
    kills=3,
    fuzz_count=60,
    drain_timeout_s=180.0,
    slow_delete_s=8.0,
    hand_backs=6,
    lone_failures=6,
)
FULL = Profile(
    name="full",
    users=25,
    events_per_user=10,
    outage_s=30.0,
    storm_s=20.0,
    spike_s=25.0,
    kills=5,
    fuzz_count=200,
    drain_timeout_s=420.0,
    slow_delete_s=30.0,
    hand_backs=7,
    lone_failures=10,
)


@dataclass
class ScenarioResult:
    name: str
    tally: Tally
    recoveries: list[Recovery] = field(default_factory=list)
    checks: dict[str, bool] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.tally.ok and all(self.checks.values())


Scenario = Callable[[Harness, Profile], Awaitable[ScenarioResult]]


async def prepare(run: Run, profile: Profile, *, scale: float = 1.0) -> list[list[Planned]]:
    """Seed a fresh pool in the default region; the standard mix of messages for it, in rounds."""
    users = max(2, int(profile.users * scale))
    universe = make_universe(run.rng, users, profile.events_per_user)
    await run.seed(universe)
    return standard_mix(universe, run.rng)


def applies(rounds: list[list[Planned]]) -> int:
    """How many of the planned messages must end applied."""
    return sum(1 for plans in rounds for p in plans if p.expect is Expect.APPLY)


async def finish(run: Run, profile: Profile, started: float, **checks: bool) -> ScenarioResult:
    """Drain, stop the workers, check the end state; `checks` are the scenario's own."""
    alive = bool(run.workers) and run.worker.returncode is None
    tally = await run.finish(profile.drain_timeout_s)
    result = ScenarioResult(run.name, tally, notes=run.notes, elapsed_s=time.monotonic() - started)
    result.checks = {"worker up at the end": alive, **checks}
    return result
