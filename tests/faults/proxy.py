"""A fault-injecting TCP proxy for loopback endpoints, switchable while traffic flows.

The worker under test is a separate process that reaches SQS and Cognito through one proxy
each; the harness flips a proxy's mode to stage an outage without touching the worker or the
service behind it. A mode change cuts the connections already open (by default) because HTTP
clients keep connections alive and would otherwise never meet the new fault.

Control it in-process (``FaultProxy.set_fault``) or, for manual runs, over HTTP::

    python -m tests.faults.proxy --proxy sqs=127.0.0.1:5000 --control-port 8800
    curl -XPOST 127.0.0.1:8800/proxies/sqs -d '{"mode": "blackhole"}'
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import struct
from collections import Counter
from collections.abc import Coroutine
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import Any, Self

from aiohttp import web

LOOPBACK = "127.0.0.1"
CHUNK_BYTES = 64 * 1024
# Chunks held back by DELAY per connection: enough for any HTTP response, and a bound so a
# fast upstream meets backpressure instead of filling memory.
DELAY_BUFFER_CHUNKS = 256
DEFAULT_DROP_AFTER_S = 10.0
UPSTREAM_CONNECT_TIMEOUT_S = 5.0
# SO_LINGER on with a zero timeout turns close() into a TCP reset.
_LINGER_RESET = struct.pack("ii", 1, 0)


class Mode(StrEnum):
    """What the proxy does with a connection."""

    PASS = "pass"  # forward both ways
    DELAY = "delay"  # forward, with every chunk from the upstream held back by delay_s
    REFUSE = "refuse"  # reset each new connection at once
    DROP = "drop"  # read and discard the request, never answer, close after drop_after_s
    BLACKHOLE = "blackhole"  # accept, never read or answer, hold until cut


@dataclass(frozen=True)
class Fault:
    """A mode and its parameters; the default forwards untouched."""

    mode: Mode = Mode.PASS
    delay_s: float = 0.0
    drop_after_s: float = DEFAULT_DROP_AFTER_S

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


class FaultProxy:
    """Listen on loopback and forward to ``upstream`` ("host:port"), subject to the current fault.

    Use as ``async with FaultProxy("127.0.0.1:5000") as proxy:`` and give clients
    ``proxy.url``. Must be driven from the event loop it was started on.
    """

    def __init__(self, upstream: str, *, name: str = "proxy", port: int = 0) -> None:
        host, _, upstream_port = upstream.rpartition(":")
        self.name = name
        self.upstream_host = host or LOOPBACK
        self.upstream_port = int(upstream_port)
        self._listen_port = port
        self._fault = Fault()
        self._stats = ProxyStats()
        self._connections: set[_Connection] = set()
        self._connections_changed = asyncio.Condition()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
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
        snapshot = ProxyStats(**asdict(self._stats))
        snapshot.accepted = Counter(self._stats.accepted)
        return snapshot

    def set_fault(self, fault: Fault, *, cut: bool = True) -> int:
        """Apply ``fault`` to new connections; with ``cut``, reset the open ones. Returns cuts."""
        self._fault = fault
        return self._cut_all() if cut else 0

    def set_mode(self, mode: Mode | str, *, cut: bool = True, **params: float) -> int:
        """Shorthand: ``set_mode("delay", delay_s=12)``."""
        return self.set_fault(Fault(Mode(mode), **params), cut=cut)

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
            group.create_task(self._guarded(conn, self._copy_up(client_reader, conn.upstream)))
            group.create_task(self._guarded(conn, self._copy_down(up_reader, conn)))

    @staticmethod
    async def _guarded(conn: _Connection, copy: Coroutine[Any, Any, None]) -> None:
        # One side failing resets both, so the other copy ends instead of waiting forever on a
        # kept-alive peer (and the task group sees no error to wrap).
        try:
            await copy
        except* OSError:
            conn.reset()

    async def _copy_up(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        while data := await src.read(CHUNK_BYTES):
            dst.write(data)
            await dst.drain()
            self._stats.bytes_up += len(data)
        if dst.can_write_eof():
            dst.write_eof()

    def _current_delay_s(self) -> float:
        fault = self._fault
        return fault.delay_s if fault.mode is Mode.DELAY else 0.0

    async def _copy_down(self, src: asyncio.StreamReader, conn: _Connection) -> None:
        # Each chunk is stamped with its due time as it arrives, so a response split into many
        # chunks is late by delay_s once, not once per chunk.
        loop = asyncio.get_running_loop()
        dst = conn.client
        held: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(DELAY_BUFFER_CHUNKS)

        async def read_side() -> None:
            while data := await src.read(CHUNK_BYTES):
                await held.put((loop.time() + self._current_delay_s(), data))
            await held.put((loop.time() + self._current_delay_s(), b""))

        async with asyncio.TaskGroup() as group:
            reading = group.create_task(read_side())
            while True:
                due, data = await held.get()
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


def describe(proxy: FaultProxy) -> dict[str, Any]:
    """A JSON-ready view of a proxy's fault and counters."""
    return {
        "address": proxy.address,
        "upstream": f"{proxy.upstream_host}:{proxy.upstream_port}",
        "fault": asdict(proxy.fault),
        "active_connections": proxy.active_connections,
        "stats": asdict(proxy.stats()),
    }


def control_app(proxies: dict[str, FaultProxy]) -> web.Application:
    """HTTP control: ``GET /proxies``; ``POST /proxies/{name}`` with a Fault as JSON (+ "cut")."""

    async def list_proxies(_: web.Request) -> web.Response:
        return web.json_response({name: describe(p) for name, p in proxies.items()})

    async def change(request: web.Request) -> web.Response:
        proxy = proxies.get(request.match_info["name"])
        if proxy is None:
            raise web.HTTPNotFound(text="no such proxy")
        try:
            body = await request.json()
            cut = bool(body.pop("cut", True))
            fault = Fault(
                Mode(body.pop("mode")),
                **{k: float(v) for k, v in body.items()},
            )
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise web.HTTPBadRequest(text=f"bad fault: {exc!r}") from exc
        cuts = proxy.set_fault(fault, cut=cut)
        return web.json_response({**describe(proxy), "cut_now": cuts})

    app = web.Application()
    app.router.add_get("/proxies", list_proxies)
    app.router.add_post("/proxies/{name}", change)
    return app


async def _serve_forever(specs: list[str], control_port: int) -> None:
    async with contextlib.AsyncExitStack() as stack:
        proxies: dict[str, FaultProxy] = {}
        for spec in specs:
            name, _, upstream = spec.partition("=")
            proxies[name] = await stack.enter_async_context(FaultProxy(upstream, name=name))
            print(f"{name}: {proxies[name].url} -> {upstream}", flush=True)
        runner = web.AppRunner(control_app(proxies))
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, LOOPBACK, control_port)
        await site.start()
        print(f"control: {site.name}", flush=True)
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--proxy", action="append", required=True, metavar="NAME=HOST:PORT")
    parser.add_argument("--control-port", type=int, default=0)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(args.proxy, args.control_port))


if __name__ == "__main__":
    main()
