"""Shared fixtures. Stores plug into the contract suite by adding a ``StoreKit`` to ``KITS``."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from tests import servers
from trio_ruts.stores import LayeredStore, MemoryStore, PostgresStore, RedisStore, SessionStore


@dataclass(frozen=True)
class StoreKit:
    """How to make one kind of store for the contract suite.

    Attributes:
        id: test id.
        factory: returns a new, unopened store; it gets the pytest ``request`` so it can ask
            for server fixtures.
        mock_clock: the store's clock is trio's, so tests may run on an autojump clock.
    """

    id: str
    factory: Callable[[pytest.FixtureRequest], SessionStore]
    mock_clock: bool = False
    marks: tuple[Any, ...] = field(default=())


# -- servers (session-scoped: started once, shared by every test) ------------------------------


@pytest.fixture(scope="session")
def redis70() -> Iterator[servers.RedisServer]:
    """The system's redis-server (7.0 here: no HEXPIRE)."""
    with servers.redis_server(servers.system_redis_binary()) as server:
        yield server


@pytest.fixture(scope="session")
def redis74() -> Iterator[servers.RedisServer]:
    """A Redis 7.4 (HEXPIRE), prepared by scripts/redis74.sh."""
    found = servers.redis74_binary()
    if found is None:
        message = (
            "NO REDIS 7.4 SERVER: scripts/redis74.sh did not prepare .cache/redis74; the "
            "HEXPIRE code path is NOT tested in this run"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    binary, env = found
    with servers.redis_server(binary, env) as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[list[servers.RedisServer]]:
    with servers.redis_cluster(servers.system_redis_binary()) as nodes:
        yield nodes


@pytest.fixture(scope="session")
def postgres() -> Iterator[servers.PostgresServer]:
    """A private PostgreSQL cluster for the whole test session."""
    with servers.postgres_server() as server:
        yield server


def _postgres_store(request: pytest.FixtureRequest) -> SessionStore:
    server = request.getfixturevalue("postgres")
    # Each test its own tables; custom schemas have tests of their own.
    name = f"t_{uuid.uuid4().hex[:10]}"
    return PostgresStore.from_dsn(server.dsn, table=name, sweep_interval=None)


def _prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}:"  # each test its own keys on shared servers


def _redispy_store(request: pytest.FixtureRequest) -> SessionStore:
    import redis.asyncio

    server = request.getfixturevalue("redis70")
    # A blocking pool waits for a free connection instead of failing under load.
    pool = redis.asyncio.BlockingConnectionPool.from_url(server.url, max_connections=20)
    return RedisStore.from_client(redis.asyncio.Redis(connection_pool=pool), prefix=_prefix())


def _redispy_cluster_store(request: pytest.FixtureRequest) -> SessionStore:
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    nodes = request.getfixturevalue("redis_cluster")
    # redis-py's cluster client fails instead of waiting past max_connections per node (100
    # by default); the contract suite runs 200 concurrent writers against one node.
    client = RedisCluster(
        startup_nodes=[ClusterNode("127.0.0.1", n.port) for n in nodes], max_connections=256
    )
    return RedisStore.from_client(client, prefix=_prefix())


KITS: list[StoreKit] = [
    StoreKit("memory", lambda request: MemoryStore(), mock_clock=True),
    StoreKit(
        "redis7.0",
        lambda request: RedisStore.from_url(
            request.getfixturevalue("redis70").url, prefix=_prefix()
        ),
        marks=(pytest.mark.redis,),
    ),
    StoreKit(
        "redis7.4",
        lambda request: RedisStore.from_url(
            request.getfixturevalue("redis74").url, prefix=_prefix()
        ),
        marks=(pytest.mark.redis,),
    ),
    StoreKit(
        "redis-cluster",
        lambda request: RedisStore.cluster(
            [n.url for n in request.getfixturevalue("redis_cluster")], prefix=_prefix()
        ),
        marks=(pytest.mark.redis,),
    ),
    StoreKit("redis-py", _redispy_store, marks=(pytest.mark.redis,)),
    StoreKit("redis-py-cluster", _redispy_cluster_store, marks=(pytest.mark.redis,)),
    StoreKit("postgres", _postgres_store, marks=(pytest.mark.postgres,)),
    StoreKit(
        "layered-memory",
        lambda request: LayeredStore(MemoryStore(), MemoryStore()),
        mock_clock=True,
    ),
    StoreKit(
        "layered-redis-postgres",
        lambda request: LayeredStore(
            RedisStore.from_url(request.getfixturevalue("redis74").url, prefix=_prefix()),
            _postgres_store(request),
        ),
        marks=(pytest.mark.redis, pytest.mark.postgres),
    ),
    StoreKit(  # the hot layer's scripts without HEXPIRE
        "layered-redis7.0-postgres",
        lambda request: LayeredStore(
            RedisStore.from_url(request.getfixturevalue("redis70").url, prefix=_prefix()),
            _postgres_store(request),
        ),
        marks=(pytest.mark.redis, pytest.mark.postgres),
    ),
]


@pytest.fixture(params=[pytest.param(k, id=k.id, marks=k.marks) for k in KITS])
def kit(request: pytest.FixtureRequest) -> StoreKit:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def clock(kit: StoreKit) -> MockClock | None:
    """Tests of the contract suite take this so trio-clocked stores run on an autojump clock."""
    return MockClock(autojump_threshold=0) if kit.mock_clock else None


@pytest.fixture
async def store(kit: StoreKit, request: pytest.FixtureRequest) -> AsyncIterator[SessionStore]:
    async with kit.factory(request) as opened:
        yield opened


async def pass_time(seconds: float) -> None:
    """Let ``seconds`` pass on the store's clock, with a margin for real servers' clocks."""
    await trio.sleep(seconds + 0.3)
