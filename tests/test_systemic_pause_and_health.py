"""The systemic pause (pause, probe, resume) and the health probes built on it, over real HTTP."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import anyio
import prometheus_client
import pytest
from structlog.testing import capture_logs

from worker import metrics
from worker.health import RECEIVE_FAILURES_UNREADY, HealthState, start_server
from worker.systemic_pause import SystemicPause

STALE_S = 30.0
DEADLOCK_GUARD_S = 10.0


class Task:
    """Stands for one handler task: the gate only compares owners by identity."""


@pytest.fixture
def gate() -> SystemicPause:
    return SystemicPause()


@pytest.fixture
def state(gate: SystemicPause) -> HealthState:
    return HealthState(liveness_stale_s=STALE_S, pause=gate, started=True)


# -- SystemicPause ----------------------------------------------------------------------------


def test_an_open_gate_lets_everyone_call(gate: SystemicPause) -> None:
    a, b = Task(), Task()
    assert gate.may_call(a)
    assert gate.may_call(b)
    assert not gate.paused
    assert not gate.has_probe
    assert not gate.is_probe(a)


def test_the_task_that_pauses_becomes_the_only_caller(gate: SystemicPause) -> None:
    probe, other = Task(), Task()
    gate.pause(probe, "AccessDeniedException", "no permission")
    assert gate.paused
    assert gate.is_probe(probe)
    assert gate.may_call(probe)
    assert not gate.may_call(other)
    assert not gate.is_probe(other)
    assert "AccessDeniedException" in gate.reason
    assert "no permission" in gate.reason


def test_a_second_pause_keeps_the_first_probe_and_reason(gate: SystemicPause) -> None:
    probe, other = Task(), Task()
    gate.pause(probe, "AccessDeniedException", "first")
    gate.pause(other, "ExpiredTokenException", "second")
    assert gate.is_probe(probe)
    assert not gate.may_call(other)
    assert "first" in gate.reason


def test_a_pause_is_logged_once_however_many_tasks_hit_it(gate: SystemicPause) -> None:
    with capture_logs() as logs:
        for _ in range(3):
            gate.pause(Task(), "AccessDeniedException", "no permission")
    assert [e["event"] for e in logs] == ["worker.paused"]
    assert logs[0]["code"] == "AccessDeniedException"


def test_only_the_probe_can_resume(gate: SystemicPause) -> None:
    probe, other = Task(), Task()
    gate.pause(probe, "AccessDeniedException", "no permission")
    gate.resume(other)
    assert not gate.may_call(other)
    gate.resume(probe)
    assert not gate.paused
    assert gate.reason == ""
    assert not gate.has_probe
    assert gate.may_call(other)


def test_a_probe_that_leaves_frees_the_role_for_the_next_task(gate: SystemicPause) -> None:
    probe, second, third = Task(), Task(), Task()
    gate.pause(probe, "AccessDeniedException", "no permission")
    gate.leave(probe)
    assert gate.paused
    assert not gate.has_probe
    assert gate.may_call(second)
    assert gate.is_probe(second)
    assert not gate.may_call(third)


def test_leaving_without_being_the_probe_changes_nothing(gate: SystemicPause) -> None:
    probe, other = Task(), Task()
    gate.pause(probe, "AccessDeniedException", "no permission")
    gate.leave(other)
    assert gate.is_probe(probe)


def test_a_pause_while_the_probe_role_is_free_makes_the_pauser_the_probe(
    gate: SystemicPause,
) -> None:
    first, second = Task(), Task()
    gate.pause(first, "AccessDeniedException", "no permission")
    gate.leave(first)
    gate.pause(second, "AccessDeniedException", "still no permission")
    assert gate.is_probe(second)


def test_the_paused_gauge_follows_the_gate(gate: SystemicPause) -> None:
    probe = Task()
    gate.pause(probe, "AccessDeniedException", "no permission")
    assert gauge_value("feedback_worker_paused") == 1
    gate.resume(probe)
    assert gauge_value("feedback_worker_paused") == 0


def gauge_value(name: str) -> float | None:
    return prometheus_client.REGISTRY.get_sample_value(name)


async def changes_seen(gate: SystemicPause, *steps: Callable[[], object]) -> int:
    """Run `steps` (callables) one by one; count how many woke a task waiting on changed()."""
    seen = 0
    for step in steps:
        woke = anyio.Event()

        async def watch(woke: anyio.Event = woke) -> None:
            await gate.changed()
            woke.set()

        with anyio.fail_after(DEADLOCK_GUARD_S):
            async with anyio.create_task_group() as tg:
                tg.start_soon(watch)
                await anyio.wait_all_tasks_blocked()
                step()
                await anyio.wait_all_tasks_blocked()
                if woke.is_set():
                    seen += 1
                tg.cancel_scope.cancel()
    return seen


async def test_waiters_on_changed_wake_on_pause_leave_and_resume(gate: SystemicPause) -> None:
    probe, second = Task(), Task()
    seen = await changes_seen(
        gate,
        lambda: gate.pause(probe, "AccessDeniedException", "no permission"),
        lambda: gate.leave(probe),
    )
    assert gate.may_call(second)
    seen += await changes_seen(gate, lambda: gate.resume(second))
    assert seen == 3


async def test_no_wake_up_for_a_step_that_changes_nothing(gate: SystemicPause) -> None:
    probe, other = Task(), Task()
    gate.pause(probe, "AccessDeniedException", "no permission")
    seen = await changes_seen(gate, lambda: gate.resume(other), lambda: gate.leave(other))
    assert seen == 0


# -- HealthState -----------------------------------------------------------------------------


def test_not_ready_while_starting(gate: SystemicPause) -> None:
    ready, reason = HealthState(liveness_stale_s=STALE_S, pause=gate).ready()
    assert not ready
    assert "starting" in reason


def test_ready_once_started(state: HealthState) -> None:
    assert state.ready() == (True, "ok")


def test_not_ready_while_paused_and_says_why(state: HealthState, gate: SystemicPause) -> None:
    gate.pause(Task(), "AccessDeniedException", "no permission")
    ready, reason = state.ready()
    assert not ready
    assert "AccessDeniedException" in reason


def test_ready_again_after_resume(state: HealthState, gate: SystemicPause) -> None:
    probe = Task()
    gate.pause(probe, "AccessDeniedException", "no permission")
    gate.resume(probe)
    assert state.ready()[0]


def test_not_ready_while_stopping(state: HealthState) -> None:
    state.stopping = True
    ready, reason = state.ready()
    assert not ready
    assert "shutting down" in reason


def test_a_few_receive_failures_do_not_drop_readiness(state: HealthState) -> None:
    for _ in range(RECEIVE_FAILURES_UNREADY - 1):
        state.receive_failed("EndpointConnectionError")
    assert state.ready()[0]


def test_enough_receive_failures_in_a_row_drop_readiness(state: HealthState) -> None:
    for n in range(RECEIVE_FAILURES_UNREADY):
        state.receive_failed(f"EndpointConnectionError #{n}")
    ready, reason = state.ready()
    assert not ready
    assert f"#{RECEIVE_FAILURES_UNREADY - 1}" in reason


def test_one_good_receive_restores_readiness(state: HealthState) -> None:
    for _ in range(RECEIVE_FAILURES_UNREADY):
        state.receive_failed("EndpointConnectionError")
    state.receive_ok()
    assert state.ready()[0]
    state.receive_failed("EndpointConnectionError")
    assert state.ready()[0]


def test_live_while_the_receive_loop_ticks(state: HealthState) -> None:
    state.tick()
    assert state.live() == (True, "ok")


def test_not_live_once_the_receive_loop_stops_ticking(state: HealthState) -> None:
    state.last_tick = time.monotonic() - STALE_S - 5
    live, reason = state.live()
    assert not live
    assert "ticked" in reason
    state.tick()
    assert state.live()[0]


def test_liveness_does_not_depend_on_readiness(state: HealthState, gate: SystemicPause) -> None:
    gate.pause(Task(), "AccessDeniedException", "no permission")
    for _ in range(RECEIVE_FAILURES_UNREADY):
        state.receive_failed("EndpointConnectionError")
    state.tick()
    assert state.live()[0]


# -- the HTTP server -------------------------------------------------------------------------


@pytest.fixture
async def base_url(state: HealthState) -> AsyncIterator[str]:
    runner = await start_server(state, "127.0.0.1", 0)
    try:
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def get(url: str) -> tuple[int, str, bytes]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, response.headers["Content-Type"], await response.read()


async def get_json(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.json()


async def test_healthz_is_200_while_live(base_url: str) -> None:
    status, body = await get_json(f"{base_url}/healthz")
    assert status == 200
    assert body["status"] == "ok"


async def test_healthz_is_503_when_stale(base_url: str, state: HealthState) -> None:
    state.last_tick = time.monotonic() - STALE_S - 5
    status, body = await get_json(f"{base_url}/healthz")
    assert status == 503
    assert body["status"] == "fail"
    assert body["reason"]


async def test_readyz_is_200_when_ready(base_url: str) -> None:
    status, body = await get_json(f"{base_url}/readyz")
    assert status == 200
    assert body["status"] == "ok"


async def test_readyz_is_503_with_the_reason_while_paused(
    base_url: str, gate: SystemicPause
) -> None:
    gate.pause(Task(), "ExpiredTokenException", "token expired")
    status, body = await get_json(f"{base_url}/readyz")
    assert status == 503
    assert body["status"] == "fail"
    assert "ExpiredTokenException" in body["reason"]


async def test_readyz_is_503_while_starting(base_url: str, state: HealthState) -> None:
    state.started = False
    status, _body = await get_json(f"{base_url}/readyz")
    assert status == 503


async def test_metrics_are_served_in_the_prometheus_text_format(base_url: str) -> None:
    status, content_type, body = await get(f"{base_url}/metrics")
    assert status == 200
    assert content_type == prometheus_client.CONTENT_TYPE_LATEST
    assert f"{metrics.NAMESPACE}_paused".encode() in body
    assert f"{metrics.NAMESPACE}_messages_held".encode() in body


async def test_an_unknown_path_is_404(base_url: str) -> None:
    status, _content_type, _body = await get(f"{base_url}/nope")
    assert status == 404
