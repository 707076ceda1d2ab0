"""The real worker as a child process: start, signal, kill, probe its health, sample resources."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import aiohttp
import anyio
import psutil
from anyio.abc import Process

WORKER_EXECUTABLE = Path(sys.executable).with_name("feedback-worker")
PROBE_TIMEOUT_S = 2.0
# Inherited from the parent so the child finds its interpreter and locale; nothing AWS.
_PASSTHROUGH_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH")


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Sample:
    """Resource use of the worker process at one moment."""

    rss_bytes: int
    open_fds: int
    threads: int


class WorkerProcess:
    """One incarnation of ``feedback-worker run``; output goes to `log_path` as JSON lines."""

    def __init__(
        self,
        env: Mapping[str, str],
        log_path: Path,
        *,
        args: Sequence[str] = ("run",),
        executable: Path = WORKER_EXECUTABLE,
    ) -> None:
        self.metrics_port = int(env.get("FEEDBACK_METRICS_PORT") or 0)
        self.env = {k: os.environ[k] for k in _PASSTHROUGH_ENV if k in os.environ} | dict(env)
        self.log_path = log_path
        self._argv = [str(executable), *args]
        self._process: Process | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        return self._require().pid

    @property
    def returncode(self) -> int | None:
        return self._require().returncode

    def _require(self) -> Process:
        if self._process is None:
            raise RuntimeError("the worker is not started")
        return self._process

    async def start(self) -> None:
        self._log = self.log_path.open("ab")
        self._process = await anyio.open_process(
            self._argv,
            stdin=None,
            stdout=self._log,
            stderr=self._log,
            env=self.env,
            start_new_session=True,
        )

    async def _get(self, path: str) -> tuple[int, str] | None:
        if not self.metrics_port:
            return None
        url = f"http://127.0.0.1:{self.metrics_port}{path}"
        try:
            timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)
            async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as resp:
                return resp.status, await resp.text()
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def readyz(self) -> int | None:
        """The status of GET /readyz, or None while nothing answers."""
        answer = await self._get("/readyz")
        return None if answer is None else answer[0]

    async def healthz(self) -> int | None:
        answer = await self._get("/healthz")
        return None if answer is None else answer[0]

    async def metrics(self) -> dict[str, float]:
        """The worker's Prometheus samples (unlabelled and labelled lines, keyed as written)."""
        answer = await self._get("/metrics")
        if answer is None or answer[0] != 200:
            return {}
        samples: dict[str, float] = {}
        for line in answer[1].splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                try:
                    samples[name] = float(value)
                except ValueError:
                    continue
        return samples

    async def wait_healthy(self, timeout_s: float) -> bool:
        """Wait until /healthz answers 200; False if the process exits or time runs out."""
        with anyio.move_on_after(timeout_s):
            while self.returncode is None:
                if await self.healthz() == 200:
                    return True
                await anyio.sleep(0.1)
        return False

    def send_signal(self, signum: signal.Signals) -> None:
        if self.returncode is None:
            self._require().send_signal(signum)

    async def wait_exit(self, timeout_s: float) -> int | None:
        """The exit code, or None if still running after `timeout_s`."""
        with anyio.move_on_after(timeout_s):
            return await self._require().wait()
        return None

    async def kill(self) -> int:
        """SIGKILL the worker (and anything in its session) and reap it."""
        process = self._require()
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        code = await process.wait()
        self.close_log()
        return code

    async def stop(self, timeout_s: float) -> int:
        """SIGTERM, then SIGKILL if it has not exited after `timeout_s`."""
        self.send_signal(signal.SIGTERM)
        code = await self.wait_exit(timeout_s)
        return await self.kill() if code is None else code

    def close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def sample(self) -> Sample | None:
        try:
            proc = psutil.Process(self.pid)
            with proc.oneshot():
                return Sample(proc.memory_info().rss, proc.num_fds(), proc.num_threads())
        except psutil.Error:
            return None


def read_log(path: Path) -> list[dict[str, Any]]:
    """The worker's JSON log lines; anything else (a traceback) as {"raw": line}."""
    if not path.exists():
        return []
    records: list[dict[str, Any]] = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            record = {"raw": line}
        records.append(record if isinstance(record, dict) else {"raw": line})
    return records
