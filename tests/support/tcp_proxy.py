"""A TCP proxy for loopback endpoints: it counts AWS API calls by operation and injects faults,
switchable while traffic flows.

The worker under test (or a peer the bench compares it with) is a separate process that reaches
SQS and Cognito through a proxy. Whatever the mode, the proxy counts the calls it forwards by
the operation in their ``X-Amz-Target`` header (``tests.support.amz_target``): the bench's
requests per message. The fault suite flips a proxy's mode to stage an outage without touching
the worker or the service behind it; a mode change cuts the connections already open (by
default) because HTTP clients keep connections alive and would otherwise never meet the new
fault. A delay can be kept to the answers of one operation (a slow ``DeleteMessageBatch``
while receives go on): HTTP/1.1 clients send a call on a connection only once the previous
one was answered, so what comes back on a connection answers the last call sent on it.

A ``TcpProxy`` is driven from the event loop it was started on; ``ProxyThread`` gives it a loop
of its own, for callers that block. ``tests.support.proxy_control`` switches modes over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Self

from tests.support.amz_target import TargetScanner
from tests.support.ports import LOOPBACK

CHUNK_BYTES = 64 * 1024
# Chunks held back by DELAY per connection: enough for any HTTP response, and a bound so a
# fast upstream meets backpressure instead of filling memory.
DELAY_BUFFER_CHUNKS = 256
DEFAULT_DROP_AFTER_S = 10.0
UPSTREAM_CONNECT_TIMEOUT_S = 5.0
THREAD_START_TIMEOUT_S = 10.0
# SO_LINGER on with a zero timeout turns close() into a TCP reset.
_LINGER_RESET = struct.pack("ii", 1, 0)


class Mode(StrEnum):
    """What the proxy does with a connection."""

    PASS = "pass"  # forward both ways
    DELAY = "delay"  # forward, with chunks from the upstream held back by delay_s
    REFUSE = "refuse"  # reset each new connection at once
    DROP = "drop"  # read and discard the request, never answer, close after drop_after_s
    BLACKHOLE = "blackhole"  # accept, never read or answer, hold until cut


@dataclass(frozen=True)
class Fault:
    """A mode and its parameters; the default forwards untouched. With `operation`, DELAY
    holds back only the answers to calls of that operation (``DeleteMessageBatch``)."""

    mode: Mode = Mode.PASS
    delay_s: float = 0.0
    drop_after_s: float = DEFAULT_DROP_AFTER_S
    operation: str | None = None

    def __post_init__(self) -> None:
        if self.delay_s < 0 or self.drop_after_s < 0:
            raise ValueError("delay_s and drop_after_s must not be negative")


@dataclass
class ProxyStats:
    """Counters since the proxy started."""

    accepted: Counter[str] = field(default_factory=Counter)  # connections, by mode at accept
    cut: int = 0  # connections closed by a mode change
    upstream_failures: int = 0  # the upstream refused or timed out a connection
    bytes_up: int = 0
    bytes_down: int = 0


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset, as a crashed peer or a firewall rejecting would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    writer.transport.abort()


class _Connection:
    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        # The operation of the last call sent upstream: what the upstream is answering now.
        self.last_operation: str | None = None
        self.was_reset = False
        self.ended = asyncio.Event()

    def reset(self) -> None:
        """Reset both sides; the copies see the end of their streams and return."""
        self.was_reset = True
        self.ended.set()
        _reset(self.client)
        if self.upstream is not None:
            self.upstream.transport.abort()

    def cut(self) -> None:
        # No task cancellation: on Python 3.11 asyncio logs a cancelled connection handler
        # as an error. Resetting ends every read, write and wait of the connection.
        self.reset()


class TcpProxy:
    """Listen on loopback and forward to ``upstream`` ("host:port"), subject to the current fault.

    Use as ``async with TcpProxy("127.0.0.1:5000") as proxy:`` and give clients ``proxy.url``.
    """

    def __init__(self, upstream: str, *, name: str = "proxy", port: int = 0) -> None:
        host, _, upstream_port = upstream.rpartition(":")
        self.name = name
        self.upstream_host = host or LOOPBACK
        self.upstream_port = int(upstream_port)
        self._listen_port = port
        self._fault = Fault()
        self._stats = ProxyStats()
        # Read and reset from other threads (ProxyThread): guarded by a lock.
        self._operations: Counter[str] = Counter()
        self._operations_lock = threading.Lock()
        self._connections: set[_Connection] = set()
        self._connections_changed = asyncio.Condition()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, LOOPBACK, self._listen_port)

    async def aclose(self) -> None:
        if self._server is None:
            return
        self._server.close()
        self._cut_all()
        async with self._connections_changed:
            await self._connections_changed.wait_for(lambda: not self._connections)
        await self._server.wait_closed()
        self._server = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def fault(self) -> Fault:
        return self._fault

    @property
    def active_connections(self) -> int:
        return len(self._connections)

    async def wait_for_connections(self, count: int = 1) -> None:
        """Return once at least ``count`` connections are open."""
        async with self._connections_changed:
            await self._connections_changed.wait_for(lambda: len(self._connections) >= count)

    def stats(self) -> ProxyStats:
        """A copy of the counters."""
        return replace(self._stats, accepted=Counter(self._stats.accepted))

    def operations(self) -> dict[str, int]:
        """Calls forwarded since the last reset, by the operation in their ``X-Amz-Target``."""
        with self._operations_lock:
            return dict(self._operations)

    def reset_operations(self) -> dict[str, int]:
        """Zero the operation counts; returns what they held."""
        with self._operations_lock:
            counts = dict(self._operations)
            self._operations.clear()
            return counts

    def set_fault(self, fault: Fault, *, cut: bool = True) -> int:
        """Apply ``fault`` to new connections; with ``cut``, reset the open ones. Returns cuts."""
        self._fault = fault
        return self._cut_all() if cut else 0

    def set_mode(
        self,
        mode: Mode | str,
        *,
        cut: bool = True,
        operation: str | None = None,
        **params: float,
    ) -> int:
        """Shorthand: ``set_mode("delay", delay_s=12, operation="DeleteMessageBatch")``."""
        return self.set_fault(Fault(Mode(mode), operation=operation, **params), cut=cut)

    def _cut_all(self) -> int:
        connections = list(self._connections)
        for conn in connections:
            conn.cut()
        self._stats.cut += len(connections)
        return len(connections)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        fault = self._fault
        self._stats.accepted[fault.mode] += 1
        conn = _Connection(writer)
        self._connections.add(conn)
        async with self._connections_changed:
            self._connections_changed.notify_all()
        try:
            if fault.mode in (Mode.PASS, Mode.DELAY):
                await self._forward(conn, reader)
            elif fault.mode is Mode.DROP:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(fault.drop_after_s):
                        while await reader.read(CHUNK_BYTES):
                            pass
            elif fault.mode is Mode.BLACKHOLE:
                await conn.ended.wait()
        except OSError:
            conn.reset()  # a peer went away mid-stream
        finally:
            self._connections.discard(conn)
            async with self._connections_changed:
                self._connections_changed.notify_all()
            if fault.mode is Mode.REFUSE:
                conn.reset()
            elif not conn.was_reset:
                # A graceful close: a reset would discard response bytes not yet sent.
                writer.close()
                if conn.upstream is not None:
                    conn.upstream.close()

    async def _forward(self, conn: _Connection, client_reader: asyncio.StreamReader) -> None:
        try:
            async with asyncio.timeout(UPSTREAM_CONNECT_TIMEOUT_S):
                up_reader, conn.upstream = await asyncio.open_connection(
                    self.upstream_host, self.upstream_port
                )
        except (OSError, TimeoutError):
            self._stats.upstream_failures += 1
            conn.reset()
            return
        async with asyncio.TaskGroup() as group:
            group.create_task(self._guarded(conn, self._copy_up(client_reader, conn)))
            group.create_task(self._guarded(conn, self._copy_down(up_reader, conn)))

    @staticmethod
    async def _guarded(conn: _Connection, copy: Coroutine[Any, Any, None]) -> None:
        # One side failing resets both, so the other copy ends instead of waiting forever on a
        # kept-alive peer (and the task group sees no error to wrap).
        try:
            await copy
        except* OSError:
            conn.reset()

    async def _copy_up(self, src: asyncio.StreamReader, conn: _Connection) -> None:
        dst = conn.upstream
        assert dst is not None
        scanner = TargetScanner()
        while data := await src.read(CHUNK_BYTES):
            if operations := scanner.feed(data):
                with self._operations_lock:
                    self._operations.update(operations)
                # Before the call goes out, so its answer meets the delay meant for it.
                conn.last_operation = operations[-1]
            dst.write(data)
            await dst.drain()
            self._stats.bytes_up += len(data)
        if dst.can_write_eof():
            dst.write_eof()

    def _current_delay_s(self, conn: _Connection) -> float:
        fault = self._fault
        if fault.mode is not Mode.DELAY:
            return 0.0
        if fault.operation is not None and fault.operation != conn.last_operation:
            return 0.0
        return fault.delay_s

    async def _copy_down(self, src: asyncio.StreamReader, conn: _Connection) -> None:
        # Each chunk is stamped with its due time as it arrives, so a response split into many
        # chunks is late by delay_s once, not once per chunk.
        loop = asyncio.get_running_loop()
        dst = conn.client
        held: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(DELAY_BUFFER_CHUNKS)

        async def read_side() -> None:
            while data := await src.read(CHUNK_BYTES):
                await held.put((loop.time() + self._current_delay_s(conn), data))
            await held.put((loop.time() + self._current_delay_s(conn), b""))

        async with asyncio.TaskGroup() as group:
            reading = group.create_task(read_side())
            while True:
                due, data = await held.get()
                if due > loop.time():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout_at(due):
                            await conn.ended.wait()  # a reset ends the wait early
                if not data or conn.ended.is_set():
                    break
                dst.write(data)
                await dst.drain()
                self._stats.bytes_down += len(data)
            reading.cancel()  # it may be blocked on a full buffer nobody will drain
        if dst.can_write_eof():
            dst.write_eof()


class ProxyThread:
    """A ``TcpProxy`` on an event loop of its own, in a thread, so that a caller that blocks
    cannot stall the traffic through it: ``with ProxyThread(TcpProxy(...)) as proxy:``.

    Read its counters from any thread; change its fault only from its own loop.
    """

    def __init__(self, proxy: TcpProxy) -> None:
        self.proxy = proxy
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self) -> TcpProxy:
        self._thread = threading.Thread(
            target=self._run, name=f"{self.proxy.name}-proxy", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(THREAD_START_TIMEOUT_S) or self._error is not None:
            raise RuntimeError(f"the {self.proxy.name} proxy did not start: {self._error!r}")
        return self.proxy

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(THREAD_START_TIMEOUT_S)
        self._thread = None

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start(); the thread must not die silently
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with self.proxy:
            self._ready.set()
            await self._stop.wait()
