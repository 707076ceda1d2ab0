"""A Cognito threat-protection emulator speaking the real wire protocol (AWS JSON 1.1, SigV4).

moto has no AdminUpdateAuthEventFeedback, so real aiobotocore clients are pointed here with
AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER. It checks signatures (long-term keys and session
tokens it issued), validates against botocore's service model, keeps pools per region, enforces
the per-region write and read quotas and the per-user write quota, and can add latency and
faults scoped to a pool, a region or an operation. Control endpoints live under
``/_emulator/`` (unsigned JSON); deploy/local/README.md lists them.

Run ``python -m feedback_local.emulator_cli --port 0``: it prints ``EMULATOR_URL=http://127.0.0.1:N``
once listening and stops on SIGTERM/SIGINT. In-process: ``async with Emulator() as emu``.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import time
from collections import Counter
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from feedback_local import emulator_faults as faults
from feedback_local.emulator_config import ConfigValueError, EmulatorConfig
from feedback_local.emulator_credentials import SessionIssuer
from feedback_local.emulator_ops import CognitoService
from feedback_local.emulator_quota import DEFAULT_STATS_WINDOW_S, Quotas, Stats
from feedback_local.emulator_sigv4 import Caller, authenticate
from feedback_local.emulator_state import Store
from feedback_local.emulator_wire import (
    HTTP_CLIENT_ERROR,
    SERIALIZATION,
    UNKNOWN_OPERATION,
    ApiError,
    json_response,
)
from worker import awsmodel

LOOPBACK = "127.0.0.1"
READY_PREFIX = "EMULATOR_URL="
CONTROL = "/_emulator"
CONTAINER_CREDENTIALS_PATH = f"{CONTROL}/container-credentials"
SHUTDOWN_TIMEOUT_S = 1.0
HTTP_UNAVAILABLE = 503


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
        self.sessions = SessionIssuer()
        self._quotas = Quotas(self.config)
        # Answers each injected rule gave, by its index: a rule with `times` is spent after.
        self._fired: Counter[int] = Counter()
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
        app.router.add_get(CONTAINER_CREDENTIALS_PATH, self._container_credentials)
        app.router.add_post(f"{CONTROL}/credentials/expire", self._expire_credentials)
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
        if "injected_errors" in changes:
            self._fired.clear()
        return self.config

    def reset(self, *, clear_data: bool = False) -> None:
        self.config = self.initial_config
        self._quotas.reconfigure(self.config)
        self._fired.clear()
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
            caller = self._authenticate(request, body, config)
            region = caller.region
            _require_known(known, operation)
            params = _parse_json(body)
            pool_id = _pool_of(params)
            if caller.access_key in config.denied_access_keys:
                raise faults.access_denied(caller, operation, pool_id)
            if config.latency_s or config.latency_jitter_s:
                await asyncio.sleep(config.latency_s + random.uniform(0, config.latency_jitter_s))
            if (
                staged := self._staged_fault(request, config, caller, operation, pool_id)
            ) is not None:
                return staged
            result = self._service.call(operation, caller, params, time.monotonic())
        except ApiError as error:
            self.stats.record(op_name, region, error.code)
            return error.response()
        self.stats.record(op_name, region, None)
        return json_response(result)

    def _authenticate(self, request: web.Request, body: bytes, config: EmulatorConfig) -> Caller:
        headers: dict[str, list[str]] = {}
        for name, value in request.headers.items():
            headers.setdefault(name.lower(), []).append(value)
        return authenticate(
            method=request.method,
            url=f"{request.scheme}://{request.host}{request.raw_path}",
            headers=headers,
            body=body,
            known_keys=config.known_keys,
            sessions=self.sessions,
            bound_region=config.bound_region,
            foreign_sessions=config.foreign_session_keys,
        )

    def _staged_fault(
        self,
        request: web.Request,
        config: EmulatorConfig,
        caller: Caller,
        operation: str,
        pool_id: str | None,
    ) -> web.Response | None:
        """An injected error (first matching rule) or a global fault fraction, else None."""
        code = faults.pick(config.injected_errors, self._fired, operation, caller.region, pool_id)
        if code is not None:
            self.stats.record(operation, caller.region, code)
            return faults.injected_response(code, caller, operation, pool_id)
        if operation != awsmodel.FEEDBACK_OPERATION or config.fault_total <= 0:
            return None
        faulted = faults.legacy_fault(request, config)
        if faulted is None:
            return None
        outcome, response = faulted
        self.stats.record(operation, caller.region, outcome)
        return response

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

    async def _container_credentials(self, request: web.Request) -> web.Response:
        """The ECS container-credentials endpoint, in the mode the config names: "fresh"
        issues a new set on every fetch, "stale" hands out the last set again (expired or
        not), "unavailable" answers 503."""
        mode = self.config.container_credentials
        if mode == "unavailable":
            return web.Response(status=HTTP_UNAVAILABLE, text="credentials are unavailable")
        credentials = self.sessions.last if mode == "stale" else None
        if credentials is None:
            credentials = self.sessions.issue(
                self.config.session_credentials_lifetime_s, time.time()
            )
        return web.json_response(credentials.to_container_json())

    async def _expire_credentials(self, request: web.Request) -> web.Response:
        return web.json_response({"expired": self.sessions.expire_all()})


def _require_known(known: bool, operation: str) -> None:
    if not known:
        raise ApiError(UNKNOWN_OPERATION, f"Unknown operation: {operation or '(none)'}")


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body) if body else {}
    except ValueError:
        raise ApiError(SERIALIZATION, "Invalid JSON body") from None


def _pool_of(params: Any) -> str | None:
    pool_id = params.get("UserPoolId") if isinstance(params, dict) else None
    return pool_id if isinstance(pool_id, str) else None
