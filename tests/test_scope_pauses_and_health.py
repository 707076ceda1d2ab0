"""Scope pauses (pause a pool, a region or the whole worker from evidence; probe; resume) and
the health probes built on them, over real HTTP."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import anyio
import prometheus_client
import pytest
from structlog.testing import capture_logs

from tests.support.virtual_time import FakeClock
from worker import backoff, metrics
from worker.health import RECEIVE_FAILURES_UNREADY, HealthState, start_server
from worker.outcome import Scope
from worker.scope_pauses import PARK_MARGIN_S, WORKER, ScopeKey, ScopePauses

STALE_S = 30.0
DEADLOCK_GUARD_S = 10.0
REGION, OTHER_REGION = "eu-west-1", "us-east-1"
POOL, OTHER_POOL = "eu-west-1_Denied", "eu-west-1_Allowed"
# What AWS says of a denied call: it names the role ARN and the account.
DENIED_TEXT = (
    "User: arn:aws:sts::123456789012:assumed-role/worker/i-1 is not authorized to perform: "
    "cognito-idp:AdminUpdateAuthEventFeedback on resource: "
    "arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_Denied"
)


class Task:
    """Stands for one handler task: pauses only compare owners by identity."""


def pool(pool_id: str) -> ScopeKey:
    return ScopeKey(Scope.POOL, pool_id)


@pytest.fixture
def pauses(clock: FakeClock) -> ScopePauses:
    return ScopePauses(clock=clock)


@pytest.fixture
def state(pauses: ScopePauses) -> HealthState:
    return HealthState(liveness_stale_s=STALE_S, pauses=pauses, started=True)


# -- ScopePauses ----------------------------------------------------------------------------


def test_with_nothing_paused_everyone_may_call(pauses: ScopePauses) -> None:
    assert pauses.may_call(Task(), REGION, POOL)
    assert pauses.may_call(Task(), REGION, POOL)
    assert pauses.blocking(REGION, POOL) is None
    assert pauses.worker_paused is None


def test_a_denied_pool_pauses_that_pool_only_and_its_first_task_probes(
    pauses: ScopePauses,
) -> None:
    probe, same_pool, other_pool = Task(), Task(), Task()
    pauses.failed(probe, pool(POOL), "AccessDeniedException", DENIED_TEXT)
    assert pauses.may_call(probe, REGION, POOL)
    assert not pauses.may_call(same_pool, REGION, POOL)
    assert pauses.may_call(other_pool, REGION, OTHER_POOL)
    assert pauses.blocking(REGION, OTHER_POOL) is None
    assert pauses.worker_paused is None


def test_a_pause_is_logged_once_per_scope_with_what_to_check(pauses: ScopePauses) -> None:
    with capture_logs() as logs:
        for _ in range(3):
            pauses.failed(Task(), pool(POOL), "AccessDeniedException", DENIED_TEXT)
    paused = [entry for entry in logs if entry["event"] == "scope.paused"]
    assert len(paused) == 1
    assert (paused[0]["scope"], paused[0]["name"]) == ("pool", POOL)
    assert "IAM policy" in paused[0]["note"]


def test_a_second_pool_denied_with_no_answer_since_the_first_pauses_the_whole_worker(
    pauses: ScopePauses,
) -> None:
    pauses.failed(Task(), pool(POOL), "AccessDeniedException", DENIED_TEXT)
    with capture_logs() as logs:
        pauses.failed(Task(), pool(OTHER_POOL), "AccessDeniedException", DENIED_TEXT)
    worker = pauses.worker_paused
    assert worker is not None
    assert set(worker.widened_from) == {pool(POOL), pool(OTHER_POOL)}
    assert [e["scope"] for e in logs if e["event"] == "scope.paused"] == ["worker"]
    # Every pool waits now, a third one too: only the worker's probe may call.
    assert pauses.blocking(OTHER_REGION, "us-east-1_Third") is worker


def test_a_second_pool_denied_after_another_answered_pauses_that_pool_only(
    pauses: ScopePauses, clock: FakeClock
) -> None:
    pauses.failed(Task(), pool(POOL), "AccessDeniedException", DENIED_TEXT)
    clock.advance(1.0)
    pauses.answered(OTHER_REGION, "us-east-1_Healthy")
    clock.advance(1.0)
    pauses.failed(Task(), pool(OTHER_POOL), "AccessDeniedException", DENIED_TEXT)
    assert pauses.worker_paused is None
    assert {p.key for p in pauses.paused()} == {pool(POOL), pool(OTHER_POOL)}


def test_a_refused_signature_pauses_its_region_and_spares_the_others(
    pauses: ScopePauses,
) -> None:
    pauses.failed(Task(), ScopeKey(Scope.REGION, REGION), "InvalidSignatureException", "scope")
    assert pauses.blocking(REGION, OTHER_POOL) is not None
    assert pauses.blocking(OTHER_REGION, "us-east-1_Any") is None


def test_refused_credentials_pause_the_whole_worker_at_once(pauses: ScopePauses) -> None:
    pauses.failed(Task(), WORKER, "ExpiredTokenException", "expired")
    assert pauses.worker_paused is not None
    assert pauses.blocking(OTHER_REGION, "us-east-1_Any") is not None


def test_an_answer_through_a_paused_scope_resumes_it_and_only_it(pauses: ScopePauses) -> None:
    pauses.failed(Task(), pool(POOL), "AccessDeniedException", DENIED_TEXT)
    pauses.answered(OTHER_REGION, "us-east-1_Healthy")
    pauses.failed(Task(), pool("us-east-1_Other"), "NotAuthorizedException", "no")
    with capture_logs() as logs:
        pauses.answered(REGION, POOL)
    assert pauses.blocking(REGION, POOL) is None
    assert pauses.blocking("us-east-1", "us-east-1_Other") is not None
    assert [e["event"] for e in logs] == ["scope.resumed"]


def test_a_probe_that_leaves_frees_the_role_for_the_next_task(pauses: ScopePauses) -> None:
    probe, next_task = Task(), Task()
    pauses.failed(probe, pool(POOL), "AccessDeniedException", DENIED_TEXT)
    assert not pauses.may_call(next_task, REGION, POOL)
    pauses.leave(probe)
    assert pauses.may_call(next_task, REGION, POOL)
    assert not pauses.may_call(probe, REGION, POOL)


def test_only_the_probe_waits_out_a_backoff_the_others_are_parked_past_it(
    pauses: ScopePauses, clock: FakeClock
) -> None:
    probe = Task()
    first = pauses.failed(probe, pool(POOL), "AccessDeniedException", DENIED_TEXT)
    assert 0 <= first <= backoff.PROBE_BASE_S
    assert pauses.failed(Task(), pool(POOL), "AccessDeniedException", DENIED_TEXT) == 0.0
    assert pauses.park_for_s(REGION, POOL) == pytest.approx(first + PARK_MARGIN_S)
    for _ in range(20):
        delay = pauses.failed(probe, pool(POOL), "AccessDeniedException", DENIED_TEXT)
        assert delay <= backoff.PROBE_CAP_S
    assert pauses.park_for_s(REGION, OTHER_POOL) == 0.0


def test_the_gauges_count_paused_scopes_by_kind(pauses: ScopePauses) -> None:
    pauses.failed(Task(), pool(POOL), "AccessDeniedException", DENIED_TEXT)
    assert gauge_value("feedback_worker_paused_scopes", scope="pool") == 1
    assert gauge_value("feedback_worker_paused") == 0
    pauses.failed(Task(), WORKER, "ExpiredTokenException", "expired")
    assert gauge_value("feedback_worker_paused") == 1
    pauses.answered(REGION, POOL)
    assert gauge_value("feedback_worker_paused_scopes", scope="pool") == 0
    assert gauge_value("feedback_worker_paused") == 0


def gauge_value(name: str, **labels: str) -> float | None:
    return prometheus_client.REGISTRY.get_sample_value(name, labels)


async def changes_seen(pauses: ScopePauses, *steps: Callable[[], object]) -> int:
    """Run `steps` (callables) one by one; count how many woke a task waiting on changed()."""
    seen = 0
    for step in steps:
        woke = anyio.Event()

        async def watch(woke: anyio.Event = woke) -> None:
            await pauses.changed()
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


async def test_waiters_on_changed_wake_on_pause_leave_and_resume(pauses: ScopePauses) -> None:
    probe = Task()
    seen = await changes_seen(
        pauses,
        lambda: pauses.failed(probe, WORKER, "ExpiredTokenException", "expired"),
        lambda: pauses.leave(probe),
        lambda: pauses.answered(REGION, POOL),
    )
    assert seen == 3


async def test_no_wake_up_for_a_step_that_changes_nothing(pauses: ScopePauses) -> None:
    pauses.failed(Task(), WORKER, "ExpiredTokenException", "expired")
    seen = await changes_seen(pauses, lambda: pauses.leave(Task()))
    assert seen == 0


# -- HealthState -----------------------------------------------------------------------------


def test_not_ready_while_starting(pauses: ScopePauses) -> None:
    ready, reason = HealthState(liveness_stale_s=STALE_S, pauses=pauses).ready()
    assert not ready
    assert reason == "starting"


def test_ready_once_started(state: HealthState) -> None:
    assert state.ready() == (True, "ok")


def test_not_ready_when_every_region_it_calls_is_down(pauses: ScopePauses) -> None:
    state = HealthState(
        liveness_stale_s=STALE_S,
        pauses=pauses,
        started=True,
        regions_down=lambda: ["eu-west-1: 503"],
        regions_known=lambda: 1,
    )
    ready, reason = state.ready()
    assert not ready
    assert "eu-west-1" in reason


def test_not_ready_while_the_worker_is_paused_and_says_why_without_an_arn(
    state: HealthState, pauses: ScopePauses
) -> None:
    pauses.failed(Task(), WORKER, "AccessDeniedException", DENIED_TEXT)
    ready, reason = state.ready()
    assert not ready
    assert "AccessDeniedException" in reason
    assert "arn:" not in reason
    assert "123456789012" not in reason


def test_a_paused_pool_or_a_region_down_leaves_the_worker_ready_and_is_listed(
    pauses: ScopePauses,
) -> None:
    state = HealthState(
        liveness_stale_s=STALE_S,
        pauses=pauses,
        started=True,
        regions_down=lambda: ["ap-southeast-2: InternalErrorException"],
        regions_known=lambda: 2,
    )
    pauses.failed(Task(), pool(POOL), "AccessDeniedException", DENIED_TEXT)
    assert state.ready() == (True, "ok")
    scopes = state.scopes()
    assert [(p["scope"], p["name"], p["code"]) for p in scopes["paused"]] == [
        ("pool", POOL, "AccessDeniedException")
    ]
    assert scopes["regions_down"] == ["ap-southeast-2: InternalErrorException"]
    assert "123456789012" not in repr(scopes)


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


def test_liveness_does_not_depend_on_readiness(state: HealthState, pauses: ScopePauses) -> None:
    pauses.failed(Task(), WORKER, "ExpiredTokenException", "expired")
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


async def test_readyz_is_503_with_the_reason_while_the_worker_is_paused(
    base_url: str, pauses: ScopePauses
) -> None:
    pauses.failed(Task(), WORKER, "ExpiredTokenException", "token expired")
    status, body = await get_json(f"{base_url}/readyz")
    assert status == 503
    assert body["status"] == "fail"
    assert "ExpiredTokenException" in body["reason"]


async def test_readyz_lists_a_paused_pool_and_stays_200(base_url: str, pauses: ScopePauses) -> None:
    pauses.failed(Task(), pool(POOL), "AccessDeniedException", DENIED_TEXT)
    status, body = await get_json(f"{base_url}/readyz")
    assert status == 200
    assert body["paused"][0]["name"] == POOL
    assert "123456789012" not in repr(body)


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
