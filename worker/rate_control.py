"""How fast one region may be called: Cognito's spare capacity, learned from its answers alone.

Cognito's quota is per account and region, shared with every other caller, and it bursts (a
token bucket), so the worker cannot know its share in advance. It learns it from the one signal
Cognito gives, successes and throttles over time, in cycles of three phases:

- **Decrease, toward the estimate.** A throttle means the bucket is empty. Between two throttles
  it was empty at both ends, so what succeeded in between is exactly its refill: our share. The
  estimate is the success rate since the last decrease (``MIN_ESTIMATE_SPAN_S`` to
  ``ESTIMATE_SPAN_S``); the sent rate is no estimate, since a burst can send far more than the
  refill. The rate becomes ``BETA`` times the estimate, and the estimate the known good rate.
  A throttle of a call sent before the last decrease reports the old overload, and decreases
  are ``DECREASE_INTERVAL_S`` apart, so every call in flight being throttled at once costs one
  decrease. Decreases are toward the estimate, not compounding: a burst of them cannot collapse
  the rate, and one decrease keeps at least ``MAX_DECREASE`` of it.
- **Recover, multiplicatively**, toward the known good rate: the gap halves every
  ``RECOVERY_HALF_LIFE_S``. The shortfall lets the bucket refill a little.
- **Probe above it**, until the next throttle, ``PROBE_AFTER_S`` after the decrease: then
  additively along CUBIC's convex curve, whose growth is the same for every replica, so
  replicas sharing a quota drift toward equal shares as under AIMD. A probe costs about one
  throttle; the long hold keeps probes rare at a steady share. But while a share held within
  the last ``BEST_MEMORY_S`` is well above the current one (a neighbour's spike, or a step
  down, that may be over), probing starts after ``EARLY_PROBE_AFTER_S`` and grows
  multiplicatively back up to that best share first, so a spike that ended is taken back
  within seconds. Only a share held for ``SUSTAINED_S`` counts as one: not the quick cuts
  that find the share at the start.

At the start the known good rate is the write category's documented quota (or the ceiling, if
lower), as if a decrease had just ended: the worker runs at it, then, until the first throttle
ever (slow start), probes early and fast (``SLOW_START_GROWTH`` a second), since a region's
quota could be higher. A ceiling far above the true quota thus costs a few throttles, never
throughput. While the worker has less work than its rate, the rate grows to at most twice what
it achieves.

Pure: every method takes the time from the caller, so it is tested with simulated time. The
ceiling (``--rate-limit``) is a hard cap.
"""

from __future__ import annotations

import collections
import math

# The estimate of our share spans the time since the last decrease, but at most this many
# seconds (a longer span would lag a change of capacity)...
ESTIMATE_SPAN_S = 4.0
# ...and at least this many: a shorter span holds too few calls to tell our share, above all
# when other callers drained the bucket meanwhile.
MIN_ESTIMATE_SPAN_S = 1.0
# Successes are counted in bins this wide (constant memory whatever the rate).
BIN_S = 0.05
# After a decrease the rate is this fraction of the estimate.
BETA = 0.7
# One decrease keeps at least this fraction of the rate, however low a noisy estimate came out.
MAX_DECREASE = 0.3
# Decreases are at least this far apart: one overload answers several calls in a row.
DECREASE_INTERVAL_S = 0.25
# Recovery toward the known good rate halves the gap this often.
RECOVERY_HALF_LIFE_S = 0.5
# Probing above the known good rate starts this long after the last decrease...
PROBE_AFTER_S = 8.0
# ...or this soon while the best share of the last BEST_MEMORY_S is well above it (a
# neighbour's spike, or a step down, that may be over).
EARLY_PROBE_AFTER_S = 2.0
EARLY_PROBE_GAP = 1.2
# Before the first throttle ever (slow start), probing starts this long after the start.
SLOW_START_AFTER_S = 2.0
# While probing, the rate grows by PROBE_C·t³ calls/s, t seconds into the probe (CUBIC's
# convex part): the same for every replica whatever its share, so replicas sharing a quota
# drift toward equal shares, as under AIMD.
PROBE_C = 0.3
# When our share was higher within the last BEST_MEMORY_S (a neighbour's spike that may end),
# probing first multiplies the rate by RECOVERY_GROWTH every second, up to that best share.
BEST_MEMORY_S = 30.0
# Only a share found after this long without a decrease counts toward the best one.
SUSTAINED_S = 3.0
RECOVERY_GROWTH = 2.0
# In slow start, probing multiplies the rate by this every second: the ceiling may be far
# above the quota, or there may be no quota at all.
SLOW_START_GROWTH = 4.0
# While work is short, the rate grows to at most this multiple of the rate achieved over the
# last APP_LIMITED_SPAN_S.
APP_LIMITED_HEADROOM = 2.0
APP_LIMITED_SPAN_S = 1.0
# Cognito documents 25 requests/s for the user-write category, not adjustable: the first guess.
START_RATE = 25.0
# Never pace slower than this: the worker must keep probing to find capacity again.
MIN_RATE = 0.5
# A rate change worth reporting in the logs (relative).
REPORTABLE_CHANGE = 0.2


class RateController:
    """The allowed call rate of one region, learned from successes and throttles."""

    def __init__(self, ceiling: float, *, now: float, start_rate: float = START_RATE) -> None:
        self.ceiling = ceiling
        self._known_good = min(ceiling, start_rate)
        self._rate = self._known_good
        self._after_decrease = self._known_good
        # The start is treated as the end of a decrease: run at the guess, then probe.
        self._last_decrease = now
        self._slow_start = True
        # The shares found at recent decreases: (time, calls/s).
        self._shares: collections.deque[tuple[float, float]] = collections.deque()
        self._bins: collections.deque[list[int]] = collections.deque()  # [bin index, count]
        self._reported = self._rate

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def known_good(self) -> float:
        """The share the endpoint last proved it would take (calls/s)."""
        return self._known_good

    def estimate(self, now: float) -> float:
        """Successes per second since the last decrease (over at most ESTIMATE_SPAN_S)."""
        span = min(ESTIMATE_SPAN_S, max(now - self._last_decrease, MIN_ESTIMATE_SPAN_S))
        return self._successes_since(now - span) / span

    def on_success(self, now: float) -> None:
        index = int(now / BIN_S)
        if self._bins and self._bins[-1][0] == index:
            self._bins[-1][1] += 1
        else:
            self._bins.append([index, 1])
            while self._bins[0][0] <= index - ESTIMATE_SPAN_S / BIN_S:
                self._bins.popleft()
        planned = self._planned(now)
        achieved = self._successes_since(now - APP_LIMITED_SPAN_S) / APP_LIMITED_SPAN_S
        limit = max(self._known_good, APP_LIMITED_HEADROOM * achieved)
        # A success never lowers the rate; the plan only says how far up it may go by now.
        self._rate = min(self.ceiling, max(self._rate, min(planned, limit)))

    def on_throttle(self, now: float, sent_at: float) -> bool:
        """Slow down for a throttled call sent at `sent_at`; returns whether it decreased.

        A call sent before the last decrease reports nothing new, and decreases are at least
        DECREASE_INTERVAL_S apart.
        """
        if sent_at <= self._last_decrease or now - self._last_decrease < DECREASE_INTERVAL_S:
            return False
        estimate = self.estimate(now)
        sustained = now - self._last_decrease >= SUSTAINED_S
        self._last_decrease = now
        self._slow_start = False
        self._known_good = min(self.ceiling, max(estimate, MIN_RATE))
        if sustained:
            # A share held for a while, not one of the quick cuts that find it.
            self._shares.append((now, self._known_good))
        target = max(BETA * estimate, MAX_DECREASE * self._rate, MIN_RATE)
        self._after_decrease = min(self._rate, target, self.ceiling)
        self._rate = self._after_decrease
        return True

    def take_report(self) -> float | None:
        """The new rate if it moved materially since last reported, else None."""
        if abs(self._rate - self._reported) >= REPORTABLE_CHANGE * self._reported:
            self._reported = self._rate
            return self._rate
        return None

    def _planned(self, now: float) -> float:
        """Where the rate may be `now`: recovering toward the known good rate, then probing."""
        elapsed = now - self._last_decrease
        best = self._best(now)
        if self._slow_start:
            hold = SLOW_START_AFTER_S
        elif best > EARLY_PROBE_GAP * self._known_good:
            hold = EARLY_PROBE_AFTER_S
        else:
            hold = PROBE_AFTER_S
        if elapsed >= hold:
            probing = elapsed - hold
            if self._slow_start:
                return self._known_good * math.pow(SLOW_START_GROWTH, probing)
            cubic = self._known_good + PROBE_C * math.pow(probing, 3)
            if best <= self._known_good:
                return cubic
            return max(cubic, min(best, self._known_good * math.pow(RECOVERY_GROWTH, probing)))
        gap = self._known_good - self._after_decrease
        return self._known_good - gap * math.pow(0.5, elapsed / RECOVERY_HALF_LIFE_S)

    def _best(self, now: float) -> float:
        """The highest share found at a decrease within the last BEST_MEMORY_S."""
        while self._shares and self._shares[0][0] < now - BEST_MEMORY_S:
            self._shares.popleft()
        return max((share for _, share in self._shares), default=0.0)

    def _successes_since(self, start: float) -> int:
        first = int(start / BIN_S) + 1
        return sum(count for index, count in reversed(self._bins) if index >= first)
