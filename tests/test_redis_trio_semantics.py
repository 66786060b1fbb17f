"""RedisStore behaves as a trio operation should: a call under a cancelled scope sends
nothing, cancelled callers do not cost connections, a frozen server surfaces as
``StoreTimeout`` after the configured deadline; and the transport is laid out so that only its
connection module knows about sockets."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from tests import servers
from trio_ruts import CookieOptions, Session, SessionId, StoreTimeout
from trio_ruts.stores import RedisStore, Write

pytestmark = pytest.mark.redis
COOKIE = CookieOptions(max_age=600)
PACKAGE = Path(__file__).resolve().parent.parent / "trio_ruts" / "stores" / "redis"


_OBSERVING = ("cmdstat_info:", "cmdstat_client|list:")


def _commands(nodes: list[servers.RedisServer]) -> int:
    """Commands the servers ran so far, not counting this test's ``INFO`` and ``CLIENT LIST``."""
    total = 0
    for node in nodes:
        for line in node.cli("INFO", "commandstats").splitlines():
            if line.startswith("cmdstat_") and not line.startswith(_OBSERVING):
                total += int(re.search(r"calls=(\d+)", line).group(1))  # type: ignore[union-attr]
    return total


def _clients(nodes: list[servers.RedisServer]) -> set[tuple[int, str]]:
    """The servers' client connections (server-assigned ids), the asking ``redis-cli`` aside."""
    found = set()
    for node in nodes:
        for line in node.cli("CLIENT", "LIST").splitlines():
            if "cmd=client|list" not in line:
                found.add((node.port, line.split()[0]))
    return found


def _connections_received(server: servers.RedisServer) -> int:
    """Connections the server accepted so far, the asking ``redis-cli``'s own included."""
    info = server.cli("INFO", "stats")
    return int(re.search(r"total_connections_received:(\d+)", info).group(1))  # type: ignore[union-attr]


@asynccontextmanager
async def _store(
    kind: str, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[RedisStore, list[servers.RedisServer]]]:
    """An open store of ``kind``, and the servers behind it."""
    prefix = f"sem-{kind}:"
    if kind == "cluster":
        nodes: list[servers.RedisServer] = request.getfixturevalue("redis_cluster")
        store = RedisStore.cluster([n.url for n in nodes], prefix=prefix)
    elif kind == "redis-py":
        import redis.asyncio

        nodes = [request.getfixturevalue("redis70")]
        store = RedisStore.from_client(redis.asyncio.Redis.from_url(nodes[0].url), prefix=prefix)
    else:
        nodes = [request.getfixturevalue(kind)]
        store = RedisStore.from_url(nodes[0].url, prefix=prefix)
    async with store:
        yield store, nodes


@pytest.mark.parametrize("kind", ["redis70", "redis74", "cluster", "redis-py"])
async def test_calls_under_a_cancelled_scope_send_nothing_and_raise_cancelled(
    kind: str, request: pytest.FixtureRequest
) -> None:
    """Every public call checks for cancellation before it acts: under a scope that is
    already cancelled it raises ``Cancelled``, never returns, and sends no command."""
    async with _store(kind, request) as (store, nodes):
        s = Session(store, cookie=COOKIE)
        await s.update("a", 1)
        sid = s.id
        assert sid is not None
        before = await store.get_all(sid)
        assert before is not None
        write = Write(sid, sid, "b", b"\x02", False, None, 600)
        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "get": lambda: store.get(sid, "a"),
            "get_all": lambda: store.get_all(sid),
            "write": lambda: store.write(write),
            "remove": lambda: store.remove(sid, "a"),
            "delete": lambda: store.delete(sid),
            "expire": lambda: store.expire(sid, 0),
            "rename": lambda: store.rename(sid, sid.regenerate()),
        }
        sent, clients = _commands(nodes), _clients(nodes)
        assert clients
        for name, call in calls.items():
            for _ in range(100 if name == "get" else 10):
                returned = False
                with trio.CancelScope() as scope:
                    scope.cancel()
                    await call()
                    returned = True
                assert scope.cancelled_caught, f"{name} did not raise Cancelled"
                assert not returned, f"{name} returned under a cancelled scope"
        assert _commands(nodes) == sent, "a call under a cancelled scope sent a command"
        assert _clients(nodes) == clients, "a call under a cancelled scope dropped a connection"
        after = await store.get_all(sid)  # nothing was deleted, written or moved
        assert after is not None
        assert after.fields == before.fields


async def test_cancelled_callers_keep_their_connection_in_service(
    redis74: servers.RedisServer,
) -> None:
    """2,000 gets from 200 concurrent tasks, a tenth of them on a 0.2 ms deadline: the
    cancelled callers' replies are dropped on the connection in service, no new connection
    opens, and every other get returns its own session's value."""
    sessions = [SessionId.generate() for _ in range(100)]
    async with RedisStore.from_url(redis74.url, prefix="churn:") as store:
        for i, sid in enumerate(sessions):
            await store.write(Write(None, sid, "v", b"%d" % i, False, None, 600))
        pool = store._transport.pool  # type: ignore[attr-defined]
        opened = pool.opened
        received = _connections_received(redis74)
        answered, cancelled = 0, 0

        async def gets(task: int) -> None:
            nonlocal answered, cancelled
            for n in range(10):
                i = (task * 10 + n) % len(sessions)
                sid, expected = sessions[i], b"%d" % i
                if n != task % 10:
                    assert await store.get(sid, "v") == expected
                    answered += 1
                    continue
                with trio.move_on_after(0.0002) as scope:
                    assert await store.get(sid, "v") == expected
                cancelled += scope.cancelled_caught

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for task in range(200):
                    nursery.start_soon(gets, task)
        assert answered == 1800
        assert cancelled > 20, "few gets were cancelled: the test proves little"
        # The server agrees with the pool (the second INFO's redis-cli counts itself).
        assert _connections_received(redis74) - received - 1 <= 1
        assert pool.opened == opened
        assert await store.get(sessions[0], "v") == b"0"


@contextmanager
def _frozen(server: servers.RedisServer) -> Iterator[None]:
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)


@pytest.mark.parametrize("via", ["from_url", "from_client"])
async def test_a_frozen_server_raises_store_timeout_then_recovers(via: str) -> None:
    """With the server stopped (SIGSTOP), a call raises ``StoreTimeout`` once the store's
    ``timeout`` passes, not the caller's own deadline; the connection is dropped, and once
    the server runs again the store works."""
    with servers.redis_server(servers.system_redis_binary()) as server:
        if via == "from_url":
            store = RedisStore.from_url(server.url, prefix="frozen:", timeout=0.5)
        else:
            import redis.asyncio

            client = redis.asyncio.Redis.from_url(server.url)
            store = RedisStore.from_client(client, prefix="frozen:", timeout=0.5)
        async with store:
            s = Session(store, cookie=COOKIE)
            await s.update("a", 1)
            assert s.id is not None
            with _frozen(server):
                for _ in range(2):  # on the connection in service, then on a fresh one
                    start = trio.current_time()
                    with trio.fail_after(5), pytest.raises(StoreTimeout, match=r"0\.5 s"):
                        await store.get(s.id, "a")
                    assert trio.current_time() - start < 1.0
            with trio.fail_after(5):
                assert await Session(store, s.id).get("a") == 1
            if via == "from_url":
                assert store._transport.pool.opened == 3  # type: ignore[attr-defined]


async def test_a_command_cut_short_by_a_cancellation_drops_its_connection() -> None:
    """A command larger than the socket buffers, cancelled while half written (the server is
    stopped, so it cannot drain them): the connection's state is unknown, so it is dropped,
    and the next call runs on a fresh connection."""
    with servers.redis_server(servers.system_redis_binary()) as server:
        async with RedisStore.from_url(server.url, prefix="cut:", timeout=None) as store:
            sid = SessionId.generate()
            await store.write(Write(None, sid, "v", b"small", False, None, 600))
            pool = store._transport.pool  # type: ignore[attr-defined]
            first = pool._current
            with _frozen(server), trio.move_on_after(0.5) as scope:
                huge = ("SET", "cut:huge", b"x" * (64 << 20))
                await store._transport.execute(None, huge, idempotent=False)
            assert scope.cancelled_caught
            assert not first.usable
            with trio.fail_after(10):
                assert await store.get(sid, "v") == b"small"
            assert pool._current is not first
            assert pool.opened == 2


async def test_the_operation_timeout_can_be_disabled() -> None:
    """``timeout=None``: only the caller's own deadline limits a call."""
    with servers.redis_server(servers.system_redis_binary()) as server:
        async with RedisStore.from_url(server.url, prefix="frozen:", timeout=None) as store:
            sid = SessionId.generate()
            with _frozen(server), trio.move_on_after(1.2) as scope:
                await store.get(sid, "a")
            assert scope.cancelled_caught
            assert await store.get(sid, "a") is None  # the connection was kept


def test_timeouts_are_validated() -> None:
    with pytest.raises(ValueError, match="timeout"):
        RedisStore.from_url("redis://localhost", timeout=0)
    with pytest.raises(ValueError, match="connect_timeout"):
        RedisStore.cluster(["redis://localhost"], connect_timeout=-1)
    with pytest.raises(ValueError, match="pool size"):
        RedisStore.from_url("redis://localhost", pool_size=0)


async def test_a_cluster_node_url_opens_the_whole_cluster(
    redis_cluster: list[servers.RedisServer],
) -> None:
    """The transport factory finds out that a URL names a cluster node; the store just gets
    a transport that routes every slot."""
    store = RedisStore.from_url(redis_cluster[0].url, prefix="seed:")
    assert repr(store) == f"RedisStore(redis at {redis_cluster[0].url}, prefix=b'seed:')"
    async with store:
        assert "cluster" in repr(store)
        for _ in range(20):  # sessions all over the slot space, most on other nodes
            s = Session(store, cookie=COOKIE)
            await s.update("a", 1)
            assert await Session(store, s.id).get("a") == 1


def test_only_the_connection_module_knows_about_sockets() -> None:
    """The transport is a package, one topic per module; sockets (and the stdlib modules that
    drive them) appear in its connection module only, and the store asks a factory for its
    transport instead of reaching into one."""
    transport = PACKAGE / "_transport"
    assert transport.is_dir()
    assert not (PACKAGE / "_transport.py").exists()
    low_level = re.compile(r"^\s*(import|from)\s+(socket|select)\b|\.socket\b", re.M)
    for path in PACKAGE.rglob("*.py"):
        uses = bool(low_level.search(path.read_text()))
        assert uses == (path == transport / "_connection.py"), path.name
    store = (PACKAGE / "_store.py").read_text()
    for internal in ("SingleNode", "Cluster(", ".pool", "Pool"):
        assert internal not in store, f"_store.py reaches into the transport: {internal}"
    for module in transport.glob("*.py"):
        assert len(module.read_text().splitlines()) < 450, module.name
