"""Start-up checks: what stops the worker before it takes any work, each as one ConfigError
(one line, exit code 2) instead of a traceback.

The metrics server's address is checked by binding it; the queues by asking SQS for one
attribute of each. Only an answer that settles the question stops the worker: a queue that
does not exist does, while a network error or a denied permission is left to the receive
loop, which retries and reports unready.
"""

from __future__ import annotations

import errno
import socket
from typing import TYPE_CHECKING

import anyio
import structlog

from worker.clients import is_missing_queue
from worker.config import Settings
from worker.errors import ConfigError
from worker.outcome import classify_exception

if TYPE_CHECKING:
    from types_aiobotocore_sqs.client import SQSClient

log = structlog.get_logger()

PORT_SETTING = "--metrics-port / FEEDBACK_METRICS_PORT"
BIND_SETTING = "--metrics-bind / FEEDBACK_METRICS_BIND"
QUEUE_SETTING = "--queue-url / FEEDBACK_QUEUE_URL"
DLQ_SETTING = "--dlq-url / FEEDBACK_DLQ_URL"
# The queue check must not hold up a start when SQS is slow: the receive loop copes with that.
QUEUE_CHECK_TIMEOUT_S = 5.0


def metrics_address_error(exc: OSError, host: str, port: int) -> ConfigError:
    """What binding the metrics server at host:port failing means, as a ConfigError."""
    if isinstance(exc, socket.gaierror):
        return ConfigError(BIND_SETTING, f"{host!r} does not resolve to an address ({exc})")
    if exc.errno == errno.EADDRINUSE:
        return ConfigError(
            PORT_SETTING,
            f"port {port} on {host} is already in use (another worker, or another program); "
            "choose another port, or 0 to turn the server off",
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return ConfigError(BIND_SETTING, f"{host!r} is not an address of this host")
    if exc.errno == errno.EACCES:
        return ConfigError(PORT_SETTING, f"port {port} needs privileges this process lacks")
    return ConfigError(BIND_SETTING, f"cannot listen on {host}:{port}: {exc.strerror or exc}")


def probe_metrics_address(host: str, port: int) -> ConfigError | None:
    """Bind host:port for a moment (as the server would); the error, or None if it is free."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return metrics_address_error(exc, host, port)
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        # As aiohttp does: a port in TIME_WAIT is free, one with a listener is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
            sock.listen()
        except OSError as exc:
            return metrics_address_error(exc, host, port)
    return None


async def check_queues_exist(sqs: SQSClient, settings: Settings) -> None:
    """ConfigError if SQS says either queue does not exist; any other failure is logged only."""
    for setting, url in ((QUEUE_SETTING, settings.queue_url), (DLQ_SETTING, settings.dlq_url)):
        try:
            with anyio.fail_after(QUEUE_CHECK_TIMEOUT_S):
                await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        except Exception as exc:
            if is_missing_queue(exc):
                raise ConfigError(
                    setting, f"queue {url} does not exist (check its URL, account and region)"
                ) from None
            outcome = classify_exception(exc)
            log.warning(
                "startup.queue_not_checked", queue_url=url, code=outcome.code, error=outcome.message
            )
