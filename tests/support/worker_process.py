"""The worker under test as a child process: start it, signal it, probe its health, sample its
resources, read its JSON log, and reap it.

Any other consumer the bench compares the worker with runs the same way (give it its own
``command``). Each child has its own session, so a signal to its group reaches whatever it
started. It is reaped with ``wait4``: CPU time comes from the kernel's accounting, so nothing
the child did between two samples is missed; peak RSS is the high-water mark of the child's own
address space (``VmHWM``), which, unlike ``ru_maxrss``, cannot include the pages of the parent
that forked it.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import aiohttp
import anyio
import psutil

from feedback_local.stack import LocalStack, QueuePair
from tests.support.ports import LOOPBACK

WORKER_EXECUTABLE = Path(sys.executable).with_name("feedback-worker")
POLL_S = 0.05
KILL_GRACE_S = 5.0
PROBE_TIMEOUT_S = 2.0
LOG_TAIL_LINES = 40
KIB = 1024
# Inherited from the parent so the child finds its interpreter and locale; nothing AWS.
_PASSTHROUGH_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH")
# The worker tests' settings unless a test says otherwise: JSON logs to read events from, short
# polls so that ``--until-empty`` ends soon after the queue does, no metrics server.
TEST_WORKER_ENV = {
    "FEEDBACK_LOG_FORMAT": "json",
    "FEEDBACK_WAIT_TIME": "1",
    "FEEDBACK_METRICS_PORT": "0",
}


def worker_command(*args: str) -> list[str]:
    """``feedback-worker run`` with ``args``."""
    return [str(WORKER_EXECUTABLE), "run", *args]


def local_worker(stack: LocalStack, queues: QueuePair, *args: str, **env: str) -> WorkerProcess:
    """``feedback-worker run *args`` on the local stack's ``queues``, with the tests' settings."""
    return WorkerProcess(TEST_WORKER_ENV | stack.env(queues) | env, worker_command(*args))


def _temporary_log(name: str) -> Path:
    fd, path = tempfile.mkstemp(prefix=f"{name}-", suffix=".log")
    os.close(fd)
    return Path(path)


@dataclass(frozen=True)
class Sample:
    """Resource use of a running child at one moment."""

    rss_bytes: int
    open_fds: int
    threads: int
    cpu_s: float  # user + system since it started


@dataclass(frozen=True)
class Usage:
    """What one finished child cost."""

    exit_code: int
    wall_s: float
    cpu_s: float
    peak_rss_bytes: int


class WorkerProcess:
    """One incarnation of ``feedback-worker run`` (or of ``command``); its output goes to
    ``log_path`` (a fresh temporary file by default)."""

    def __init__(
        self,
        env: Mapping[str, str],
        command: Sequence[str] | None = None,
        *,
        log_path: Path | None = None,
        cwd: Path | None = None,
        name: str = "worker",
    ) -> None:
        self.name = name
        self.env = {k: os.environ[k] for k in _PASSTHROUGH_ENV if k in os.environ} | dict(env)
        self.metrics_port = int(self.env.get("FEEDBACK_METRICS_PORT") or 0)
        self.log_path = log_path or _temporary_log(name)
        self._argv = list(command or worker_command())
        self._cwd = cwd
        self._process: subprocess.Popen[bytes] | None = None
        self._started = 0.0
        self._peak_rss = 0
        self.usage: Usage | None = None  # set once the child has exited and been reaped

    # -- the process ------------------------------------------------------------------------

    def start(self) -> Self:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._started = time.monotonic()
        with self.log_path.open("ab") as log:  # the child keeps its own copy open
            self._process = subprocess.Popen(
                self._argv,
                env=self.env,
                cwd=self._cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        """The exit code once the child has exited, else None."""
        return self.poll()

    def poll(self) -> int | None:
        """Reap the child if it has exited (its exit code), else take a memory sample (None)."""
        if self.usage is None:
            self._track_peak_rss()
            pid, status, rusage = os.wait4(self.pid, os.WNOHANG)
            if pid == 0:
                return None
            self._reaped(status, rusage)
        assert self.usage is not None
        return self.usage.exit_code

    def send_signal(self, signum: signal.Signals) -> None:
        """Signal the child itself, if it is still running."""
        if self.poll() is None:
            os.kill(self.pid, signum)

    async def wait_exit(self, timeout_s: float) -> int | None:
        """The exit code, or None if still running after ``timeout_s``."""
        with anyio.move_on_after(timeout_s):
            while (code := self.poll()) is None:
                await anyio.sleep(POLL_S)
            return code
        return None

    def wait_blocking(self, timeout_s: float) -> int:
        """The exit code, waiting without an event loop; AssertionError (and the child
        killed) if it outlives ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while (code := self.poll()) is None:
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(
                    f"{self.name} still running after {timeout_s} s; log tail:\n{self.log_tail()}"
                )
            time.sleep(POLL_S)
        return code

    async def wait(self, timeout_s: float) -> int:
        """The exit code; fails the test (and kills the child) if it outlives ``timeout_s``."""
        code = await self.wait_exit(timeout_s)
        if code is None:
            self.kill()
            raise AssertionError(
                f"{self.name} still running after {timeout_s} s; log tail:\n{self.log_tail()}"
            )
        return code

    def kill(self) -> Usage:
        """SIGKILL the child and anything in its session, and reap it."""
        if self.poll() is None:
            self._signal_group(signal.SIGKILL)
            _, status, rusage = os.wait4(self.pid, 0)
            self._reaped(status, rusage)
        assert self.usage is not None
        return self.usage

    async def stop(self, timeout_s: float = KILL_GRACE_S, signum: int = signal.SIGTERM) -> Usage:
        """Signal the child's group, SIGKILL it if it has not exited after ``timeout_s``."""
        if self.poll() is None:
            self._signal_group(signum)
            await self.wait_exit(timeout_s)
        return self.kill()

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    def _reaped(self, status: int, rusage: resource.struct_rusage) -> None:
        assert self._process is not None
        exit_code = os.waitstatus_to_exitcode(status)
        self._process.returncode = exit_code  # reaped here: Popen must not wait for it again
        self.usage = Usage(
            exit_code=exit_code,
            wall_s=time.monotonic() - self._started,
            cpu_s=rusage.ru_utime + rusage.ru_stime,
            peak_rss_bytes=self._peak_rss,
        )
        self._signal_group(signal.SIGKILL)  # anything the child left in its group goes with it

    # -- resources --------------------------------------------------------------------------

    def _track_peak_rss(self) -> None:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self._peak_rss = max(self._peak_rss, int(line.split()[1]) * KIB)
                    break

    def sample(self) -> Sample | None:
        """The child's resource use now; None once it is gone."""
        try:
            proc = psutil.Process(self.pid)
            with proc.oneshot():
                times = proc.cpu_times()
                return Sample(
                    rss_bytes=proc.memory_info().rss,
                    open_fds=proc.num_fds(),
                    threads=proc.num_threads(),
                    cpu_s=float(times.user + times.system),
                )
        except psutil.Error:
            return None

    # -- health and metrics -----------------------------------------------------------------

    async def _get(self, path: str) -> tuple[int, str] | None:
        if not self.metrics_port:
            return None
        url = f"http://{LOOPBACK}:{self.metrics_port}{path}"
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

    async def readiness(self) -> dict[str, Any] | None:
        """The JSON body of GET /readyz (its status under "http_status"), or None."""
        answer = await self._get("/readyz")
        if answer is None:
            return None
        body: dict[str, Any] = json.loads(answer[1])
        return body | {"http_status": answer[0]}

    async def healthz(self) -> int | None:
        """The status of GET /healthz, or None while nothing answers."""
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
                with contextlib.suppress(ValueError):
                    samples[name] = float(value)
        return samples

    async def wait_healthy(self, timeout_s: float) -> bool:
        """Wait until /healthz answers 200; False if the process exits or time runs out."""
        with anyio.move_on_after(timeout_s):
            while self.poll() is None:
                if await self.healthz() == 200:
                    return True
                await anyio.sleep(0.1)
        return False

    # -- the log ----------------------------------------------------------------------------

    def records(self) -> list[dict[str, Any]]:
        """The JSON log lines; anything else (a traceback) as {"raw": line}."""
        if not self.log_path.exists():
            return []
        records: list[dict[str, Any]] = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            records.append(record if isinstance(record, dict) else {"raw": line})
        return records

    def events(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if r.get("event") == name]

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""
