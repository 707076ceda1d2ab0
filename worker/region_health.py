"""Telling a Cognito outage in one region from a message's own transient failure.

A 5xx or a connection error may be the message's bad luck or the whole region being down.
Only the first should count toward `--max-attempts`: an outage is not the message's fault, so
it must never dead-letter anything. The worker cannot ask, but it can watch: when calls to a
region keep failing, several in a row with no success between and from several distinct
messages, the region is down. One message failing alone is that message's problem, however
often it fails. Throttles mixed in neither end nor hide an outage: only a real answer (a
success, or an error about the request itself) shows the endpoint works. While the region is
down, failures do not count, its messages are held or parked and retried with backoff, and
readiness reports it; the other regions go on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable

import structlog

from worker import metrics
from worker.outcome import Kind, Outcome

log = structlog.get_logger()

# Transient failures in a row, with no success between, that mean the region is down: high
# enough that a storm of 50% errors rarely trips it, low enough that a real outage costs each
# message at most a few counted attempts...
DOWN_AFTER_FAILURES = 5
# ...coming from at least this many distinct messages.
DOWN_AFTER_MESSAGES = 3
# Messages of a region that is down stay away for a while, longer the longer it is down.
OUTAGE_PARK_MIN_S = 2.0
OUTAGE_PARK_MAX_S = 30.0


class RegionHealth:
    """Whether calls to one region's Cognito endpoint work at all."""

    def __init__(self, region: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.region = region
        self._clock = clock
        self._failures_in_row = 0
        self._failing_messages: set[Hashable] = set()
        self.down_since: float | None = None
        self.last_error = ""

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def park_for_s(self) -> float | None:
        """How long a message of this region should stay away; None while it is up."""
        if self.down_since is None:
            return None
        down_for = self._clock() - self.down_since
        return min(OUTAGE_PARK_MAX_S, OUTAGE_PARK_MIN_S + down_for / 4)

    def record(self, outcome: Outcome, message: Hashable) -> bool:
        """Take the result of one call for `message`; returns whether the region is down."""
        if outcome.kind is Kind.TRANSIENT:
            self._failed(outcome, message)
        elif outcome.kind in (Kind.SUCCESS, Kind.PERMANENT):
            # An answer about the request itself shows the endpoint works.
            self._failures_in_row = 0
            self._failing_messages.clear()
            if self.down_since is not None:
                log.warning(
                    "region.up",
                    region=self.region,
                    down_for_s=round(self._clock() - self.down_since, 1),
                )
                self.down_since = None
                metrics.REGION_DOWN.labels(self.region).set(0)
        return self.down

    def _failed(self, outcome: Outcome, message: Hashable) -> None:
        self._failures_in_row += 1
        self.last_error = outcome.code
        if len(self._failing_messages) < DOWN_AFTER_MESSAGES:
            self._failing_messages.add(message)
        if (
            self.down_since is None
            and self._failures_in_row >= DOWN_AFTER_FAILURES
            and len(self._failing_messages) >= DOWN_AFTER_MESSAGES
        ):
            self.down_since = self._clock()
            metrics.REGION_DOWN.labels(self.region).set(1)
            log.error(
                "region.down",
                region=self.region,
                code=outcome.code,
                error=outcome.message,
                note="every call to this region fails: its messages are held and retried, "
                "nothing is dead-lettered for it, and the other regions go on; check the "
                "AWS Health Dashboard for Cognito in this region",
            )
