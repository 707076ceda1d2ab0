"""LocalStack's SQS as a child process on loopback, for the scenarios that need SQS fair queues.

fauxqs (2.4.1) drops ``MessageGroupId`` on standard queues, so a consumer never sees the
tenant. LocalStack (2026.3.0) keeps it and returns it on receive. Neither reorders delivery
for fairness as SQS does for a fair queue: a quiet tenant's messages wait behind a noisy
tenant's backlog in the queue, and whatever fairness the bench measures is the consumer's own.

LocalStack runs from its own virtualenv (tests.bench.toolchain), with SQS only, no Docker.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Self

from tests.bench.sqs_server import stop_group
from tests.support.ports import LOOPBACK, free_port

START_TIMEOUT_S = 90.0
STOP_GRACE_S = 10.0
POLL_S = 0.25
HEALTH_PATH = "/_localstack/health"


class LocalStackSqs:
    """``LocalStackSqs(python, log_path).start()`` serves SQS at ``url`` until ``stop()``."""

    def __init__(self, python: Path, log_path: Path) -> None:
        self._python = python
        self._log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._home: tempfile.TemporaryDirectory[str] | None = None
        self.url = ""

    def _env(self, port: int, home: str) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": home,
            "GATEWAY_LISTEN": f"{LOOPBACK}:{port}",
            "LOCALSTACK_HOST": f"{LOOPBACK}:{port}",  # queue URLs that name loopback
            "SERVICES": "sqs",
            "SQS_ENDPOINT_STRATEGY": "path",
            "DNS_ADDRESS": "0",
            "EAGER_SERVICE_LOADING": "1",
            "SKIP_SSL_CERT_DOWNLOAD": "1",
            "DISABLE_EVENTS": "1",
            "LS_LOG": "warn",  # not a line per request
            "LOCALSTACK_VOLUME_DIR": f"{home}/volume",
            "FILESYSTEM_ROOT": f"{home}/filesystem",
        }

    def start(self) -> Self:
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self._log_path.open("wb")
        self._home = tempfile.TemporaryDirectory(prefix="bench-localstack-")
        port = free_port()
        self._proc = subprocess.Popen(
            [str(self._python), "-m", "localstack.runtime.main"],
            env=self._env(port, self._home.name),
            cwd=self._home.name,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.url = f"http://{LOOPBACK}:{port}"
        try:
            self._await_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _await_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        # Loopback only: never through an HTTP(S)_PROXY from the environment.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            with (
                contextlib.suppress(urllib.error.URLError, OSError),
                opener.open(self.url + HEALTH_PATH, timeout=2) as response,
            ):
                if b'"sqs": "running"' in response.read():
                    return
            time.sleep(POLL_S)
        raise RuntimeError(f"LocalStack did not start; see {self._log_path}")

    @property
    def host_port(self) -> tuple[str, int]:
        host, port = self.url.removeprefix("http://").rsplit(":", 1)
        return host, int(port)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_group(proc, STOP_GRACE_S)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._home is not None:
            self._home.cleanup()
            self._home = None
