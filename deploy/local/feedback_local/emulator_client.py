"""Clients of the Cognito emulator's control endpoints (``/_emulator/...``), sync and async.

The control plane is plain unsigned JSON over loopback, so a test can seed pools, change quotas
or inject faults between two calls of the worker under test without touching its clients.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

import aiohttp

CONTROL_PREFIX = "/_emulator"
CONTAINER_CREDENTIALS_PATH = f"{CONTROL_PREFIX}/container-credentials"
CONTROL_TIMEOUT_S = 10.0


class EmulatorControlError(RuntimeError):
    """The emulator refused a control request (bad seed, unknown config key, ...)."""


def _path(name: str, pool: str | None = None) -> str:
    query = f"?{urllib.parse.urlencode({'pool': pool})}" if pool is not None else ""
    return f"{CONTROL_PREFIX}/{name}{query}"


def injected_error(
    code: str,
    *,
    fraction: float = 1.0,
    pool: str | None = None,
    region: str | None = None,
    operation: str | None = None,
    times: int | None = None,
) -> dict[str, Any]:
    """One ``injected_errors`` rule; None leaves a scope open (any pool, region, operation),
    and `times` (None: no limit) spends the rule after that many answers."""
    rule: dict[str, Any] = {"code": code, "fraction": fraction}
    scopes = {"pool": pool, "region": region, "operation": operation, "times": times}
    rule.update({key: value for key, value in scopes.items() if value is not None})
    return rule


class EmulatorControl:
    """Blocking control client, for fixtures, the local stack and benchmarks.

    ``seed`` merges pools/users/events (see ``feedback_local.emulator_state`` for the shape);
    ``configure`` applies a partial config and returns the whole of it; ``reset`` restores the
    start-up config and clears stats (and data with ``clear_data=True``). ``inject`` stages an
    error for a pool, a region or an operation; ``bind_region`` makes the emulator a regional
    endpoint; ``container_credentials_url`` and ``expire_credentials`` drive session tokens.
    """

    def __init__(self, base_url: str, *, timeout_s: float = CONTROL_TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout_s = timeout_s
        # Loopback only: never route control calls through an HTTP(S)_PROXY from the env.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - the URL is our own loopback server
            self.base_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with self._opener.open(request, timeout=self._timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise EmulatorControlError(exc.read().decode(errors="replace")) from exc

    def health(self) -> dict[str, Any]:
        return dict(self._call("GET", _path("health")))

    def seed(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self._call("POST", _path("seed"), spec))

    def configure(self, **options: Any) -> dict[str, Any]:
        return dict(self._call("POST", _path("config"), options))

    def config(self) -> dict[str, Any]:
        return dict(self._call("GET", _path("config")))

    def reset(self, *, clear_data: bool = False) -> dict[str, Any]:
        return dict(self._call("POST", _path("reset"), {"clear_data": clear_data}))

    def stats(self) -> dict[str, Any]:
        return dict(self._call("GET", _path("stats")))

    def writes(self, pool: str | None = None) -> dict[str, Any]:
        return dict(self._call("GET", _path("writes", pool)))

    def inject(
        self,
        code: str,
        *,
        fraction: float = 1.0,
        pool: str | None = None,
        region: str | None = None,
        operation: str | None = None,
        times: int | None = None,
    ) -> dict[str, Any]:
        """Add a rule (see ``injected_error``) after the current ones, where the first
        matching rule wins; returns the whole config (and starts every rule's count afresh)."""
        rule = injected_error(
            code, fraction=fraction, pool=pool, region=region, operation=operation, times=times
        )
        rules = [*self.config()["injected_errors"], rule]
        return self.configure(injected_errors=rules)

    def clear_injected_errors(self) -> dict[str, Any]:
        return self.configure(injected_errors=[])

    def bind_region(self, region: str | None) -> dict[str, Any]:
        """Refuse requests signed for any region but `region` (None: accept every region)."""
        return self.configure(bound_region=region)

    def expire_credentials(self) -> int:
        """Expire every session token issued so far; returns how many were issued."""
        return int(self._call("POST", _path("credentials/expire"), {})["expired"])

    @property
    def container_credentials_url(self) -> str:
        """For ``AWS_CONTAINER_CREDENTIALS_FULL_URI``: botocore fetches session credentials here."""
        return self.base_url + CONTAINER_CREDENTIALS_PATH


class AsyncEmulatorControl:
    """The same control calls on aiohttp, for async tests: ``async with AsyncEmulatorControl(url)``.

    Pass an existing ``session`` to share its connection pool; otherwise one is owned.
    """

    def __init__(
        self,
        base_url: str,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout_s: float = CONTROL_TIMEOUT_S,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def __aenter__(self) -> Self:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        if self._session is None:
            raise RuntimeError("use AsyncEmulatorControl as an async context manager")
        async with self._session.request(
            method, self.base_url + path, json=body, timeout=self._timeout
        ) as response:
            if response.status >= 400:
                raise EmulatorControlError(await response.text())
            return await response.json()

    async def health(self) -> dict[str, Any]:
        return dict(await self._call("GET", _path("health")))

    async def seed(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        return dict(await self._call("POST", _path("seed"), spec))

    async def configure(self, **options: Any) -> dict[str, Any]:
        return dict(await self._call("POST", _path("config"), options))

    async def config(self) -> dict[str, Any]:
        return dict(await self._call("GET", _path("config")))

    async def reset(self, *, clear_data: bool = False) -> dict[str, Any]:
        return dict(await self._call("POST", _path("reset"), {"clear_data": clear_data}))

    async def stats(self) -> dict[str, Any]:
        return dict(await self._call("GET", _path("stats")))

    async def writes(self, pool: str | None = None) -> dict[str, Any]:
        return dict(await self._call("GET", _path("writes", pool)))

    async def inject(
        self,
        code: str,
        *,
        fraction: float = 1.0,
        pool: str | None = None,
        region: str | None = None,
        operation: str | None = None,
        times: int | None = None,
    ) -> dict[str, Any]:
        """Add a rule (see ``injected_error``) after the current ones, where the first
        matching rule wins; returns the whole config (and starts every rule's count afresh)."""
        rule = injected_error(
            code, fraction=fraction, pool=pool, region=region, operation=operation, times=times
        )
        rules = [*(await self.config())["injected_errors"], rule]
        return await self.configure(injected_errors=rules)

    async def clear_injected_errors(self) -> dict[str, Any]:
        return await self.configure(injected_errors=[])

    async def bind_region(self, region: str | None) -> dict[str, Any]:
        return await self.configure(bound_region=region)

    async def expire_credentials(self) -> int:
        return int((await self._call("POST", _path("credentials/expire"), {}))["expired"])

    @property
    def container_credentials_url(self) -> str:
        return self.base_url + CONTAINER_CREDENTIALS_PATH
