"""A Cognito threat-protection emulator speaking the real wire protocol (AWS JSON 1.1, SigV4).

moto has no AdminUpdateAuthEventFeedback, so real aiobotocore clients are pointed here with
AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER. It checks signatures, validates against botocore's
service model, keeps pools per region, enforces the per-region and per-user write quotas, and
can add latency and faults. Control endpoints live under ``/_emulator/`` (unsigned JSON).

Run ``python -m feedback_local.emulator --port 0``: it prints ``EMULATOR_URL=http://127.0.0.1:N``
once listening and stops on SIGTERM/SIGINT. In-process: ``async with Emulator() as emu``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import socket
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from feedback_local.emulator_config import ConfigValueError, EmulatorConfig
from feedback_local.emulator_ops import CognitoService
from feedback_local.emulator_quota import DEFAULT_STATS_WINDOW_S, Quotas, Stats
from feedback_local.emulator_sigv4 import authenticate
from feedback_local.emulator_state import SeedError, Store
from feedback_local.emulator_wire import (
    DROPPED_CONNECTION,
    HTTP_CLIENT_ERROR,
    HTTP_SERVER_ERROR,
    INTERNAL_ERROR,
    SERIALIZATION,
    UNKNOWN_OPERATION,
    UNTYPED_THROTTLE,
    ApiError,
    json_response,
    untyped_throttle_response,
)
from worker import awsmodel

LOOPBACK = "127.0.0.1"
READY_PREFIX = "EMULATOR_URL="
CONTROL = "/_emulator"
SHUTDOWN_TIMEOUT_S = 1.0
EXIT_OK = 0
EXIT_CANNOT_LISTEN = 1


def _control_error(message: str) -> web.Response:
    return web.json_response({"error": message}, status=HTTP_CLIENT_ERROR)


class Emulator:
    """The emulator's state and HTTP server; ``async with Emulator(config) as emu: emu.url``."""

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        port: int = 0,
        stats_window_s: int = DEFAULT_STATS_WINDOW_S,
    ) -> None:
        self.initial_config = config or EmulatorConfig()
        self.config = self.initial_config
        self.store = Store()
        self.stats = Stats(stats_window_s)
        self._quotas = Quotas(self.config)
        self._service = CognitoService(self.store, self._quotas)
        self._port = port
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._target_prefix = awsmodel.target_prefix()

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the emulator is not running")
        return self._url

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/", self._api)
        app.router.add_post(f"{CONTROL}/seed", self._seed)
        app.router.add_get(f"{CONTROL}/config", self._get_config)
        app.router.add_post(f"{CONTROL}/config", self._set_config)
        app.router.add_post(f"{CONTROL}/reset", self._reset)
        app.router.add_get(f"{CONTROL}/stats", self._stats)
        app.router.add_get(f"{CONTROL}/writes", self._writes)
        app.router.add_get(f"{CONTROL}/health", self._health)
        return app

    async def start(self) -> str:
        self._runner = web.AppRunner(
            self.app(), access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT_S
        )
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((LOOPBACK, self._port))
        except OSError:
            sock.close()
            await self._runner.cleanup()
            raise
        await web.SockSite(self._runner, sock).start()
        self._url = f"http://{LOOPBACK}:{sock.getsockname()[1]}"
        return self._url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._url = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def configure(self, changes: Mapping[str, Any]) -> EmulatorConfig:
        self.config = self.config.updated(changes)
        self._quotas.reconfigure(self.config)
        return self.config

    def reset(self, *, clear_data: bool = False) -> None:
        self.config = self.initial_config
        self._quotas.reconfigure(self.config)
        self.stats.clear()
        if clear_data:
            self.store.clear()

    # -- the emulated API ------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.StreamResponse:
        prefix, _, operation = request.headers.get("X-Amz-Target", "").partition(".")
        known = prefix == self._target_prefix and self._service.supports(operation)
        op_name = operation if known else None
        region: str | None = None
        config = self.config
        try:
            body = await request.read()
            headers: dict[str, list[str]] = {}
            for name, value in request.headers.items():
                headers.setdefault(name.lower(), []).append(value)
            caller = authenticate(
                method=request.method,
                url=f"{request.scheme}://{request.host}{request.raw_path}",
                headers=headers,
                body=body,
                known_keys=config.known_keys,
                denied_access_keys=config.denied_access_keys,
                action=operation,
            )
            region = caller.region
            _require_known(known, operation)
            if config.latency_s or config.latency_jitter_s:
                await asyncio.sleep(config.latency_s + random.uniform(0, config.latency_jitter_s))
            faulty = operation == awsmodel.FEEDBACK_OPERATION and config.fault_total > 0
            if faulty and (faulted := self._inject_fault(request, region, config)) is not None:
                return faulted
            result = self._service.call(operation, caller, _parse_json(body), time.monotonic())
        except ApiError as error:
            self.stats.record(op_name, region, error.code)
            return error.response()
        self.stats.record(op_name, region, None)
        return json_response(result)

    def _inject_fault(
        self, request: web.Request, region: str, config: EmulatorConfig
    ) -> web.Response | None:
        # One draw split into three ranges keeps each kind at its configured fraction.
        draw = random.random()
        op = awsmodel.FEEDBACK_OPERATION
        if draw < config.fault_internal_error:
            self.stats.record(op, region, INTERNAL_ERROR)
            return ApiError(INTERNAL_ERROR, "Internal server error", HTTP_SERVER_ERROR).response()
        draw -= config.fault_internal_error
        if draw < config.fault_untyped_throttle:
            self.stats.record(op, region, UNTYPED_THROTTLE)
            return untyped_throttle_response()
        draw -= config.fault_untyped_throttle
        if draw < config.fault_drop_connection:
            self.stats.record(op, region, DROPPED_CONNECTION)
            if request.transport is not None:
                request.transport.abort()  # aiohttp then drops the response it cannot send
            return web.Response()
        return None

    # -- control endpoints -----------------------------------------------------------------

    async def _json_body(self, request: web.Request) -> dict[str, Any]:
        body = await request.json() if request.can_read_body else {}
        if not isinstance(body, dict):
            raise ConfigValueError("the body must be a JSON object")
        return body

    async def _seed(self, request: web.Request) -> web.Response:
        try:
            return web.json_response(self.store.seed(await self._json_body(request)))
        except ValueError as exc:  # SeedError, ConfigValueError, bad JSON
            return _control_error(str(exc))

    async def _get_config(self, request: web.Request) -> web.Response:
        return web.json_response(self.config.to_json())

    async def _set_config(self, request: web.Request) -> web.Response:
        try:
            return web.json_response(self.configure(await self._json_body(request)).to_json())
        except ValueError as exc:
            return _control_error(str(exc))

    async def _reset(self, request: web.Request) -> web.Response:
        try:
            body = await self._json_body(request)
        except ValueError as exc:
            return _control_error(str(exc))
        self.reset(clear_data=bool(body.get("clear_data", False)))
        return web.json_response({"config": self.config.to_json()})

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats.to_json())

    async def _writes(self, request: web.Request) -> web.Response:
        return web.json_response(self.store.writes(request.query.get("pool")))

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "pools": len(self.store.pools)})


def _require_known(known: bool, operation: str) -> None:
    if not known:
        raise ApiError(UNKNOWN_OPERATION, f"Unknown operation: {operation or '(none)'}")


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body) if body else {}
    except ValueError:
        raise ApiError(SERIALIZATION, "Invalid JSON body") from None


# -- command line ----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m feedback_local.emulator",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = EmulatorConfig()
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--seed", type=Path, help="JSON file in the seed shape")
    parser.add_argument("--quota-per-region", type=float, default=defaults.quota_per_region)
    parser.add_argument("--burst", type=float, default=None, help="default: 1 s of quota")
    parser.add_argument("--per-user-limit", type=float, default=defaults.per_user_limit)
    parser.add_argument("--latency-s", type=float, default=0.0)
    parser.add_argument("--latency-jitter-s", type=float, default=0.0)
    parser.add_argument("--fault-internal-error", type=float, default=0.0)
    parser.add_argument("--fault-untyped-throttle", type=float, default=0.0)
    parser.add_argument("--fault-drop-connection", type=float, default=0.0)
    parser.add_argument("--denied-access-key", action="append", default=[], metavar="KEY")
    parser.add_argument(
        "--known-key",
        action="append",
        default=[],
        metavar="KEY:SECRET",
        help="replaces the default testing:testing when given",
    )
    parser.add_argument("--stats-window-s", type=int, default=DEFAULT_STATS_WINDOW_S)
    parser.add_argument(
        "--exit-on-stdin-eof",
        action="store_true",
        help="stop when stdin closes (the parent process has gone)",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    changes: dict[str, Any] = {
        name: getattr(args, name)
        for name in (
            "quota_per_region",
            "burst",
            "per_user_limit",
            "latency_s",
            "latency_jitter_s",
            "fault_internal_error",
            "fault_untyped_throttle",
            "fault_drop_connection",
        )
    }
    changes["denied_access_keys"] = args.denied_access_key
    if args.known_key:
        pairs = [k.partition(":") for k in args.known_key]
        if any(not sep or not key for key, sep, _ in pairs):
            raise ConfigValueError("--known-key takes KEY:SECRET")
        changes["known_keys"] = {key: secret for key, _, secret in pairs}
    return EmulatorConfig().updated(changes)


async def _serve(emulator: Emulator, *, exit_on_stdin_eof: bool) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if exit_on_stdin_eof:

        def watch_stdin() -> None:
            with contextlib.suppress(OSError, ValueError):
                sys.stdin.buffer.read()
            loop.call_soon_threadsafe(stop.set)

        threading.Thread(target=watch_stdin, name="stdin-watch", daemon=True).start()
    async with emulator:
        print(f"{READY_PREFIX}{emulator.url}", flush=True)
        await stop.wait()
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        emulator = Emulator(
            config_from_args(args), port=args.port, stats_window_s=args.stats_window_s
        )
        if args.seed is not None:
            emulator.store.seed(json.loads(args.seed.read_text()))
    except (ConfigValueError, SeedError, OSError, ValueError) as exc:
        parser.error(str(exc))
    try:
        return asyncio.run(_serve(emulator, exit_on_stdin_eof=args.exit_on_stdin_eof))
    except OSError as exc:  # e.g. the requested port is taken
        print(f"emulator: cannot listen on {LOOPBACK}:{args.port}: {exc}", file=sys.stderr)
        return EXIT_CANNOT_LISTEN


if __name__ == "__main__":
    sys.exit(main())
