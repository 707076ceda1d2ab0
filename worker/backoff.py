"""Exponential backoff with full jitter: a pure function of the attempt number."""

from __future__ import annotations

import random

# Transient failures (5xx, timeouts): first retry within 0.5 s, never more than 20 s apart.
RETRY_BASE_S = 0.5
RETRY_CAP_S = 20.0
# Throttles: the rate limiter already slows the region down; this only spreads the retries.
THROTTLE_BASE_S = 0.25
THROTTLE_CAP_S = 5.0
# Systemic failures (credentials, permissions): probe again slowly, at most once a minute.
PROBE_BASE_S = 1.0
PROBE_CAP_S = 60.0
# Receive errors: the poller must never die, but must not hammer a failing endpoint either.
RECEIVE_BASE_S = 0.5
RECEIVE_CAP_S = 30.0


def full_jitter(
    attempt: int, *, base_s: float, cap_s: float, rand: random.Random | None = None
) -> float:
    """Seconds before retry number `attempt` (1-based): uniform in [0, min(cap, base·2^(n-1))].

    Full jitter spreads the retries of many clients that failed together, so they do not
    come back together (the AWS Architecture Blog's "Exponential Backoff and Jitter").
    """
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    # Clamp the exponent so huge attempt counts cannot overflow float arithmetic.
    ceiling = min(cap_s, base_s * 2.0 ** min(attempt - 1, 62))
    return (rand or random).uniform(0.0, ceiling)
