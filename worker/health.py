"""Liveness and readiness, and the HTTP server that serves them with /metrics.

/healthz (liveness) says the event loop and the receive loop are ticking; it never depends on
AWS being reachable, so an outage does not get the worker restarted in a loop. /readyz
(readiness) says the worker as a whole can do its job now: started, receiving, its own
identity not refused, and not every region it calls down. A paused pool or one region in an
outage is not the whole worker's problem: the other scopes go on, so it is listed in the body,
with the metrics, and does not make the worker unready. The body names scopes and error codes
only, never an account id or an ARN (AWS's messages carry both).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import prometheus_client
from aiohttp import web

from worker.scope_pauses import ScopePauses

# Receive errors in a row before readiness drops (one blip is not an outage).
RECEIVE_FAILURES_UNREADY = 3


@dataclass
class HealthState:
    """What the probes report; updated by the receive loop and the service."""

    liveness_stale_s: float
    pauses: ScopePauses
    started: bool = False
    stopping: bool = False
    receive_failures: int = 0
    last_receive_error: str = ""
    last_tick: float = field(default_factory=time.monotonic)
    regions_down: Callable[[], list[str]] = list
    regions_known: Callable[[], int] = lambda: 0

    def tick(self) -> None:
        self.last_tick = time.monotonic()

    def receive_ok(self) -> None:
        self.receive_failures = 0
        self.last_receive_error = ""

    def receive_failed(self, error: str) -> None:
        self.receive_failures += 1
        self.last_receive_error = error

    def live(self) -> tuple[bool, str]:
        age = time.monotonic() - self.last_tick
        if age > self.liveness_stale_s:
            return False, f"receive loop last ticked {age:.0f} s ago"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        if not self.started:
            return False, "starting"
        if self.stopping:
            return False, "shutting down"
        if (paused := self.pauses.worker_paused) is not None:
            return False, f"paused: the worker's identity is refused ({paused.code})"
        down = self.regions_down()
        if down and len(down) >= self.regions_known():
            return False, f"Cognito calls all failing in every region: {', '.join(down)}"
        if self.receive_failures >= RECEIVE_FAILURES_UNREADY:
            return False, f"cannot receive from SQS: {self.last_receive_error}"
        return True, "ok"

    def scopes(self) -> dict[str, Any]:
        """The scopes that cannot move now, for the /readyz body."""
        now = time.monotonic()
        return {
            "paused": [
                {
                    "scope": pause.key.scope.value,
                    "name": pause.key.name or None,
                    "code": pause.code,
                    "paused_for_s": round(now - pause.since, 1),
                }
                for pause in self.pauses.paused()
            ],
            "regions_down": self.regions_down(),
        }


def build_app(state: HealthState) -> web.Application:
    async def healthz(_request: web.Request) -> web.Response:
        ok, reason = state.live()
        return web.json_response(
            {"status": "ok" if ok else "fail", "reason": reason}, status=200 if ok else 503
        )

    async def readyz(_request: web.Request) -> web.Response:
        ok, reason = state.ready()
        body = {"status": "ok" if ok else "fail", "reason": reason, **state.scopes()}
        return web.json_response(body, status=200 if ok else 503)

    async def metrics(_request: web.Request) -> web.Response:
        body = prometheus_client.generate_latest()
        return web.Response(
            body=body, headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def start_server(state: HealthState, host: str, port: int) -> web.AppRunner:
    """Serve the probes and metrics; the caller cleans the runner up."""
    runner = web.AppRunner(build_app(state), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner
