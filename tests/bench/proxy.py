"""A loopback TCP relay in front of the SQS emulator that counts API calls by operation.

Every SQS call on the JSON protocol carries an ``X-Amz-Target: AmazonSQS.<Operation>`` header,
so scanning the client-to-server byte stream for that header counts requests of any client
(botocore, the AWS SDK for JavaScript) without parsing HTTP. The relay runs its own event loop
in a thread, so the benchmark's blocking code cannot stall the traffic it measures.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter
from types import TracebackType
from typing import Self

LOOPBACK = "127.0.0.1"
TARGET_HEADER = b"x-amz-target:"
READ_CHUNK = 64 * 1024
# A header line longer than this is not an SQS target: stop waiting for its end.
MAX_PENDING = 512
START_TIMEOUT_S = 10.0


class TargetScanner:
    """Finds ``X-Amz-Target`` header values in a byte stream that arrives in arbitrary chunks."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> list[str]:
        """Operations whose header line completed in this chunk (``ReceiveMessage``, ...)."""
        data = self._pending + chunk
        lower = data.lower()
        operations: list[str] = []
        pos = 0
        while True:
            start = lower.find(TARGET_HEADER, pos)
            if start < 0:
                # Keep a tail that may hold the beginning of a header split across chunks.
                self._pending = data[max(pos, len(data) - len(TARGET_HEADER) + 1) :]
                return operations
            end = data.find(b"\r\n", start)
            if end < 0:
                self._pending = data[start:] if len(data) - start <= MAX_PENDING else b""
                return operations
            value = data[start + len(TARGET_HEADER) : end].strip().decode("ascii", "replace")
            operations.append(value.rpartition(".")[2])
            pos = end


class CountingProxy:
    """``with CountingProxy(upstream_host, upstream_port) as proxy:`` relays ``proxy.url``."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._relays: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("the proxy is not running")
        return f"http://{LOOPBACK}:{self._port}"

    def counts(self) -> dict[str, int]:
        """Requests seen since the last reset, by operation."""
        with self._lock:
            return dict(self._counts)

    def reset(self) -> dict[str, int]:
        """Zero the counters; returns what they held."""
        with self._lock:
            counts = dict(self._counts)
            self._counts.clear()
            return counts

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._run, name="sqs-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S) or self._port is None:
            raise RuntimeError(f"the SQS proxy did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(START_TIMEOUT_S)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
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
        server = await asyncio.start_server(self._relay, LOOPBACK, 0)
        self._port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
            # Close open connections ourselves so no relay task is cancelled mid-write.
            for writer in list(self._writers):
                writer.close()
            if self._relays:
                await asyncio.wait(self._relays, timeout=START_TIMEOUT_S)

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._relays.add(task)
        writers = [client_w]
        self._writers.add(client_w)
        try:
            server_r, server_w = await asyncio.open_connection(*self._upstream)
            writers.append(server_w)
            self._writers.add(server_w)
            await asyncio.gather(
                self._pump(client_r, server_w, TargetScanner()),
                self._pump(server_r, client_w, None),
                return_exceptions=True,
            )
        except OSError:
            pass  # upstream refused: the client sees its connection close
        finally:
            for writer in writers:
                writer.close()
                self._writers.discard(writer)
            self._relays.discard(task)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        scanner: TargetScanner | None,
    ) -> None:
        try:
            while chunk := await reader.read(READ_CHUNK):
                if scanner is not None and (operations := scanner.feed(chunk)):
                    with self._lock:
                        self._counts.update(operations)
                writer.write(chunk)
                await writer.drain()
        finally:
            with contextlib.suppress(OSError):
                if writer.can_write_eof():
                    writer.write_eof()
