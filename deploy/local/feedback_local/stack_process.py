"""The local stack's server processes: supervision from the parent, and moto's entry point.

Each server runs in a process group of its own, prints ``<PREFIX><url>`` on stdout once it
listens, and exits when its stdin closes, so not even a SIGKILLed parent leaves one behind.
``stop`` sends SIGTERM to the group, then SIGKILL after a grace period; an atexit hook stops
whatever a caller never stopped.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import IO

LOOPBACK = "127.0.0.1"
MOTO_READY_PREFIX = "MOTO_URL="
STOP_GRACE_S = 5.0
ATEXIT_GRACE_S = 1.0
EXIT_POLL_S = 0.02
CHILD_POLL_S = 0.5
STDERR_TAIL_CHARS = 2000
EXIT_OK = 0

_log = logging.getLogger(__name__)
_live: set[ServerProcess] = set()
_live_lock = threading.Lock()


class ServerProcess:
    """One server child: started with ``start`` (returns the URL it announced), then ``stop``."""

    def __init__(self, name: str, argv: Sequence[str], ready_prefix: str) -> None:
        self.name = name
        self._argv = list(argv)
        self._ready_prefix = ready_prefix
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float) -> str:
        # stderr goes to a file: a pipe nobody drains would block a chatty child.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(  # noqa: S603 - argv is built here, never from input
            self._argv,
            stdin=subprocess.PIPE,  # the child's lifeline: EOF means the parent has gone
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            start_new_session=True,
        )
        with _live_lock:
            _live.add(self)
        try:
            return self._await_ready(timeout_s)
        except BaseException:
            self.stop()
            raise

    def _await_ready(self, timeout_s: float) -> str:
        assert self._proc is not None
        assert self._proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        with selectors.DefaultSelector() as selector:
            selector.register(self._proc.stdout, selectors.EVENT_READ)
            while (remaining := deadline - time.monotonic()) > 0:
                if not selector.select(remaining):
                    continue
                line = self._proc.stdout.readline().decode(errors="replace").strip()
                if line.startswith(self._ready_prefix):
                    return line.removeprefix(self._ready_prefix)
                if not line and self._proc.poll() is not None:
                    break
        raise RuntimeError(f"{self.name} did not start: {self._stderr_tail()}")

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-STDERR_TAIL_CHARS:]

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            # Signal the group only while its leader is unreaped: until then its pid, and so
            # the group id, cannot have been reused by an unrelated process.
            if proc.returncode is None:
                _signal_group(proc.pid, signal.SIGTERM)
                if not _exited_unreaped(proc.pid, grace_s):
                    _log.warning("%s ignored SIGTERM; killing it", self.name)
                _signal_group(proc.pid, signal.SIGKILL)  # also sweeps any straggler
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace_s)
            if proc.stdout is not None:
                proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        with _live_lock:
            _live.discard(self)


def _exited_unreaped(pid: int, timeout_s: float) -> bool:
    """Wait until `pid` has exited, leaving it a zombie so its pid stays reserved."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
        except ChildProcessError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(EXIT_POLL_S)


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


@atexit.register
def _stop_all() -> None:
    with _live_lock:
        children = list(_live)
    for child in children:
        child.stop(grace_s=ATEXIT_GRACE_S)


def moto_argv(python: str) -> list[str]:
    return [python, "-m", __name__, "--serve-moto"]


def _serve_moto() -> int:
    """Child entry point: moto's server on a free loopback port until SIGTERM or stdin EOF."""
    from moto.server import ThreadedMotoServer  # only the child needs moto

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())

    def watch_stdin() -> None:
        sys.stdin.buffer.read()  # returns at EOF: the parent closed the pipe or died
        stop.set()

    threading.Thread(target=watch_stdin, name="stdin-watch", daemon=True).start()
    print(f"{MOTO_READY_PREFIX}http://{host}:{port}", flush=True)
    while not stop.wait(CHILD_POLL_S):
        pass
    server.stop()
    return EXIT_OK


if __name__ == "__main__" and sys.argv[1:] == ["--serve-moto"]:
    sys.exit(_serve_moto())
