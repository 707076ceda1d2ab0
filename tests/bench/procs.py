"""Child processes whose CPU time and peak memory are measured exactly.

CPU comes from the kernel's accounting when the child is reaped (``wait4``), so nothing the
child does between two samples is missed. Peak RSS is the kernel's high-water mark of the
child's own address space (``VmHWM``), which, unlike ``ru_maxrss``, cannot include the pages
of the parent that forked it.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psutil

POLL_S = 0.05
KILL_GRACE_S = 5.0
KIB = 1024


@dataclass(frozen=True)
class Usage:
    """What one finished child cost."""

    exit_code: int
    wall_s: float
    cpu_s: float
    peak_rss_bytes: int


class MeasuredProcess:
    """A child in its own process group, its output in a log file, reaped with ``wait4``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log_path: Path,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self._argv = list(argv)
        self._env = dict(env)
        self._log_path = log_path
        self._cwd = cwd
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._started = 0.0
        self._peak_rss = 0
        self._usage: Usage | None = None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError(f"{self.name} was not started")
        return self._proc.pid

    def start(self) -> None:
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self._log_path.open("wb")
        self._started = time.monotonic()
        self._proc = subprocess.Popen(
            self._argv,
            env=self._env,
            cwd=self._cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def cpu_s(self) -> float:
        """CPU time (user + system) used so far; the child must still be running."""
        times = psutil.Process(self.pid).cpu_times()
        return float(times.user + times.system)

    def sample(self) -> None:
        """Record the memory high-water mark; call it often while the child runs."""
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{self.pid}/status").read_text()
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    self._peak_rss = max(self._peak_rss, int(line.split()[1]) * KIB)
                    break

    def poll(self) -> Usage | None:
        """The child's usage once it has exited, else None (and a fresh memory sample)."""
        if self._usage is not None:
            return self._usage
        self.sample()
        pid, status, rusage = os.wait4(self.pid, os.WNOHANG)
        if pid == 0:
            return None
        self._finish(status, rusage)
        return self._usage

    def wait(self, timeout_s: float) -> Usage | None:
        deadline = time.monotonic() + timeout_s
        while (usage := self.poll()) is None:
            if time.monotonic() >= deadline:
                return None
            time.sleep(POLL_S)
        return usage

    def stop(self, signum: signal.Signals = signal.SIGTERM) -> Usage:
        """Signal the child's group, escalate to SIGKILL after a grace period, reap it."""
        if (usage := self.poll()) is not None:
            return usage
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signum)
        if (usage := self.wait(KILL_GRACE_S)) is not None:
            return usage
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        usage = self.wait(KILL_GRACE_S)
        if usage is None:
            raise RuntimeError(f"{self.name} (pid {self.pid}) survived SIGKILL")
        return usage

    def log_tail(self, limit: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self._log_path.read_bytes()[-limit:].decode(errors="replace")
        return ""

    def _finish(self, status: int, rusage: resource.struct_rusage) -> None:
        assert self._proc is not None
        exit_code = os.waitstatus_to_exitcode(status)
        self._proc.returncode = exit_code  # reaped here: Popen must not wait for it again
        self._usage = Usage(
            exit_code=exit_code,
            wall_s=time.monotonic() - self._started,
            cpu_s=rusage.ru_utime + rusage.ru_stime,
            peak_rss_bytes=self._peak_rss,
        )
        if self._log is not None:
            self._log.close()
            self._log = None
        # Anything the child left in its group goes with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
