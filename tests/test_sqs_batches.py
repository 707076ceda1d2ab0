"""SqsBatcher: single entries gathered into SQS batch calls, each caller told its own result.

The SQS call is a plain async function standing in for DeleteMessageBatch: it records what it
was sent and answers the way SQS does (``Successful`` / ``Failed`` per entry).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import botocore.exceptions
import pytest

from worker import backoff, sqs_batches
from worker.errors import BatchEntryFailed
from worker.sqs_batches import BATCH_CALL_ATTEMPTS, SQS_BATCH_LIMIT, SqsBatcher

DEADLOCK_GUARD_S = 10.0
# Long enough that only a full batch or close() can flush: batches become deterministic.
NO_LINGER_FLUSH_S = 3_600.0

Entry = dict[str, Any]


class FakeSqs:
    """A batch call that records each batch and refuses the entries `refuse` picks."""

    def __init__(self, refuse: Callable[[Entry], dict[str, Any] | None] | None = None) -> None:
        self.calls: list[list[Entry]] = []
        self.refuse = refuse
        self.raise_times = 0
        self.error: Exception | None = None

    async def __call__(self, entries: list[Entry]) -> dict[str, Any]:
        self.calls.append([dict(e) for e in entries])
        await anyio.lowlevel.checkpoint()
        if self.raise_times and self.error is not None:
            self.raise_times -= 1
            raise self.error
        failed = []
        for entry in entries:
            refusal = self.refuse(entry) if self.refuse else None
            if refusal is not None:
                failed.append({"Id": entry["Id"], **refusal})
        refused = {f["Id"] for f in failed}
        return {
            "Successful": [{"Id": e["Id"]} for e in entries if e["Id"] not in refused],
            "Failed": failed,
        }

    @property
    def handles(self) -> list[str]:
        return [e["ReceiptHandle"] for call in self.calls for e in call]


def internal_error() -> botocore.exceptions.ClientError:
    response: Any = {
        "Error": {"Code": "InternalError", "Message": "We encountered an internal error."},
        "ResponseMetadata": {"HTTPStatusCode": 500},
    }
    return botocore.exceptions.ClientError(response, "DeleteMessageBatch")


@pytest.fixture
def no_linger_flush(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqs_batches, "DEFAULT_LINGER_S", NO_LINGER_FLUSH_S)


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backoff, "full_jitter", lambda *_args, **_kwargs: 0.0)


async def submit_all(batcher: SqsBatcher, handles: list[str]) -> dict[str, BaseException | None]:
    """Submit one entry per handle concurrently; return each one's result (None: accepted)."""
    results: dict[str, BaseException | None] = {}

    async def one(handle: str) -> None:
        try:
            await batcher.submit({"ReceiptHandle": handle})
        except BatchEntryFailed as exc:
            results[handle] = exc
        else:
            results[handle] = None

    async with anyio.create_task_group() as tg:
        for handle in handles:
            tg.start_soon(one, handle)
    return results


async def run_batcher(
    sqs: FakeSqs, handles: list[str], *, close_when_queued: bool = False
) -> dict[str, BaseException | None]:
    """Run a SqsBatcher, submit `handles` together, then close it; return per-entry results."""
    batcher = SqsBatcher("delete", sqs)
    results: dict[str, BaseException | None] = {}

    async def submit_then_close() -> None:
        results.update(await submit_all(batcher, handles))
        batcher.close()

    async def close_once_queued() -> None:
        await anyio.wait_all_tasks_blocked()
        batcher.close()

    with anyio.fail_after(DEADLOCK_GUARD_S):
        async with anyio.create_task_group() as tg:
            await tg.start(batcher.run)
            if close_when_queued:
                tg.start_soon(close_once_queued)
                results.update(await submit_all(batcher, handles))
            else:
                tg.start_soon(submit_then_close)
    assert batcher.finished.is_set()
    return results


def handles(count: int) -> list[str]:
    return [f"rh-{n}" for n in range(count)]


async def test_no_call_carries_more_than_the_sqs_batch_limit_and_each_entry_goes_once() -> None:
    sqs = FakeSqs()
    sent = handles(3 * SQS_BATCH_LIMIT + 7)
    results = await run_batcher(sqs, sent)
    assert all(len(call) <= SQS_BATCH_LIMIT for call in sqs.calls)
    assert sorted(sqs.handles) == sorted(sent)
    assert results == dict.fromkeys(sent)


async def test_entry_ids_are_unique_within_a_call() -> None:
    sqs = FakeSqs()
    await run_batcher(sqs, handles(2 * SQS_BATCH_LIMIT))
    for call in sqs.calls:
        ids = [e["Id"] for e in call]
        assert len(set(ids)) == len(ids)


@pytest.mark.usefixtures("no_linger_flush")
async def test_entries_submitted_together_share_calls() -> None:
    sqs = FakeSqs()
    sent = handles(2 * SQS_BATCH_LIMIT + 5)
    await run_batcher(sqs, sent, close_when_queued=True)
    assert [len(call) for call in sqs.calls] == [SQS_BATCH_LIMIT, SQS_BATCH_LIMIT, 5]


async def test_an_idle_batcher_flushes_a_lone_entry_without_waiting_for_company() -> None:
    sqs = FakeSqs()
    batcher = SqsBatcher("delete", sqs)
    with anyio.fail_after(DEADLOCK_GUARD_S):
        async with anyio.create_task_group() as tg:
            await tg.start(batcher.run)
            await batcher.submit({"ReceiptHandle": "rh-alone"})
            assert sqs.handles == ["rh-alone"]
            batcher.close()


async def test_a_refused_entry_fails_only_its_own_caller() -> None:
    def refuse(entry: Entry) -> dict[str, Any] | None:
        if entry["ReceiptHandle"] == "rh-3":
            return {"Code": "ReceiptHandleIsInvalid", "Message": "gone", "SenderFault": True}
        return None

    sqs = FakeSqs(refuse)
    results = await run_batcher(sqs, handles(SQS_BATCH_LIMIT))
    refused = results.pop("rh-3")
    assert isinstance(refused, BatchEntryFailed)
    assert refused.code == "ReceiptHandleIsInvalid"
    assert refused.message == "gone"
    assert refused.sender_fault
    assert all(result is None for result in results.values())


async def test_a_server_side_entry_failure_is_not_the_senders_fault() -> None:
    sqs = FakeSqs(lambda _entry: {"Code": "InternalError", "SenderFault": False})
    results = await run_batcher(sqs, ["rh-1"])
    refused = results["rh-1"]
    assert isinstance(refused, BatchEntryFailed)
    assert not refused.sender_fault


@pytest.mark.usefixtures("no_backoff")
async def test_a_failed_call_is_retried_and_its_entries_then_succeed() -> None:
    sqs = FakeSqs()
    sqs.error, sqs.raise_times = internal_error(), BATCH_CALL_ATTEMPTS - 1
    sent = handles(3)
    results = await run_batcher(sqs, sent, close_when_queued=True)
    assert len(sqs.calls) == BATCH_CALL_ATTEMPTS
    assert all(sorted(e["ReceiptHandle"] for e in call) == sent for call in sqs.calls)
    assert results == dict.fromkeys(sent)


@pytest.mark.usefixtures("no_backoff")
async def test_a_call_that_keeps_failing_fails_every_entry_of_the_batch() -> None:
    sqs = FakeSqs()
    sqs.error, sqs.raise_times = internal_error(), BATCH_CALL_ATTEMPTS * 10
    sent = handles(4)
    results = await run_batcher(sqs, sent, close_when_queued=True)
    assert len(sqs.calls) == BATCH_CALL_ATTEMPTS
    assert set(results) == set(sent)
    for result in results.values():
        assert isinstance(result, BatchEntryFailed)
        assert result.code == "InternalError"
        assert not result.sender_fault


@pytest.mark.usefixtures("no_linger_flush")
async def test_close_flushes_what_is_held_and_run_returns() -> None:
    sqs = FakeSqs()
    sent = handles(3)
    results = await run_batcher(sqs, sent, close_when_queued=True)
    assert sorted(sqs.handles) == sent
    assert results == dict.fromkeys(sent)


async def test_closing_an_empty_batcher_returns_without_a_call() -> None:
    sqs = FakeSqs()
    batcher = SqsBatcher("delete", sqs)
    with anyio.fail_after(DEADLOCK_GUARD_S):
        async with anyio.create_task_group() as tg:
            await tg.start(batcher.run)
            batcher.close()
    assert batcher.finished.is_set()
    assert sqs.calls == []


async def test_a_shutdown_during_a_flush_does_not_cut_the_call_short() -> None:
    entered = anyio.Event()
    release = anyio.Event()
    completed: list[list[Entry]] = []

    async def slow_sqs(entries: list[Entry]) -> dict[str, Any]:
        entered.set()
        await release.wait()
        completed.append(entries)
        return {"Successful": [{"Id": e["Id"]} for e in entries], "Failed": []}

    batcher = SqsBatcher("delete", slow_sqs)

    async def submit() -> None:
        await batcher.submit({"ReceiptHandle": "rh-1"})

    async def release_once_all_wait() -> None:
        await anyio.wait_all_tasks_blocked()
        release.set()

    with anyio.fail_after(DEADLOCK_GUARD_S):
        async with anyio.create_task_group() as outside:
            with anyio.CancelScope() as shutdown:
                async with anyio.create_task_group() as tg:
                    await tg.start(batcher.run)
                    tg.start_soon(submit)
                    await entered.wait()
                    # The call is in flight; the service shuts down; the call is let finish.
                    outside.start_soon(release_once_all_wait)
                    shutdown.cancel()
    batcher.close()
    assert shutdown.cancelled_caught
    assert [e["ReceiptHandle"] for call in completed for e in call] == ["rh-1"]
    assert batcher.finished.is_set()
