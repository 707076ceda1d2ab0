"""Request-rate quotas (writes and reads per region, writes per user) and the call statistics
the benchmarks and tests read."""

from __future__ import annotations

import collections
import random
import time
from dataclasses import dataclass, field
from typing import Any

from feedback_local.emulator_config import EmulatorConfig
from feedback_local.emulator_wire import THROTTLE_OUTCOMES, TOO_MANY_REQUESTS, UNTYPED_THROTTLE
from worker import awsmodel

DEFAULT_STATS_WINDOW_S = 120
# Idle per-user buckets are refilled anyway: forget them once there are this many.
USER_BUCKETS_SOFT_LIMIT = 10_000
# Which quota each operation draws on; the stats count each category apart.
WRITE = "write"
READ = "read"
QUOTA_CATEGORY = {awsmodel.FEEDBACK_OPERATION: WRITE, awsmodel.LIST_EVENTS_OPERATION: READ}


class TokenBucket:
    """`rate` tokens per second up to `capacity`; a call takes one token or is refused."""

    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.stamp = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def full(self, now: float) -> bool:
        return self.tokens + (now - self.stamp) * self.rate >= self.capacity


class Quotas:
    """Per signing region a write bucket and a read bucket; per (pool, username) a write one."""

    def __init__(self, config: EmulatorConfig) -> None:
        self._config = config
        self._regions: dict[str, TokenBucket] = {}
        self._reads: dict[str, TokenBucket] = {}
        self._users: dict[tuple[str, str], TokenBucket] = {}

    def reconfigure(self, config: EmulatorConfig) -> None:
        """Apply new rates; buckets start afresh (full) under the new settings."""
        self._config = config
        self._regions.clear()
        self._reads.clear()
        self._users.clear()

    def take_read(self, region: str, now: float) -> bool:
        """One AdminListUserAuthEvents call from the region's read quota (one second's burst)."""
        rate = self._config.read_quota_per_region
        if rate <= 0:
            return True
        bucket = self._reads.get(region)
        if bucket is None:
            bucket = self._reads[region] = TokenBucket(rate, max(1.0, rate), now)
        return bucket.take(now)

    def take_region(self, region: str, now: float) -> bool:
        rate = self._config.quota_per_region
        if rate <= 0:
            return True
        bucket = self._regions.get(region)
        if bucket is None:
            bucket = self._regions[region] = TokenBucket(rate, self._config.region_bucket_size, now)
        return bucket.take(now)

    def take_user(self, pool_id: str, username: str, now: float) -> bool:
        rate = self._config.per_user_limit
        if rate <= 0:
            return True
        key = (pool_id, username)
        bucket = self._users.get(key)
        if bucket is None:
            if len(self._users) >= USER_BUCKETS_SOFT_LIMIT:
                self._forget_idle_users(now)
            bucket = self._users[key] = TokenBucket(rate, max(1.0, rate), now)
        return bucket.take(now)

    def write_throttle_code(self) -> str:
        """How a refused write is answered: typed, or for the configured share, untyped."""
        untyped = random.random() < self._config.quota_throttles_untyped
        return UNTYPED_THROTTLE if untyped else TOO_MANY_REQUESTS

    def _forget_idle_users(self, now: float) -> None:
        for key in [k for k, b in self._users.items() if b.full(now)]:
            del self._users[key]


@dataclass
class Counters:
    calls: int = 0
    successes: int = 0
    throttles: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def add(self, outcome: str | None) -> None:
        self.calls += 1
        if outcome is None:
            self.successes += 1
            return
        if outcome in THROTTLE_OUTCOMES:
            self.throttles += 1
        self.errors[outcome] = self.errors.get(outcome, 0) + 1

    def to_json(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "successes": self.successes,
            "throttles": self.throttles,
            "errors": dict(self.errors),
        }


@dataclass
class _Second:
    second: int
    totals: Counters = field(default_factory=Counters)
    regions: dict[str, Counters] = field(default_factory=dict)


class Stats:
    """Outcome counts of every emulated API call: totals, per operation, per quota category
    (write, read), per signing region, and per wall-clock second for the last `window_s`
    seconds. An outcome is None for a success, else the error code, or the name of an untyped
    answer (HTTP503, UntypedThrottle, ...); throttles are TooManyRequests, 429s and untyped
    ones."""

    def __init__(self, window_s: int = DEFAULT_STATS_WINDOW_S) -> None:
        self.window_s = window_s
        self.clear()

    def clear(self) -> None:
        self.started_at = time.time()
        self.totals = Counters()
        self.operations: dict[str, Counters] = {}
        self.categories: dict[str, Counters] = {}
        self.regions: dict[str, Counters] = {}
        self._seconds: collections.deque[_Second] = collections.deque()

    def record(self, operation: str | None, region: str | None, outcome: str | None) -> None:
        self.totals.add(outcome)
        if operation is not None:
            self.operations.setdefault(operation, Counters()).add(outcome)
            category = QUOTA_CATEGORY.get(operation)
            if category is not None:
                self.categories.setdefault(category, Counters()).add(outcome)
        now = int(time.time())
        if not self._seconds or self._seconds[-1].second != now:
            self._seconds.append(_Second(now))
            while self._seconds[0].second <= now - self.window_s:
                self._seconds.popleft()
        bucket = self._seconds[-1]
        bucket.totals.add(outcome)
        if region is not None:
            self.regions.setdefault(region, Counters()).add(outcome)
            bucket.regions.setdefault(region, Counters()).add(outcome)

    def to_json(self) -> dict[str, Any]:
        horizon = int(time.time()) - self.window_s
        return {
            **self.totals.to_json(),
            "started_at": self.started_at,
            "window_s": self.window_s,
            "operations": {op: c.to_json() for op, c in self.operations.items()},
            "categories": {name: c.to_json() for name, c in self.categories.items()},
            "regions": {region: c.to_json() for region, c in self.regions.items()},
            "per_second": [
                {
                    "second": s.second,
                    **s.totals.to_json(),
                    "regions": {r: c.to_json() for r, c in s.regions.items()},
                }
                for s in self._seconds
                if s.second > horizon
            ],
        }
