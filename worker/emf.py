"""The worker's state as CloudWatch metrics, through its logs (the embedded metric format).

Where no Prometheus scrapes /metrics (ECS with the awslogs driver, for one), a paused or
unready worker would be invisible. So once a minute the worker logs one JSON line whose `_aws`
member tells CloudWatch Logs to extract Paused, Ready, MessagesHeld and RegionsDown as metrics
of namespace CognitoFeedbackWorker, by QueueName. Anywhere else it is one more log line.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import structlog

log = structlog.get_logger()

NAMESPACE = "CognitoFeedbackWorker"
DIMENSION = "QueueName"
PERIOD_S = 60.0
# Metric name -> CloudWatch unit.
METRICS = {"Paused": "Count", "Ready": "Count", "MessagesHeld": "Count", "RegionsDown": "Count"}


def document(queue_url: str, values: Mapping[str, float], now_ms: int) -> dict[str, Any]:
    """One EMF document: the `_aws` metadata, the dimension's value and each metric's value."""
    return {
        "_aws": {
            "Timestamp": now_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [[DIMENSION]],
                    "Metrics": [{"Name": name, "Unit": unit} for name, unit in METRICS.items()],
                }
            ],
        },
        DIMENSION: queue_url.rstrip("/").rpartition("/")[2],
        **{name: values[name] for name in METRICS},
    }


async def emit_every(queue_url: str, values: Callable[[], Mapping[str, float]]) -> None:
    """Log the document now and every PERIOD_S until cancelled."""
    while True:
        log.info("worker.metrics", **document(queue_url, values(), int(time.time() * 1000)))
        await anyio.sleep(PERIOD_S)
