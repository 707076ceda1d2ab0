"""Fixtures shared by the whole suite: one local stack per run, a clean AWS environment per test,
fresh queues and pools per test, and real aiobotocore clients pointed at the stack."""

from __future__ import annotations

import contextlib
import os
import secrets
import string
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any, Protocol

import anyio
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from types_aiobotocore_cognito_idp.client import CognitoIdentityProviderClient
from types_aiobotocore_sqs.client import SQSClient

from feedback_local.stack import (
    TEST_ACCESS_KEY,
    TEST_SECRET_KEY,
    AsyncEmulatorControl,
    EmulatorControl,
    LocalStack,
    QueuePair,
)
from tests.support.virtual_time import FakeClock, VirtualSleep

STACK_REGION = "us-east-1"
_ENV_PREFIXES = ("AWS_", "FEEDBACK_")
_POOL_SUFFIX_CHARS = string.ascii_letters + string.digits
_POOL_SUFFIX_LENGTH = 12
# Tests see every answer of the servers as it is: no silent retries, quick failure.
TEST_CLIENT_CONFIG = AioConfig(
    retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=10
)

Events = Sequence[str | Mapping[str, Any]]


def aws_session() -> AioSession:
    """A bare session: nothing from ~/.aws or the caller's AWS_* variables leaks in."""
    session = AioSession()
    session.set_config_variable("config_file", os.devnull)
    session.set_config_variable("credentials_file", os.devnull)
    return session


def new_pool_id(region: str) -> str:
    """A pool id that no other test uses, living in `region`."""
    suffix = "".join(secrets.choice(_POOL_SUFFIX_CHARS) for _ in range(_POOL_SUFFIX_LENGTH))
    return f"{region}_{suffix}"


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    """A fake monotonic clock for schedule tests."""
    return FakeClock()


@pytest.fixture
def sleep(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> VirtualSleep:
    """`anyio.sleep` replaced by one that moves `clock` instead of waiting."""
    virtual = VirtualSleep(clock)
    monkeypatch.setattr(anyio, "sleep", virtual)
    return virtual


@pytest.fixture(autouse=True)
def _clean_aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the caller's AWS_* or FEEDBACK_* variables (real credentials included)."""
    for name in list(os.environ):
        if name.startswith(_ENV_PREFIXES):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    """moto's SQS server and the Cognito emulator, started once for the whole run."""
    with LocalStack(region=STACK_REGION) as stack:
        yield stack


@pytest.fixture(autouse=True)
def _reset_emulator(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test that used the stack: emulator config back to defaults, stats cleared.

    Pools stay: every test seeds its own, under a fresh id.
    """
    yield
    if "local_stack" in request.fixturenames:
        stack: LocalStack = request.getfixturevalue("local_stack")
        stack.emulator.reset()


@pytest.fixture
def emulator(local_stack: LocalStack) -> EmulatorControl:
    """The blocking control client of the shared emulator."""
    return local_stack.emulator


@pytest.fixture
async def async_emulator(local_stack: LocalStack) -> AsyncIterator[AsyncEmulatorControl]:
    """The async control client of the shared emulator."""
    async with local_stack.async_emulator() as control:
        yield control


@pytest.fixture
def queues(local_stack: LocalStack) -> Iterator[QueuePair]:
    """A fresh source queue and DLQ (maxReceiveCount 5); deleted after the test."""
    pair = local_stack.create_queues()
    yield pair
    local_stack.delete_queues(pair)


class QueueFactory(Protocol):
    def __call__(
        self, *, max_receive_count: int = ..., fifo: bool = ..., visibility_timeout_s: int = ...
    ) -> QueuePair: ...


@pytest.fixture
def queue_factory(local_stack: LocalStack) -> Iterator[QueueFactory]:
    """``queue_factory(max_receive_count=2, fifo=True, ...)``: fresh queue pairs with other
    settings than `queues`; deleted after the test."""
    made: list[QueuePair] = []

    def make(**options: Any) -> QueuePair:
        pair = local_stack.create_queues(**options)
        made.append(pair)
        return pair

    yield make
    for pair in made:
        local_stack.delete_queues(pair)


@pytest.fixture
def aws_env(
    local_stack: LocalStack, queues: QueuePair, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The stack's environment for this test's queues, applied to os.environ."""
    env = local_stack.env(queues)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


class SeedPool(Protocol):
    def __call__(
        self,
        region: str = STACK_REGION,
        users: Mapping[str, Events] | None = None,
        *,
        threat_protection: bool = True,
    ) -> str: ...


@pytest.fixture
def seed_pool(emulator: EmulatorControl) -> SeedPool:
    """Seed a new pool with a unique id in `region`: ``seed_pool("eu-west-1", {"alice":
    ["ev-1"]})``; events are ids or AdminListUserAuthEvents-shaped objects. Returns the id."""

    def seed(
        region: str = STACK_REGION,
        users: Mapping[str, Events] | None = None,
        *,
        threat_protection: bool = True,
    ) -> str:
        pool_id = new_pool_id(region)
        emulator.seed(
            {
                "pools": [
                    {
                        "id": pool_id,
                        "threat_protection": threat_protection,
                        "users": {name: list(events) for name, events in (users or {}).items()},
                    }
                ]
            }
        )
        return pool_id

    return seed


@pytest.fixture
async def sqs_client(local_stack: LocalStack) -> AsyncIterator[SQSClient]:
    """A real aiobotocore SQS client on the stack's SQS."""
    async with aws_session().create_client(
        "sqs",
        region_name=local_stack.region,
        endpoint_url=local_stack.sqs_endpoint,
        aws_access_key_id=TEST_ACCESS_KEY,
        aws_secret_access_key=TEST_SECRET_KEY,
        config=TEST_CLIENT_CONFIG,
    ) as client:
        yield client


class CognitoClientFactory(Protocol):
    async def __call__(
        self,
        region: str = STACK_REGION,
        *,
        access_key: str = TEST_ACCESS_KEY,
        secret_key: str = TEST_SECRET_KEY,
        config: AioConfig | None = None,
        endpoint_url: str | None = None,
    ) -> CognitoIdentityProviderClient: ...


@pytest.fixture
async def cognito_client_factory(local_stack: LocalStack) -> AsyncIterator[CognitoClientFactory]:
    """``await make(region, access_key=..., secret_key=..., config=..., endpoint_url=...)``: a
    real aiobotocore Cognito client signing for `region`, on the shared emulator unless
    `endpoint_url` says otherwise; closed after the test."""
    async with contextlib.AsyncExitStack() as clients:

        async def make(
            region: str = STACK_REGION,
            *,
            access_key: str = TEST_ACCESS_KEY,
            secret_key: str = TEST_SECRET_KEY,
            config: AioConfig | None = None,
            endpoint_url: str | None = None,
        ) -> CognitoIdentityProviderClient:
            return await clients.enter_async_context(
                aws_session().create_client(
                    "cognito-idp",
                    region_name=region,
                    endpoint_url=endpoint_url or local_stack.cognito_endpoint,
                    aws_access_key_id=access_key,
                    aws_secret_access_key=secret_key,
                    config=config or TEST_CLIENT_CONFIG,
                )
            )

        yield make


@pytest.fixture
async def cognito_client(
    cognito_client_factory: CognitoClientFactory,
) -> CognitoIdentityProviderClient:
    """A Cognito client signing for the stack's region."""
    return await cognito_client_factory()
