"""Telling a Cognito outage from a message's own transient failure.

A 5xx or a connection error may be the message's bad luck or the whole region being down.
Only the first should count toward `--max-attempts`: an outage is not the message's fault, so
it must never dead-letter anything. The worker cannot ask, but it can watch: when every call to
a region fails, several in a row with no success between, the region is down. While it is,
failures do not count, messages are held (the heartbeat keeps them hidden) and retried with
backoff, and readiness reports the outage. The first success ends it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from worker import metrics
from worker.outcome import Kind, Outcome

log = structlog.get_logger()

# Transient failures in a row, with no success between, that mean the region is down. High
# enough that a storm of 50% errors rarely trips it, low enough that a real outage costs each
# message at most a few counted attempts.
DOWN_AFTER_FAILURES = 5


class RegionHealth:
    """Whether calls to one region's Cognito endpoint work at all."""

    def __init__(self, region: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.region = region
        self._clock = clock
        self._failures_in_row = 0
        self.down_since: float | None = None
        self.last_error = ""

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def record(self, outcome: Outcome) -> bool:
        """Take the result of one call; returns whether the region is down after it."""
        if outcome.kind is Kind.TRANSIENT:
            self._failures_in_row += 1
            self.last_error = outcome.code
            if self.down_since is None and self._failures_in_row >= DOWN_AFTER_FAILURES:
                self.down_since = self._clock()
                metrics.REGION_DOWN.labels(self.region).set(1)
                log.error(
                    "region.down",
                    region=self.region,
                    code=outcome.code,
                    error=outcome.message,
                    note="every call fails: holding messages and retrying; nothing is "
                    "dead-lettered for it",
                )
        elif outcome.kind is not Kind.SYSTEMIC:
            # Any answer that is not a transient failure shows the endpoint works.
            self._failures_in_row = 0
            if self.down_since is not None:
                log.warning(
                    "region.up",
                    region=self.region,
                    down_for_s=round(self._clock() - self.down_since, 1),
                )
                self.down_since = None
                metrics.REGION_DOWN.labels(self.region).set(0)
        return self.down
