"""Run the real `feedback-worker` process against the local stack, and read the end state."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from types_aiobotocore_sqs.client import SQSClient

READY_POLL_S = 0.1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class WorkerProcess:
    """`python -m worker run` as a child process with its own log file."""

    env: Mapping[str, str]
    args: tuple[str, ...] = ()
    # What runs the worker: `python -m worker` unless a test needs another entry (a `-c` script).
    entry: tuple[str, ...] = ("-m", "worker")
    log_path: Path = field(default_factory=lambda: Path(tempfile.mkstemp(suffix=".log")[1]))
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FEEDBACK_"))}
        env |= {"FEEDBACK_LOG_FORMAT": "json", "FEEDBACK_WAIT_TIME": "1", **self.env}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, *self.entry, "run", *self.args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def signal(self, signum: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    async def wait(self, timeout_s: float) -> int:
        """The exit code; fails the test if the worker is still running after `timeout_s`."""
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while (code := self.process.poll()) is None:
            if time.monotonic() > deadline:
                self.process.kill()
                self.process.wait()
                raise AssertionError(
                    f"worker still running after {timeout_s} s; log tail:\n{self.log_tail()}"
                )
            await anyio.sleep(0.1)
        return code

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def events(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if r.get("event") == name]

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


async def send_bodies(sqs: SQSClient, queue_url: str, bodies: list[str]) -> list[str]:
    """Send each body (batches of ten); returns the message ids in order."""
    ids: list[str] = []
    for start in range(0, len(bodies), 10):
        chunk = bodies[start : start + 10]
        response = await sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(chunk)],
        )
        assert not response.get("Failed"), response.get("Failed")
        by_id = {int(e["Id"]): e["MessageId"] for e in response["Successful"]}
        ids += [by_id[i] for i in range(len(chunk))]
    return ids


async def drain_dlq(sqs: SQSClient, dlq_url: str) -> list[dict[str, Any]]:
    """Every message in the DLQ (received with a long visibility so none repeats)."""
    seen: dict[str, dict[str, Any]] = {}
    empty_reads = 0
    while empty_reads < 2:
        response = await sqs.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            VisibilityTimeout=300,
            WaitTimeSeconds=0,
        )
        fresh = [m for m in response.get("Messages", []) if m["MessageId"] not in seen]
        if not fresh:
            empty_reads += 1
            continue
        for message in fresh:
            seen[message["MessageId"]] = dict(message)
    return list(seen.values())


def error_code(dlq_message: Mapping[str, Any]) -> str:
    return str(dlq_message.get("MessageAttributes", {}).get("ErrorCode", {}).get("StringValue"))


async def queue_counts(sqs: SQSClient, queue_url: str) -> tuple[int, int]:
    """(visible, in flight) as the queue reports them."""
    response = await sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )
    attributes = response["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )


def verdict(pool: str, user: str, event: str, value: str = "Valid") -> str:
    return json.dumps(
        {"UserPoolId": pool, "Username": user, "EventId": event, "FeedbackValue": value}
    )


def applied(writes: Mapping[str, Any]) -> dict[tuple[str, str], str]:
    """(username, event id) → current feedback value, for events written at least once."""
    return {
        (row["username"], row["event_id"]): row["feedback_value"]
        for row in writes["events"]
        if row["writes"] > 0
    }
