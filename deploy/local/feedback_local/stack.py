"""The local stack: moto's SQS server and the Cognito emulator as child processes on loopback,
plus the queues and environment a worker under test needs (``make stack`` runs it in the
foreground). How the processes are started and reliably stopped: ``stack_process``."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import signal
import sys
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any, Self, TypeVar

import botocore.config
import botocore.session

from feedback_local.emulator import READY_PREFIX as EMULATOR_READY_PREFIX
from feedback_local.emulator_client import AsyncEmulatorControl, EmulatorControl
from feedback_local.stack_process import CHILD_POLL_S, MOTO_READY_PREFIX, ServerProcess, moto_argv

__all__ = [
    "AsyncEmulatorControl",
    "EmulatorControl",
    "LocalStack",
    "QueuePair",
    "print_exports",
    "run_forever",
]

TEST_ACCESS_KEY = "testing"
TEST_SECRET_KEY = "testing"  # noqa: S105 - the well-known dummy secret of local stacks
STARTUP_TIMEOUT_S = 30.0
DLQ_RETENTION_S = 14 * 24 * 3600  # the maximum: a DLQ must outlive its source's messages
DEFAULT_QUEUE_NAME = "feedback-verdicts"
# What `feedback-local stack` seeds, so that verdicts sent by hand have something to land on.
DEMO_USERS = {"alice": ["ev-1", "ev-2", "ev-3"], "bob": ["ev-1", "ev-2", "ev-3"]}
DEMO_SEED = {
    "pools": [
        {"id": "us-east-1_Demo", "threat_protection": True, "users": DEMO_USERS},
        {"id": "eu-west-1_Demo", "threat_protection": True, "users": DEMO_USERS},
    ]
}
DEMO_SEED_SUMMARY = (
    "pools us-east-1_Demo and eu-west-1_Demo, users alice and bob, events ev-1..ev-3"
)
EXIT_OK = 0
EXIT_CHILD_DIED = 1

_log = logging.getLogger(__name__)
_T = TypeVar("_T")


@dataclass(frozen=True)
class QueuePair:
    """A source queue and the dead-letter queue its RedrivePolicy points at."""

    url: str
    arn: str
    dlq_url: str
    dlq_arn: str
    fifo: bool


class LocalStack:
    """moto (SQS) plus the Cognito emulator on free loopback ports; ``with LocalStack() as s:``.

    With ``sqs_endpoint`` set, an external SQS (e.g. a faster emulator for benchmarks) is used
    and moto is not started. ``emulator_args`` are extra command-line flags for the emulator.
    """

    def __init__(
        self,
        *,
        region: str = "us-east-1",
        sqs_endpoint: str | None = None,
        emulator_args: Sequence[str] = (),
        startup_timeout_s: float = STARTUP_TIMEOUT_S,
        python: str = sys.executable,
    ) -> None:
        self.region = region
        self._external_sqs = sqs_endpoint
        self._emulator_args = list(emulator_args)
        self._startup_timeout_s = startup_timeout_s
        self._python = python
        self._moto: ServerProcess | None = None
        self._emulator_proc: ServerProcess | None = None
        self._sqs_endpoint: str | None = None
        self._cognito_endpoint: str | None = None
        self._emulator: EmulatorControl | None = None
        self._sqs: Any = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> LocalStack:
        if self._cognito_endpoint is not None:
            return self
        try:
            if self._external_sqs is None:
                self._moto = ServerProcess("moto", moto_argv(self._python), MOTO_READY_PREFIX)
                self._sqs_endpoint = self._moto.start(self._startup_timeout_s)
            else:
                self._sqs_endpoint = self._external_sqs
            self._emulator_proc = ServerProcess(
                "cognito emulator",
                [
                    self._python,
                    "-m",
                    "feedback_local.emulator_cli",
                    "--port",
                    "0",
                    "--exit-on-stdin-eof",
                    *self._emulator_args,
                ],
                EMULATOR_READY_PREFIX,
            )
            self._cognito_endpoint = self._emulator_proc.start(self._startup_timeout_s)
            self._emulator = EmulatorControl(self._cognito_endpoint)
            self._emulator.health()
            self._sqs = self._make_sqs_client()
            # The first SQS call also pays moto's lazy backend import, outside any test.
            self._sqs.list_queues()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._sqs is not None:
            self._sqs.close()
            self._sqs = None
        for child in (self._emulator_proc, self._moto):
            if child is not None:
                child.stop()
        self._emulator_proc = self._moto = None
        self._sqs_endpoint = self._cognito_endpoint = None
        self._emulator = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def pids(self) -> list[int]:
        """Process ids of the servers this stack started (for leak checks)."""
        children = (self._moto, self._emulator_proc)
        return [c.pid for c in children if c is not None and c.pid is not None]

    def dead_children(self) -> list[str]:
        children = (self._moto, self._emulator_proc)
        return [c.name for c in children if c is not None and not c.alive()]

    # -- endpoints -------------------------------------------------------------------------

    @property
    def sqs_endpoint(self) -> str:
        return _started(self._sqs_endpoint)

    @property
    def cognito_endpoint(self) -> str:
        return _started(self._cognito_endpoint)

    @property
    def emulator(self) -> EmulatorControl:
        return _started(self._emulator)

    def async_emulator(self) -> AsyncEmulatorControl:
        """A fresh async control client; use it as ``async with stack.async_emulator() as c``."""
        return AsyncEmulatorControl(self.cognito_endpoint)

    def env(self, queues: QueuePair | None = None) -> dict[str, str]:
        """What a worker process needs to talk to this stack (and to nothing else)."""
        env = {
            "AWS_ENDPOINT_URL_SQS": self.sqs_endpoint,
            # The worker's own per-region map; the emulator serves every region. botocore's
            # variable is for other AWS SDK clients (the benchmark's peers).
            "FEEDBACK_COGNITO_ENDPOINTS": f"*={self.cognito_endpoint}",
            "AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER": self.cognito_endpoint,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ACCESS_KEY_ID": TEST_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": TEST_SECRET_KEY,
            # No instance-metadata probing when a test removes the credentials on purpose.
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        if queues is not None:
            env["FEEDBACK_QUEUE_URL"] = queues.url
            env["FEEDBACK_DLQ_URL"] = queues.dlq_url
        return env

    # -- queues ----------------------------------------------------------------------------

    def _make_sqs_client(self) -> Any:
        # A bare session: nothing from the caller's ~/.aws or AWS_* variables leaks in.
        session = botocore.session.Session()
        session.set_config_variable("config_file", os.devnull)
        session.set_config_variable("credentials_file", os.devnull)
        return session.create_client(
            "sqs",
            region_name=self.region,
            endpoint_url=self.sqs_endpoint,
            aws_access_key_id=TEST_ACCESS_KEY,
            aws_secret_access_key=TEST_SECRET_KEY,
            config=botocore.config.Config(retries={"mode": "standard", "max_attempts": 3}),
        )

    def create_queues(
        self,
        name: str | None = None,
        *,
        max_receive_count: int = 5,
        fifo: bool = False,
        visibility_timeout_s: int = 30,
    ) -> QueuePair:
        """A source queue whose RedrivePolicy sends a message to its own DLQ after
        ``max_receive_count`` receives. FIFO pairs use content-based deduplication."""
        sqs = _started(self._sqs)
        base = (name or f"feedback-{uuid.uuid4().hex[:12]}").removesuffix(".fifo")
        suffix = ".fifo" if fifo else ""
        common: dict[str, str] = {}
        if fifo:
            common = {"FifoQueue": "true", "ContentBasedDeduplication": "true"}
        dlq_url = sqs.create_queue(
            QueueName=f"{base}-dlq{suffix}",
            Attributes={**common, "MessageRetentionPeriod": str(DLQ_RETENTION_S)},
        )["QueueUrl"]
        dlq_arn = self._queue_arn(dlq_url)
        redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}
        url = sqs.create_queue(
            QueueName=f"{base}{suffix}",
            Attributes={
                **common,
                "VisibilityTimeout": str(visibility_timeout_s),
                "RedrivePolicy": json.dumps(redrive),
            },
        )["QueueUrl"]
        return QueuePair(
            url=url, arn=self._queue_arn(url), dlq_url=dlq_url, dlq_arn=dlq_arn, fifo=fifo
        )

    def _queue_arn(self, url: str) -> str:
        attrs = self._sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return str(attrs["Attributes"]["QueueArn"])

    def delete_queues(self, queues: QueuePair) -> None:
        sqs = _started(self._sqs)
        for url in (queues.url, queues.dlq_url):
            with contextlib.suppress(sqs.exceptions.QueueDoesNotExist):
                sqs.delete_queue(QueueUrl=url)


def _started(value: _T | None) -> _T:
    if value is None:
        raise RuntimeError("the local stack is not started")
    return value


def print_exports(env: dict[str, str]) -> None:
    """Print ``export K=V`` lines a shell can ``eval``."""
    for key, value in env.items():
        print(f"export {key}={shlex.quote(value)}", flush=True)


def run_forever(
    print_env: Callable[[dict[str, str]], None] = print_exports, *, region: str = "us-east-1"
) -> int:
    """Run the stack with one queue pair in the foreground until SIGINT/SIGTERM
    (``feedback-local stack``); 1 if a server died on its own."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with LocalStack(region=region) as stack:
            stack.emulator.seed(DEMO_SEED)
            print_env(stack.env(stack.create_queues(DEFAULT_QUEUE_NAME)))
            print(f"# seeded: {DEMO_SEED_SUMMARY}", flush=True)
            while not stop.wait(CHILD_POLL_S):
                if dead := stack.dead_children():
                    _log.error("local stack process exited: %s", ", ".join(dead))
                    return EXIT_CHILD_DIED
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return EXIT_OK
