"""Calling Cognito: one AdminUpdateAuthEventFeedback call, paced, bounded and classified.

This module owns everything a call needs besides the verdict: the client signed for the
pool's region (worker.clients), the region's fair round-robin of call slots
(worker.scheduler) at the rate it allows (worker.rate_control), the spacing of one user's
calls (worker.pacing), the bounds on calls in flight (in all, and per region, so a slow
region cannot take every slot), and each region's health (worker.region_health). The handler
asks for `call(verdict, ...)` and gets an Outcome back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import anyio
import structlog

from worker import metrics, tracing
from worker.clients import Clients
from worker.config import Settings
from worker.contract import Verdict
from worker.outcome import SUCCESS, Kind, Outcome, classify_exception
from worker.pacing import KeyedSpacing
from worker.rate_control import RateController
from worker.region_health import RegionHealth
from worker.scheduler import RegionScheduler

log = structlog.get_logger()

# One region's calls in flight take at most this share of all call slots (at least one).
REGION_CALL_SHARE = 0.5


@dataclass(slots=True)
class _Region:
    """What the worker knows of one region's Cognito endpoint."""

    rate: RateController
    scheduler: RegionScheduler
    calls: anyio.CapacityLimiter
    health: RegionHealth


class CognitoCaller:
    """Paces and makes feedback calls; one per worker process."""

    def __init__(self, settings: Settings, clients: Clients) -> None:
        self._settings = settings
        self._clients = clients
        self._users = KeyedSpacing(settings.user_rate_limit)
        self._calls = anyio.CapacityLimiter(settings.concurrency)
        self._regions: dict[str, _Region] = {}

    async def call(
        self,
        verdict: Verdict,
        *,
        tenant: Hashable,
        message_id: str,
        may_call: Callable[[], bool],
        on_call: Callable[[], None],
    ) -> Outcome | None:
        """Wait for the region to grant `tenant`'s user a slot and for a call slot, then call.

        `may_call` is asked when the region's turn comes (a call no longer wanted spends no
        slot) and again once the call slot is held, with no checkpoint before the call; None
        means it said no and nothing was sent. `on_call` marks the moment the call starts.
        """
        region = self._region(verdict.region)
        user = (verdict.user_pool_id, verdict.username)
        if not await region.scheduler.turn(tenant, user, wanted=may_call):
            return None
        async with region.calls, self._calls:
            # A call to this user granted earlier may have waited for its call slot: wait
            # and mark with no checkpoint in between, so two calls to one user are never
            # closer than allowed.
            await self._users.wait(user)
            if not may_call():
                return None
            on_call()
            self._users.mark(user)
            started = time.monotonic()
            with tracing.cognito_call(verdict.user_pool_id, verdict.region) as traced:
                outcome = await self._send(verdict)
                traced.record(outcome)
        self._adapt(verdict.region, region.rate, outcome, started)
        region.health.record(outcome, message_id)
        return outcome

    def rate(self, region: str) -> float:
        """The calls per second `region` allows now."""
        return self._region(region).rate.rate

    def region_stall_s(self, region: str) -> float | None:
        """How long messages of `region` should stay away while it is down; None while up."""
        known = self._regions.get(region)
        return None if known is None else known.health.park_for_s()

    def region_down(self, region: str) -> bool:
        known = self._regions.get(region)
        return known is not None and known.health.down

    def regions_known(self) -> int:
        """How many regions this process has called."""
        return len(self._regions)

    def regions_down(self) -> list[str]:
        """'region: last error' for each region whose calls all fail (for readiness)."""
        return [
            f"{name}: {known.health.last_error}"
            for name, known in self._regions.items()
            if known.health.down
        ]

    def _region(self, name: str) -> _Region:
        """The region's state; regions are those of botocore's endpoint data, so few."""
        known = self._regions.get(name)
        if known is None:
            rate = RateController(self._settings.rate_limit, now=time.monotonic())
            scheduler = RegionScheduler(rate, user_interval_s=1.0 / self._settings.user_rate_limit)
            slots = max(1, int(self._settings.concurrency * REGION_CALL_SHARE))
            known = self._regions[name] = _Region(
                rate, scheduler, anyio.CapacityLimiter(slots), RegionHealth(name)
            )
            metrics.ALLOWED_RATE.labels(name).set(rate.rate)
        return known

    async def _send(self, verdict: Verdict) -> Outcome:
        metrics.IN_FLIGHT.inc()
        started = time.monotonic()
        try:
            client = await self._clients.cognito(verdict.region)
            await client.admin_update_auth_event_feedback(
                UserPoolId=verdict.user_pool_id,
                Username=verdict.username,
                EventId=verdict.event_id,
                FeedbackValue=verdict.feedback_value,  # type: ignore[arg-type]
            )
        except Exception as exc:
            outcome = classify_exception(exc)
            metrics.COGNITO_ERRORS.labels(outcome.code).inc()
            return outcome
        else:
            return SUCCESS
        finally:
            metrics.IN_FLIGHT.dec()
            metrics.CALL_LATENCY.observe(time.monotonic() - started)

    @staticmethod
    def _adapt(region: str, rate: RateController, outcome: Outcome, call_started: float) -> None:
        if outcome.kind is Kind.SUCCESS:
            rate.on_success(time.monotonic())
        elif outcome.kind is Kind.THROTTLED:
            metrics.THROTTLES.labels(region).inc()
            rate.on_throttle(time.monotonic(), call_started)
        else:
            return
        metrics.ALLOWED_RATE.labels(region).set(rate.rate)
        reported = rate.take_report()
        if reported is not None:
            log.info("rate.changed", region=region, allowed_per_s=round(reported, 2))
