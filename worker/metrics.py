"""Prometheus metrics of the worker. Labels are bounded: regions, error codes, reasons; never
user names, event ids or anything else that grows without limit."""

from __future__ import annotations

import platform

from prometheus_client import Counter, Gauge, Histogram

from worker import __version__

NAMESPACE = "feedback_worker"

BUILD_INFO = Gauge(
    f"{NAMESPACE}_build_info",
    "Always 1; the labels say which version of the worker runs, on which Python",
    ["version", "python"],
)
BUILD_INFO.labels(__version__, platform.python_version()).set(1)

RECEIVED = Counter(f"{NAMESPACE}_messages_received", "Messages received from the source queue")
APPLIED = Counter(
    f"{NAMESPACE}_messages_applied", "Verdicts Cognito accepted, by region", ["region"]
)
SUPERSEDED = Counter(
    f"{NAMESPACE}_messages_superseded",
    "Messages acknowledged without a call because a newer verdict for the event was applied",
)
DEAD_LETTERED = Counter(
    f"{NAMESPACE}_messages_dead_lettered", "Messages copied to the DLQ, by ErrorCode", ["code"]
)
RETRIED = Counter(
    f"{NAMESPACE}_retries", "Cognito calls retried, by reason (throttled, transient)", ["reason"]
)
RELEASED = Counter(
    f"{NAMESPACE}_messages_released",
    "Messages handed back to the queue without a failed attempt (shutdown, a paused scope, "
    "parking beyond a scope's share), by reason",
    ["reason"],
)
REQUEUED = Counter(
    f"{NAMESPACE}_messages_requeued",
    "Messages sent back as a fresh copy at their last receive, so SQS's redrive policy does "
    "not move them to the DLQ without a reason",
)
THROTTLES = Counter(f"{NAMESPACE}_throttles", "Throttled Cognito calls, by region", ["region"])
COGNITO_ERRORS = Counter(
    f"{NAMESPACE}_cognito_errors", "Failed Cognito calls, by error code", ["code"]
)
IN_FLIGHT = Gauge(f"{NAMESPACE}_cognito_calls_in_flight", "Cognito calls in flight")
HELD = Gauge(f"{NAMESPACE}_messages_held", "Messages received and not yet settled")
ALLOWED_RATE = Gauge(
    f"{NAMESPACE}_allowed_rate",
    "Cognito calls per second currently allowed, by region (adaptive)",
    ["region"],
)
CALL_LATENCY = Histogram(
    f"{NAMESPACE}_cognito_call_seconds",
    "Latency of AdminUpdateAuthEventFeedback calls",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15),
)
AGE_AT_APPLY = Histogram(
    f"{NAMESPACE}_message_age_at_apply_seconds",
    "Seconds from enqueue (SentTimestamp) to the verdict being applied",
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400),
)
RECEIVE_ERRORS = Counter(
    f"{NAMESPACE}_receive_errors", "Failed ReceiveMessage calls, by error code", ["code"]
)
SETTLE_ERRORS = Counter(
    f"{NAMESPACE}_settle_errors",
    "Failed delete, visibility or DLQ operations, by operation",
    ["operation"],
)
PAUSED_SCOPES = Gauge(
    f"{NAMESPACE}_paused_scopes",
    "Scopes paused by a systemic failure, by kind (pool, region, worker)",
    ["scope"],
)
PAUSED = Gauge(
    f"{NAMESPACE}_paused", "1 while work is paused by a systemic failure (credentials, access)"
)
REGION_DOWN = Gauge(
    f"{NAMESPACE}_region_down",
    "1 while every Cognito call to the region fails (an outage: messages are held), by region",
    ["region"],
)
