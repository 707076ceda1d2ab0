"""Pauses of a failure's scope: one user pool, one region, or the whole worker.

A systemic failure (our deployment is wrong, not the message) pauses the scope the evidence
points at, never more. An error about one pool (the IAM policy leaves it out, its web ACL
refuses us) pauses that pool; the region's endpoint refusing our signature pauses that
region. The whole worker pauses only when the evidence points at its own identity: its
credentials are refused or missing, or a second pool or region fails the same way with no
success anywhere since the first. Nothing is dead-lettered for any of it.

Each paused scope has one probe: the message that met the failure (or, once it leaves, the
next one to come by) keeps calling with a capped backoff, and any answer to it that is not
systemic resumes the scope by itself. The scope's other messages are parked until the next
probe. Each pause is logged once, with what to check.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
import structlog

from worker import backoff, metrics
from worker.outcome import Scope

log = structlog.get_logger()

# Parked messages come back this long after the probe that may have ended the pause.
PARK_MARGIN_S = 1.0
ADVICE = {
    Scope.POOL: "the worker is refused for this user pool only: check that its IAM policy "
    "allows cognito-idp:AdminUpdateAuthEventFeedback on the pool's ARN, and the pool's web "
    "ACL; the pool's verdicts wait, the other pools go on",
    Scope.REGION: "this region's endpoint refuses the worker's requests: check the endpoint "
    "configured for the region (FEEDBACK_COGNITO_ENDPOINTS) and the host's clock; the "
    "region's verdicts wait, the other regions go on",
    Scope.WORKER: "the worker's own identity is refused or missing: check its credentials and "
    "role (IRSA, Pod Identity, task role, instance profile) and its IAM policy; all work "
    "waits, and resumes by itself once a probe call succeeds",
}


@dataclass(frozen=True, slots=True)
class ScopeKey:
    """A scope that can be paused: a pool (by id), a region (by name) or the whole worker."""

    scope: Scope
    name: str = ""

    def __str__(self) -> str:
        return self.scope.value if self.scope is Scope.WORKER else f"{self.scope.value} {self.name}"


WORKER = ScopeKey(Scope.WORKER)


@dataclass(eq=False)
class Pause:
    """One paused scope: why, since when, and its probe."""

    key: ScopeKey
    code: str
    message: str
    since: float
    next_probe_at: float
    probe: object | None = None
    probes: int = 0
    widened_from: list[ScopeKey] = field(default_factory=list)


class ScopePauses:
    """The paused scopes of this process; one instance per worker process."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._pauses: dict[ScopeKey, Pause] = {}
        self._last_answer = -math.inf
        self._changed = anyio.Event()

    # -- what callers ask ---------------------------------------------------------------------

    def blocking(self, region: str, pool: str) -> Pause | None:
        """The widest pause that holds calls for `pool` in `region`, if any."""
        for key in (WORKER, ScopeKey(Scope.REGION, region), ScopeKey(Scope.POOL, pool)):
            pause = self._pauses.get(key)
            if pause is not None:
                return pause
        return None

    def may_call(self, owner: object, region: str, pool: str) -> bool:
        """Whether `owner` may call now; it takes the probe role of a pause that has none."""
        pause = self.blocking(region, pool)
        if pause is None:
            return True
        if pause.probe is None:
            pause.probe = owner
        return pause.probe is owner

    def park_for_s(self, region: str, pool: str) -> float:
        """How long a message held up by a pause should stay away: until after its next probe."""
        pause = self.blocking(region, pool)
        if pause is None:
            return 0.0
        return max(0.0, pause.next_probe_at - self._clock()) + PARK_MARGIN_S

    @property
    def worker_paused(self) -> Pause | None:
        return self._pauses.get(WORKER)

    def paused(self) -> list[Pause]:
        return list(self._pauses.values())

    async def changed(self) -> None:
        await self._changed.wait()

    # -- evidence ---------------------------------------------------------------------------

    def failed(self, owner: object, key: ScopeKey, code: str, message: str) -> float:
        """A systemic failure met by `owner` in `key`: pause the scope the evidence points at.

        Returns how long `owner`, if it is the probe, waits before calling again.
        """
        now = self._clock()
        key, widened = self._widen(key, now)
        pause = self._pauses.get(key)
        if pause is None:
            pause = self._pauses[key] = Pause(key, code, message, since=now, next_probe_at=now)
            pause.widened_from = widened
            self._announce(pause)
        if pause.probe is None:
            pause.probe = owner
        if pause.probe is not owner:
            return 0.0
        pause.probes += 1
        delay = backoff.full_jitter(
            pause.probes, base_s=backoff.PROBE_BASE_S, cap_s=backoff.PROBE_CAP_S
        )
        pause.next_probe_at = now + delay
        return delay

    def answered(self, region: str, pool: str) -> None:
        """A call for `pool` in `region` got an answer that is not systemic: the scopes it
        passes through work (the probe's answer, or one of a call already in flight)."""
        self._last_answer = self._clock()
        for key in (WORKER, ScopeKey(Scope.REGION, region), ScopeKey(Scope.POOL, pool)):
            pause = self._pauses.get(key)
            if pause is not None:
                self._resume(pause)

    def leave(self, owner: object) -> None:
        """`owner` is done (settled or handed back): a pause it probed needs a new probe."""
        for pause in self._pauses.values():
            if pause.probe is owner:
                pause.probe = None
                self._notify()

    # -- inside ------------------------------------------------------------------------------

    def _widen(self, key: ScopeKey, now: float) -> tuple[ScopeKey, list[ScopeKey]]:
        """The worker itself when another pool or region failed too with no answer since."""
        if key.scope is Scope.WORKER:
            return key, []
        peers = [
            pause.key
            for pause in self._pauses.values()
            if pause.key.scope is key.scope and pause.key != key
        ]
        # Another one paused since the last answer anywhere (an answer to a call sent before
        # the failure began may arrive after the first pause: it does not clear the evidence).
        fresh = [p for p in peers if self._pauses[p].since > self._last_answer]
        if fresh:
            return WORKER, [*fresh, key]
        return key, []

    def _announce(self, pause: Pause) -> None:
        extra = {"widened_from": [str(k) for k in pause.widened_from]} if pause.widened_from else {}
        log.error(
            "scope.paused",
            scope=pause.key.scope.value,
            name=pause.key.name or None,
            code=pause.code,
            error=pause.message,
            note=ADVICE[pause.key.scope],
            **extra,
        )
        self._update_metrics()
        self._notify()

    def _resume(self, pause: Pause) -> None:
        del self._pauses[pause.key]
        log.warning(
            "scope.resumed",
            scope=pause.key.scope.value,
            name=pause.key.name or None,
            after=pause.code,
            paused_for_s=round(self._clock() - pause.since, 1),
        )
        self._update_metrics()
        self._notify()

    def _update_metrics(self) -> None:
        for scope in (Scope.POOL, Scope.REGION, Scope.WORKER):
            count = sum(1 for key in self._pauses if key.scope is scope)
            metrics.PAUSED_SCOPES.labels(scope.value).set(count)
        metrics.PAUSED.set(1 if WORKER in self._pauses else 0)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()
