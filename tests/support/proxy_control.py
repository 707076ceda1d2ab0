"""HTTP control of running ``TcpProxy`` instances, and a command that starts some for manual runs::

python -m tests.support.proxy_control --proxy sqs=127.0.0.1:5000 --control-port 8800
curl -XPOST 127.0.0.1:8800/proxies/sqs -d '{"mode": "blackhole"}'
curl -XPOST 127.0.0.1:8800/proxies/sqs \\
  -d '{"mode": "delay", "delay_s": 30, "operation": "DeleteMessageBatch"}'
curl 127.0.0.1:8800/proxies
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from dataclasses import asdict
from typing import Any

from aiohttp import web

from tests.support.ports import LOOPBACK
from tests.support.tcp_proxy import Fault, Mode, TcpProxy


def describe(proxy: TcpProxy) -> dict[str, Any]:
    """A JSON-ready view of a proxy's fault and counters."""
    stats = proxy.stats()
    return {
        "address": proxy.address,
        "upstream": f"{proxy.upstream_host}:{proxy.upstream_port}",
        "fault": asdict(proxy.fault),
        "active_connections": proxy.active_connections,
        # Not asdict(stats): it rebuilds a Counter from (key, count) pairs, counting the pairs.
        "stats": {**vars(stats), "accepted": dict(stats.accepted)},
        "operations": proxy.operations(),
    }


def control_app(proxies: dict[str, TcpProxy]) -> web.Application:
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
            operation = body.pop("operation", None)
            fault = Fault(
                Mode(body.pop("mode")),
                operation=None if operation is None else str(operation),
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
        proxies: dict[str, TcpProxy] = {}
        for spec in specs:
            name, _, upstream = spec.partition("=")
            proxies[name] = await stack.enter_async_context(TcpProxy(upstream, name=name))
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
