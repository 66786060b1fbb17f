"""1,000 watches share one subscription per store (SPEC section 10): counted on the servers
(Redis ``CLIENT LIST``, Postgres ``pg_stat_activity``), and each still ends on its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import asyncpg
import pytest
import trio
import trio_asyncio

from tests import servers
from trio_ruts import CookieOptions, Session, SessionId
from trio_ruts.stores import PostgresStore, RedisStore, SessionStore

WATCHERS = 1000
COOKIE = CookieOptions(max_age=600)


@pytest.fixture
def redis() -> Iterator[servers.RedisServer]:
    """A server of this test's own: its connections are all ours."""
    with servers.redis_server(servers.system_redis_binary()) as server:
        yield server


async def sessions(store: SessionStore, count: int) -> list[SessionId]:
    ids: list[SessionId] = []

    async def one() -> None:
        s = Session(store, cookie=COOKIE)
        await s.update("user", "ada")
        assert s.id is not None
        ids.append(s.id)

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(one)
    return ids


async def run_watchers(
    store: SessionStore, other: SessionStore, ids: list[SessionId], count_connections: object
) -> None:
    """Open a watch per id; check the connections; end one session, then all of them."""
    ended: dict[SessionId, str | None] = {}

    async def watch(sid: SessionId, *, task_status: trio.TaskStatus[None]) -> None:
        async with Session(store, sid, cookie=COOKIE).watch() as w:
            task_status.started()
            await trio.sleep_forever()
        ended[sid] = w.reason

    async with trio.open_nursery() as nursery:
        for sid in ids:
            await nursery.start(watch, sid)
        assert len(store._watch_hub()) == len(ids)
        await count_connections()  # type: ignore[operator]
        # One session's end reaches its watch alone.
        assert await other.delete(ids[0])
        with trio.fail_after(1):
            while ids[0] not in ended:
                await trio.sleep(0.01)
        assert ended == {ids[0]: "deleted"}
        # Every other session ends (from another instance): every watch hears of its own.
        async with trio.open_nursery() as deleters:
            for sid in ids[1:]:
                deleters.start_soon(other.delete, sid)
        with trio.fail_after(10):
            while len(ended) < len(ids):
                await trio.sleep(0.05)
    assert set(ended.values()) == {"deleted"}
    assert len(store._watch_hub()) == 0


@pytest.mark.redis
async def test_a_thousand_redis_watchers_share_one_subscription(
    redis: servers.RedisServer,
) -> None:
    prefix = f"s{uuid.uuid4().hex[:6]}:"
    async with (
        RedisStore.from_url(redis.url, prefix=prefix) as store,
        RedisStore.from_url(redis.url, prefix=prefix) as other,
    ):
        ids = await sessions(store, WATCHERS)
        before = redis.cli("CLIENT", "LIST").count("\n")

        async def count() -> None:
            clients = redis.cli("CLIENT", "LIST").splitlines()
            subscribers = [c for c in clients if " psub=1 " in f" {c} "]
            assert len(subscribers) == 1, clients
            # The watches added the subscription connection and nothing else (redis-cli's
            # own connection is counted both times).
            assert len(clients) == before + 1, clients

        await run_watchers(store, other, ids, count)


@pytest.mark.postgres
async def test_a_thousand_postgres_watchers_share_one_listener(
    postgres: servers.PostgresServer,
) -> None:
    table = f"t_{uuid.uuid4().hex[:10]}"
    options = {"table": table, "sweep_interval": None, "max_size": 5}
    async with (
        PostgresStore.from_dsn(postgres.dsn, **options) as store,  # type: ignore[arg-type]
        PostgresStore.from_dsn(postgres.dsn, **options) as other,  # type: ignore[arg-type]
    ):
        ids = await sessions(store, WATCHERS)

        async def count() -> None:
            async with trio_asyncio.open_loop():
                conn = await trio_asyncio.aio_as_trio(asyncpg.connect)(postgres.dsn)
                try:
                    rows = await trio_asyncio.aio_as_trio(conn.fetch)(
                        "SELECT query FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                finally:
                    await trio_asyncio.aio_as_trio(conn.close)()
            listening = [r for r in rows if r["query"].startswith("LISTEN")]
            assert len(listening) == 1, rows
            # Two stores' pools (at most 5 each) and one listener: not a connection a watch.
            assert len(rows) <= 2 * 5 + 1, rows

        await run_watchers(store, other, ids, count)
