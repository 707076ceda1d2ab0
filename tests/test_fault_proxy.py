"""The TCP proxy of the bench and the fault suite: operation counts, every fault mode, mode
changes on open connections, the control API, and the proxy on a thread of its own."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import socketserver
import threading
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.amz_target import TargetScanner
from tests.support.proxy_control import control_app
from tests.support.tcp_proxy import Fault, Mode, ProxyThread, TcpProxy

# Short enough to keep the suite quick; nothing asserts an upper bound on any duration.
SHORT_DROP_S = 0.2
DELAY_S = 0.3
# Longer than any test here runs: an answer held back this long is never seen.
HELD_BACK_S = 600.0


class EchoServer:
    """An upstream that echoes every byte back and counts its connections."""

    def __init__(self) -> None:
        self.connections = 0
        self._server: asyncio.Server | None = None

    async def _echo(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._echo, "127.0.0.1", 0)
        return f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()


@pytest.fixture
async def echo() -> AsyncIterator[tuple[EchoServer, str]]:
    server = EchoServer()
    async with server as address:
        yield server, address


@pytest.fixture
async def proxy(echo: tuple[EchoServer, str]) -> AsyncIterator[TcpProxy]:
    async with TcpProxy(echo[1], name="echo") as started:
        yield started


async def _connect(proxy: TcpProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", proxy.port)


async def _round_trip(proxy: TcpProxy, payload: bytes) -> bytes:
    reader, writer = await _connect(proxy)
    writer.write(payload)
    writer.write_eof()
    try:
        return await reader.read()
    finally:
        writer.close()


def _call(operation: str, body: bytes = b"{}") -> bytes:
    """An SQS call on the AWS JSON protocol, as botocore writes it."""
    return (
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/x-amz-json-1.0\r\n"
        b"X-Amz-Target: AmazonSQS." + operation.encode() + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


CALLS = [_call("ReceiveMessage"), _call("DeleteMessageBatch"), _call("ReceiveMessage")]


# -- counting ------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(b"".join(CALLS))), max_size=12))
def test_the_scanner_counts_each_call_once_however_the_stream_is_split(cuts: list[int]) -> None:
    stream = b"".join(CALLS)
    bounds = [0, *sorted(cuts), len(stream)]
    scanner = TargetScanner()
    found = [op for a, b in itertools.pairwise(bounds) for op in scanner.feed(stream[a:b])]
    assert found == ["ReceiveMessage", "DeleteMessageBatch", "ReceiveMessage"]


def test_the_scanner_reads_the_header_in_any_case_and_ignores_lookalikes_in_bodies() -> None:
    scanner = TargetScanner()
    stream = _call("SendMessage").replace(b"X-Amz-Target", b"x-amz-TARGET") + b"x-amz-target"
    assert scanner.feed(stream) == ["SendMessage"]
    assert scanner.feed(b"-id: 1\r\n") == []


async def test_the_proxy_counts_the_calls_it_forwards_by_operation(proxy: TcpProxy) -> None:
    # Given three calls on one kept-alive connection, the second one split mid-header
    reader, writer = await _connect(proxy)
    stream = b"".join(CALLS)
    split = stream.index(b"Amz-Target: AmazonSQS.Delete")
    for part in (stream[:split], stream[split:]):
        writer.write(part)
        await writer.drain()
        await asyncio.sleep(0.01)
    assert await reader.readexactly(len(stream)) == stream

    # Then each operation is counted as often as it was called
    assert proxy.operations() == {"ReceiveMessage": 2, "DeleteMessageBatch": 1}

    # And a reset hands over the counts and starts again from zero
    assert proxy.reset_operations() == {"ReceiveMessage": 2, "DeleteMessageBatch": 1}
    writer.write(_call("ChangeMessageVisibility"))
    await reader.readexactly(len(_call("ChangeMessageVisibility")))
    assert proxy.operations() == {"ChangeMessageVisibility": 1}
    writer.close()


async def test_calls_are_counted_while_delayed_but_not_when_dropped(proxy: TcpProxy) -> None:
    proxy.set_mode(Mode.DELAY, delay_s=0.05)
    assert await _round_trip(proxy, _call("ReceiveMessage")) == _call("ReceiveMessage")
    proxy.set_mode(Mode.DROP, drop_after_s=SHORT_DROP_S)
    assert await _round_trip(proxy, _call("SendMessage")) == b""
    assert proxy.operations() == {"ReceiveMessage": 1}


class _BlockingEcho(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


def test_a_proxy_on_its_own_thread_serves_and_counts_callers_that_block() -> None:
    # Given an upstream and a client that both block, and no event loop in this thread
    with (
        socketserver.ThreadingTCPServer(("127.0.0.1", 0), _BlockingEcho) as upstream,
        ProxyThread(TcpProxy(f"127.0.0.1:{upstream.server_address[1]}")) as proxy,
    ):
        threading.Thread(target=upstream.serve_forever, daemon=True).start()
        try:
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
                for call in CALLS:
                    sock.sendall(call)
                    received = b""
                    while len(received) < len(call):
                        received += sock.recv(65536)
                    assert received == call
        finally:
            upstream.shutdown()
        # Then the proxy answered and counted from its own loop
        assert proxy.operations() == {"ReceiveMessage": 2, "DeleteMessageBatch": 1}
        assert proxy.stats().accepted[Mode.PASS] == 1


# -- fault modes ---------------------------------------------------------------------------


async def test_pass_forwards_bytes_both_ways_unchanged(proxy: TcpProxy) -> None:
    assert await _round_trip(proxy, b"hello through the proxy") == b"hello through the proxy"
    stats = proxy.stats()
    assert stats.accepted[Mode.PASS] == 1
    assert stats.bytes_up == stats.bytes_down == len(b"hello through the proxy")


@settings(max_examples=25, deadline=None)
@given(payload=st.binary(min_size=1, max_size=300_000))
async def test_any_payload_passes_through_byte_for_byte(payload: bytes) -> None:
    async with EchoServer() as address, TcpProxy(address) as proxy:
        assert await _round_trip(proxy, payload) == payload


async def test_refuse_resets_new_connections_without_reaching_the_upstream(
    echo: tuple[EchoServer, str], proxy: TcpProxy
) -> None:
    proxy.set_mode(Mode.REFUSE)
    reader, writer = await _connect(proxy)
    writer.write(b"anyone there?")
    with pytest.raises(ConnectionResetError):
        await reader.read()
    writer.close()
    assert echo[0].connections == 0
    assert proxy.stats().accepted[Mode.REFUSE] == 1


async def test_drop_swallows_the_request_and_closes_without_an_answer(
    echo: tuple[EchoServer, str], proxy: TcpProxy
) -> None:
    proxy.set_mode(Mode.DROP, drop_after_s=SHORT_DROP_S)
    reader, writer = await _connect(proxy)
    writer.write(b"GET / HTTP/1.1\r\n\r\n")
    assert await reader.read() == b""
    writer.close()
    assert echo[0].connections == 0


async def test_blackhole_holds_connections_until_the_mode_changes(
    echo: tuple[EchoServer, str], proxy: TcpProxy
) -> None:
    proxy.set_mode(Mode.BLACKHOLE)
    reader, writer = await _connect(proxy)
    writer.write(b"ping")
    await writer.drain()
    await proxy.wait_for_connections()

    assert proxy.set_mode(Mode.PASS) == 1
    with pytest.raises(ConnectionResetError):
        await reader.read()
    writer.close()
    assert echo[0].connections == 0
    assert await _round_trip(proxy, b"back") == b"back"


async def test_delay_holds_every_answer_back_by_at_least_the_delay(proxy: TcpProxy) -> None:
    proxy.set_mode(Mode.DELAY, delay_s=DELAY_S)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await _round_trip(proxy, b"slow" * 50_000) == b"slow" * 50_000
    assert loop.time() - started >= DELAY_S


async def test_a_delay_for_one_operation_holds_back_only_the_answers_to_its_calls(
    proxy: TcpProxy,
) -> None:
    # Given deletes answered late, and a delete and a receive each on a connection of its own
    proxy.set_mode(Mode.DELAY, delay_s=HELD_BACK_S, operation="DeleteMessageBatch", cut=False)
    deleting = asyncio.create_task(_round_trip(proxy, _call("DeleteMessageBatch")))
    receiving = asyncio.create_task(_round_trip(proxy, _call("ReceiveMessage")))

    # When the first answer arrives
    done, _ = await asyncio.wait({deleting, receiving}, return_when=asyncio.FIRST_COMPLETED)

    # Then it is the receive's, whole, while the delete's is still held back
    assert done == {receiving}
    assert receiving.result() == _call("ReceiveMessage")
    assert proxy.operations() == {"DeleteMessageBatch": 1, "ReceiveMessage": 1}
    proxy.set_mode(Mode.PASS)  # cuts the held connection
    with pytest.raises(ConnectionResetError):
        await deleting


async def test_a_delay_for_one_operation_follows_the_calls_on_a_kept_alive_connection(
    proxy: TcpProxy,
) -> None:
    # Given deletes answered DELAY_S late
    proxy.set_mode(Mode.DELAY, delay_s=DELAY_S, operation="DeleteMessageBatch")
    reader, writer = await _connect(proxy)
    loop = asyncio.get_running_loop()
    try:
        for operation in ("ReceiveMessage", "DeleteMessageBatch", "ReceiveMessage"):
            # When each call goes out on the same connection once the last one was answered
            started = loop.time()
            writer.write(_call(operation))
            assert await reader.readexactly(len(_call(operation))) == _call(operation)
            if operation == "DeleteMessageBatch":
                # Then the delete's answer, and only it, is late by at least the delay
                assert loop.time() - started >= DELAY_S
    finally:
        writer.close()
    assert proxy.fault == Fault(Mode.DELAY, delay_s=DELAY_S, operation="DeleteMessageBatch")


async def test_a_mode_change_cuts_open_connections_unless_told_not_to(proxy: TcpProxy) -> None:
    # Given two kept-alive connections that have each completed an exchange
    kept = [await _connect(proxy) for _ in range(2)]
    for reader, writer in kept:
        writer.write(b"x")
        assert await reader.readexactly(1) == b"x"

    # When the mode changes without cutting, they keep working
    assert proxy.set_mode(Mode.REFUSE, cut=False) == 0
    reader, writer = kept[0]
    writer.write(b"y")
    assert await reader.readexactly(1) == b"y"

    # Then a cutting change resets both
    assert proxy.set_mode(Mode.REFUSE) == 2
    for reader, writer in kept:
        with pytest.raises(ConnectionResetError):
            await reader.read()
        writer.close()
    assert proxy.stats().cut == 2


async def test_an_unreachable_upstream_resets_the_client() -> None:
    async with EchoServer() as address:
        pass  # the port is free again: nothing listens there
    async with TcpProxy(address) as proxy:
        reader, writer = await _connect(proxy)
        with pytest.raises(ConnectionResetError):
            await reader.read()
        writer.close()
        assert proxy.stats().upstream_failures == 1


async def test_closing_the_proxy_ends_held_connections(echo: tuple[EchoServer, str]) -> None:
    proxy = TcpProxy(echo[1])
    await proxy.start()
    proxy.set_mode(Mode.BLACKHOLE)
    reader, writer = await _connect(proxy)
    await proxy.wait_for_connections()
    await proxy.aclose()
    with pytest.raises(ConnectionResetError):
        await reader.read()
    writer.close()


def test_a_fault_rejects_negative_durations() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        Fault(Mode.DELAY, delay_s=-1)


async def test_the_control_endpoint_switches_modes_and_reports_counters(
    proxy: TcpProxy,
) -> None:
    runner = web.AppRunner(control_app({"echo": proxy}))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        base = site.name
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{base}/proxies/echo", json={"mode": "blackhole"}) as resp:
                assert resp.status == 200
                assert (await resp.json())["fault"]["mode"] == "blackhole"
            assert proxy.fault.mode is Mode.BLACKHOLE

            async with session.post(f"{base}/proxies/echo", json={"mode": "sideways"}) as resp:
                assert resp.status == 400
            async with session.post(f"{base}/proxies/nope", json={"mode": "pass"}) as resp:
                assert resp.status == 404

            payload = {
                "mode": "delay",
                "delay_s": 0.05,
                "operation": "ReceiveMessage",
                "cut": False,
            }
            async with session.post(f"{base}/proxies/echo", json=payload) as resp:
                assert resp.status == 200
            assert await _round_trip(proxy, _call("ReceiveMessage")) == _call("ReceiveMessage")
            async with session.get(f"{base}/proxies") as resp:
                assert resp.status == 200
                listed = await resp.json()
        assert listed["echo"]["fault"] == {
            "mode": "delay",
            "delay_s": 0.05,
            "drop_after_s": 10.0,
            "operation": "ReceiveMessage",
        }
        assert listed["echo"]["address"] == proxy.address
        assert listed["echo"]["stats"]["accepted"] == {"delay": 1}
        assert listed["echo"]["operations"] == {"ReceiveMessage": 1}
    finally:
        await runner.cleanup()
