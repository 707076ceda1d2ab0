"""Readback: was a newer verdict applied to this event since this one was first sent?

Within one process, newest-wins is kept in memory (worker.ordering). A copy the worker sent
itself comes back later, possibly to another process: a verdict requeued at its last
receive, or one an operator redrove from the DLQ after newer verdicts for its event were
applied. No process can know what an earlier one applied, so before applying such a copy the
worker asks Cognito: ``AdminListUserAuthEvents`` lists the user's events, newest first, each
with ``EventFeedback.FeedbackDate`` once feedback was given. If feedback was given after the
copy's verdict was first sent, the copy is superseded and skipped.

Feedback this process gave itself is told apart: when the feedback Cognito shows is an older
verdict this process applied (a requeue let it go first), the copy is applied after all.

The trade-off: one read call (or a few, paging) per such copy, on the read quota, not the
write quota. And an older verdict that another process applied late is taken for newer: a
copy is skipped whenever feedback it cannot place is dated after it was sent (harmless when
that feedback has the copy's value anyway).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

import anyio
import structlog

from worker.clients import Clients
from worker.contract import Verdict
from worker.outcome import Outcome, classify_exception

log = structlog.get_logger()

# AdminListUserAuthEvents returns at most this many events a page.
PAGE_SIZE = 60
# Events further back than this many pages are not looked for: the copy is applied.
MAX_PAGES = 5
# Reads per second per region: a small share of the read quota (UserRead, 120/s).
READ_RATE = 20.0


@dataclass(frozen=True, slots=True)
class Readback:
    """What Cognito says of the event: when feedback was last given, if ever."""

    found: bool
    feedback_date: datetime | None = None
    feedback_value: str | None = None
    error: Outcome | None = None

    def supersedes(self, sent_at_ms: int) -> bool:
        """Whether feedback was given after a verdict sent at `sent_at_ms`."""
        if self.feedback_date is None:
            return False
        return self.feedback_date.timestamp() * 1000 > sent_at_ms


class FeedbackReader:
    """Reads an event's feedback back from Cognito, paced per region."""

    def __init__(self, clients: Clients) -> None:
        self._clients = clients
        self._next_read: dict[str, float] = {}
        self._locks: dict[str, anyio.Lock] = {}

    async def read(self, verdict: Verdict) -> Readback:
        """The event's feedback date; a failed read is reported, never raised."""
        try:
            client = await self._clients.cognito(verdict.region)
            token: str | None = None
            for _ in range(MAX_PAGES):
                await self._pace(verdict.region)
                page = await client.admin_list_user_auth_events(
                    UserPoolId=verdict.user_pool_id,
                    Username=verdict.username,
                    MaxResults=PAGE_SIZE,
                    **({"NextToken": token} if token else {}),
                )
                for event in page.get("AuthEvents", []):
                    if event.get("EventId") == verdict.event_id:
                        feedback = event.get("EventFeedback")
                        if not feedback:
                            return Readback(True)
                        return Readback(
                            True, feedback.get("FeedbackDate"), feedback.get("FeedbackValue")
                        )
                token = page.get("NextToken")
                if not token:
                    break
        except Exception as exc:
            return Readback(False, error=classify_exception(exc))
        return Readback(False)

    async def _pace(self, region: str) -> None:
        lock = self._locks.setdefault(region, anyio.Lock())
        async with lock:
            now = time.monotonic()
            start = max(self._next_read.get(region, now), now)
            if start > now:
                await anyio.sleep(start - now)
            self._next_read[region] = start + 1.0 / READ_RATE
