"""Leases: the messages this process holds, and the heartbeat that keeps them hidden.

The heartbeat's sleep is replaced by a tick the test gives, so each test runs exact rounds; the
SQS call behind the SqsBatcher is a plain async function standing in for
ChangeMessageVisibilityBatch.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from worker import metrics
from worker.leases import CAP_MARGIN_S, EXTEND_WHEN_REMAINING, MAX_HIDDEN_S, Lease, Leases
from worker.message import Message
from worker.sqs_batches import SqsBatcher

VISIBILITY_S = 30.0
DEADLOCK_GUARD_S = 10.0
# Held long enough that less than the extension threshold of the timeout remains.
NEARLY_DUE_S = VISIBILITY_S * (1 - EXTEND_WHEN_REMAINING / 2)

Entry = dict[str, Any]


def message(
    message_id: str = "m-1",
    handle: str = "rh-1",
    *,
    held_for_s: float = 0.0,
    first_received_s_ago: float = 0.0,
) -> Message:
    now_ms = int(time.time() * 1000)
    return Message(
        message_id=message_id,
        receipt_handle=handle,
        body="{}",
        receive_count=1,
        sent_at_ms=now_ms,
        first_received_at_ms=now_ms - int(first_received_s_ago * 1000),
        received_at=time.monotonic() - held_for_s,
    )


class FakeVisibilityCalls:
    """ChangeMessageVisibilityBatch: records each batch and refuses what `refuse` picks."""

    def __init__(self, refuse: Callable[[Entry], Entry | None] | None = None) -> None:
        self.calls: list[list[Entry]] = []
        self.refuse = refuse

    async def __call__(self, entries: list[Entry]) -> dict[str, Any]:
        self.calls.append([dict(e) for e in entries])
        await anyio.lowlevel.checkpoint()
        failed = []
        for entry in entries:
            refusal = self.refuse(entry) if self.refuse else None
            if refusal is not None:
                failed.append({"Id": entry["Id"], **refusal})
        return {"Successful": [], "Failed": failed}

    @property
    def entries(self) -> list[Entry]:
        return [e for call in self.calls for e in call]


class Ticks:
    """Stands in for anyio.sleep in the heartbeat: each sleep lasts until the test's next beat."""

    def __init__(self) -> None:
        self._send, self._receive = anyio.create_memory_object_stream[None]()
        self.asleep = anyio.Event()

    async def __call__(self, _seconds: float) -> None:
        self.asleep.set()
        await self._receive.receive()

    async def beat(self) -> None:
        """Let the heartbeat run one round, and wait until it sleeps again."""
        self.asleep = anyio.Event()
        await self._send.send(None)
        await self.asleep.wait()

    def close(self) -> None:
        self._send.close()
        self._receive.close()


@pytest.fixture
def ticks(monkeypatch: pytest.MonkeyPatch) -> Iterator[Ticks]:
    fake = Ticks()
    monkeypatch.setattr(anyio, "sleep", fake)
    yield fake
    fake.close()


@asynccontextmanager
async def heartbeat(leases: Leases, sqs: FakeVisibilityCalls, ticks: Ticks) -> AsyncIterator[None]:
    batcher = SqsBatcher("change_visibility", sqs)
    with anyio.fail_after(DEADLOCK_GUARD_S):
        async with anyio.create_task_group() as tg:
            await tg.start(batcher.run)
            tg.start_soon(leases.heartbeat, batcher)
            await ticks.asleep.wait()
            yield
            tg.cancel_scope.cancel()
    batcher.close()


def lease_of(leases: Leases, message_id: str = "m-1") -> Lease:
    lease = leases.get(message_id)
    assert lease is not None
    return lease


# -- holding ---------------------------------------------------------------------------------


def test_a_new_message_is_held() -> None:
    leases = Leases(VISIBILITY_S)
    held = message()
    assert leases.add(held)
    assert len(leases) == 1
    lease = lease_of(leases, held.message_id)
    assert lease.message is held
    assert not lease.lost


def test_a_duplicate_delivery_is_reported_and_refreshes_the_receipt_handle() -> None:
    leases = Leases(VISIBILITY_S)
    first = message(handle="rh-old", held_for_s=NEARLY_DUE_S)
    leases.add(first)
    lease = lease_of(leases, first.message_id)
    lease.lost = True
    before = lease.visible_until
    duplicate = message(handle="rh-new")
    assert not leases.add(duplicate)
    assert len(leases) == 1
    assert leases.receipt_handle(first) == "rh-new"
    assert lease.visible_until > before
    assert not lease.lost


def test_removing_a_message_releases_it_and_wakes_waiters() -> None:
    leases = Leases(VISIBILITY_S)
    held = message()
    leases.add(held)
    changed = leases.changed
    leases.remove(held.message_id)
    assert len(leases) == 0
    assert leases.get(held.message_id) is None
    assert changed.is_set()
    assert not leases.changed.is_set()


def test_removing_an_unknown_message_is_harmless() -> None:
    leases = Leases(VISIBILITY_S)
    leases.add(message("m-1"))
    leases.remove("m-unknown")
    assert len(leases) == 1


def test_a_message_not_held_keeps_its_own_receipt_handle() -> None:
    assert Leases(VISIBILITY_S).receipt_handle(message(handle="rh-own")) == "rh-own"


def test_leases_can_be_removed_while_iterating() -> None:
    leases = Leases(VISIBILITY_S)
    for n in range(5):
        leases.add(message(f"m-{n}", f"rh-{n}"))
    for lease in leases:
        leases.remove(lease.message.message_id)
    assert len(leases) == 0


def test_the_held_gauge_counts_held_messages() -> None:
    leases = Leases(VISIBILITY_S)
    for n in range(3):
        leases.add(message(f"m-{n}", f"rh-{n}"))
    assert prometheus_value(f"{metrics.NAMESPACE}_messages_held") == 3
    leases.remove("m-0")
    assert prometheus_value(f"{metrics.NAMESPACE}_messages_held") == 2


def prometheus_value(name: str) -> float | None:
    return REGISTRY.get_sample_value(name)


# -- heartbeat -------------------------------------------------------------------------------


async def test_the_heartbeat_extends_only_the_messages_nearing_expiry(ticks: Ticks) -> None:
    leases = Leases(VISIBILITY_S)
    due, fresh = message("m-due", "rh-due", held_for_s=NEARLY_DUE_S), message("m-new", "rh-new")
    leases.add(due)
    leases.add(fresh)
    fresh_until = lease_of(leases, "m-new").visible_until
    sqs = FakeVisibilityCalls()
    async with heartbeat(leases, sqs, ticks):
        await ticks.beat()
        assert [(e["ReceiptHandle"], e["VisibilityTimeout"]) for e in sqs.entries] == [
            ("rh-due", int(VISIBILITY_S))
        ]
        lease = lease_of(leases, "m-due")
        assert not lease.lost
        # No longer due: the next round leaves it alone.
        assert lease.visible_until - time.monotonic() > VISIBILITY_S * EXTEND_WHEN_REMAINING
        assert lease_of(leases, "m-new").visible_until == fresh_until
        await ticks.beat()
        assert len(sqs.calls) == 1


async def test_the_heartbeat_uses_the_latest_receipt_handle(ticks: Ticks) -> None:
    leases = Leases(VISIBILITY_S)
    leases.add(message(handle="rh-first", held_for_s=NEARLY_DUE_S))
    leases.add(message(handle="rh-redelivered", held_for_s=NEARLY_DUE_S))
    sqs = FakeVisibilityCalls()
    async with heartbeat(leases, sqs, ticks):
        await ticks.beat()
    assert [e["ReceiptHandle"] for e in sqs.entries] == ["rh-redelivered"]


async def test_an_extension_refused_for_the_receipt_handle_marks_the_lease_lost(
    ticks: Ticks,
) -> None:
    leases = Leases(VISIBILITY_S)
    leases.add(message(held_for_s=NEARLY_DUE_S))
    sqs = FakeVisibilityCalls(
        lambda _e: {"Code": "ReceiptHandleIsInvalid", "Message": "gone", "SenderFault": True}
    )
    with capture_logs() as logs:
        async with heartbeat(leases, sqs, ticks):
            await ticks.beat()
            assert lease_of(leases).lost
            await ticks.beat()
    assert len(sqs.calls) == 1  # a lost lease is not extended again
    assert any(e["event"] == "visibility.extend_failed" for e in logs)


async def test_an_extension_failing_on_the_server_side_is_tried_again(ticks: Ticks) -> None:
    leases = Leases(VISIBILITY_S)
    leases.add(message(held_for_s=NEARLY_DUE_S))
    sqs = FakeVisibilityCalls(lambda _e: {"Code": "InternalError", "SenderFault": False})
    async with heartbeat(leases, sqs, ticks):
        await ticks.beat()
        assert not lease_of(leases).lost
        await ticks.beat()
    assert len(sqs.calls) == 2


async def test_a_message_hidden_for_12_hours_since_this_receive_is_given_up_without_a_call(
    ticks: Ticks,
) -> None:
    leases = Leases(VISIBILITY_S)
    leases.add(message(held_for_s=MAX_HIDDEN_S))
    sqs = FakeVisibilityCalls()
    with capture_logs() as logs:
        async with heartbeat(leases, sqs, ticks):
            await ticks.beat()
    assert lease_of(leases).lost
    assert sqs.calls == []
    assert any(e["event"] == "visibility.cap_reached" for e in logs)


async def test_an_extension_near_the_cap_stops_short_of_12_hours(ticks: Ticks) -> None:
    long_visibility_s = 600.0
    left_s = CAP_MARGIN_S + 40.0
    leases = Leases(long_visibility_s)
    hidden_s = MAX_HIDDEN_S - left_s
    leases.add(message(held_for_s=hidden_s))
    sqs = FakeVisibilityCalls()
    async with heartbeat(leases, sqs, ticks):
        await ticks.beat()
    [entry] = sqs.entries
    assert 0 < entry["VisibilityTimeout"] <= left_s
    assert not lease_of(leases).lost


async def test_the_12_hour_cap_counts_from_this_receive_not_the_first(ticks: Ticks) -> None:
    # Given a message first received a day ago, and received again just now
    leases = Leases(VISIBILITY_S)
    leases.add(message(held_for_s=NEARLY_DUE_S, first_received_s_ago=2 * MAX_HIDDEN_S))
    sqs = FakeVisibilityCalls()
    async with heartbeat(leases, sqs, ticks):
        await ticks.beat()
    # Then it is extended by a full visibility timeout
    [entry] = sqs.entries
    assert entry["VisibilityTimeout"] == VISIBILITY_S
    assert not lease_of(leases).lost


async def test_less_than_a_second_left_under_the_cap_is_given_up_never_sent_as_zero(
    ticks: Ticks,
) -> None:
    # Given 0.7 s left before the 12 hours of this receive (with the margin) are up
    leases = Leases(VISIBILITY_S)
    leases.add(message(held_for_s=MAX_HIDDEN_S - CAP_MARGIN_S - 0.7))
    sqs = FakeVisibilityCalls()
    async with heartbeat(leases, sqs, ticks):
        await ticks.beat()
    # Then no VisibilityTimeout of 0 (a release) is sent for a message still held
    assert all(entry["VisibilityTimeout"] >= 1 for entry in sqs.entries)
    assert sqs.entries == []
    assert lease_of(leases).lost


async def test_a_duplicate_delivery_restarts_the_12_hours_with_its_own_receive(
    ticks: Ticks,
) -> None:
    leases = Leases(VISIBILITY_S)
    leases.add(message(held_for_s=MAX_HIDDEN_S))
    assert not leases.add(message(handle="rh-2", held_for_s=NEARLY_DUE_S))
    sqs = FakeVisibilityCalls()
    async with heartbeat(leases, sqs, ticks):
        await ticks.beat()
    [entry] = sqs.entries
    assert entry["ReceiptHandle"] == "rh-2"
    assert not lease_of(leases).lost
