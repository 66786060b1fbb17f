"""PostgresStore specifics against a real PostgreSQL started by the test setup."""

from __future__ import annotations

import random
import subprocess
import uuid
from collections.abc import Iterator

import pytest
import trio
import trio_asyncio

from tests import servers
from trio_ruts import CookieOptions, Expiry, Session, SessionId, StoreError
from trio_ruts.stores import PostgresStore
from trio_ruts.stores.postgres._schema import LATEST, MIGRATIONS, Names, Queries

pytestmark = pytest.mark.postgres
COOKIE = CookieOptions(max_age=600)


def psql(server: servers.PostgresServer, sql: str) -> str:
    return subprocess.run(
        ["psql", server.dsn, "-XAtc", sql], check=True, capture_output=True, text=True, timeout=60
    ).stdout.strip()


def unique(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


async def test_custom_schema_and_two_stores_side_by_side(
    postgres: servers.PostgresServer,
) -> None:
    schema, a_name, b_name = unique("s"), unique(), unique()
    async with (
        PostgresStore.from_dsn(postgres.dsn, schema=schema, table=a_name) as a,
        PostgresStore.from_dsn(postgres.dsn, schema=schema, table=b_name) as b,
    ):
        sa, sb = Session(a, cookie=COOKIE), Session(b, cookie=COOKIE)
        await sa.update("who", "a")
        await sb.update("who", "b")
        assert await Session(a, sb.id).get("who") is None  # stores do not see each other
        assert await Session(b, sb.id).get("who") == "b"
    tables = psql(postgres, f"SELECT tablename FROM pg_tables WHERE schemaname = '{schema}'")
    assert set(tables.split()) == {
        a_name,
        f"{a_name}_fields",
        f"{a_name}_schema_version",
        b_name,
        f"{b_name}_fields",
        f"{b_name}_schema_version",
    }
    indexes = psql(postgres, f"SELECT indexname FROM pg_indexes WHERE schemaname = '{schema}'")
    assert all(i.startswith((a_name, b_name)) for i in indexes.split())


async def test_migrations_are_versioned(postgres: servers.PostgresServer) -> None:
    name = unique()
    fresh = PostgresStore.from_dsn(postgres.dsn, table=name, create_table=False)
    with pytest.raises(StoreError, match="create_table=True"):
        async with fresh:
            pass
    async with PostgresStore.from_dsn(postgres.dsn, table=name):
        pass
    async with PostgresStore.from_dsn(postgres.dsn, table=name) as again:  # no re-run
        await Session(again, cookie=COOKIE).update("a", 1)
    assert psql(postgres, f"SELECT max(version) FROM {name}_schema_version") == str(LATEST)
    assert psql(postgres, f"SELECT count(*) FROM {name}_schema_version") == str(len(MIGRATIONS))
    async with PostgresStore.from_dsn(postgres.dsn, table=name, create_table=False) as existing:
        await Session(existing, cookie=COOKIE).update("a", 1)


async def test_version_1_tables_are_migrated_with_their_data(
    postgres: servers.PostgresServer,
) -> None:
    """Tables made by a release at schema version 1 (the first write function) keep their
    sessions and get the current functions when a store opens them with create_table=True."""
    name = unique()
    names = Names(None, name)
    q = Queries(names)
    setup = [q.version_table, *Queries.migration(names, 1), q.record_version.replace("$1", "1")]
    psql(postgres, ";\n".join(setup))
    old = SessionId.generate()
    psql(
        postgres,
        f"SELECT * FROM {name}_write('\\x{old.bytes.hex()}'::bytea, "
        f"'\\x{old.bytes.hex()}'::bytea, 'a', '\\x01'::bytea, false, NULL, 3600, false, NULL)",
    )
    with pytest.raises(StoreError, match=f"version 1, this release needs {LATEST}"):
        async with PostgresStore.from_dsn(postgres.dsn, table=name, create_table=False):
            pass
    async with PostgresStore.from_dsn(postgres.dsn, table=name) as store:
        assert await store.get(old, "a") == b"\x01"
        s = Session(store, old, cookie=COOKIE)
        assert await s.insert("b", 2)
        assert not await s.insert("b", 3)
        assert await Session(store, old).get("b") == 2
    assert psql(postgres, f"SELECT max(version) FROM {name}_schema_version") == str(LATEST)


async def test_sessions_of_version_4_count_their_cap_from_the_migration(
    postgres: servers.PostgresServer,
) -> None:
    """Sessions written before creation times were recorded (schema version 4) get the
    migration's time: their absolute cap counts from the upgrade, and they keep working."""
    name = unique()
    names = Names(None, name)
    q = Queries(names)
    setup = [q.version_table]
    for version in (1, 2, 3, 4):
        setup += [*Queries.migration(names, version), q.record_version.replace("$1", str(version))]
    psql(postgres, ";\n".join(setup))
    old = SessionId.generate()
    psql(
        postgres,
        f"SELECT * FROM {name}_write(NULL, '\\x{old.bytes.hex()}'::bytea, 'a', "
        f"'\\x01'::bytea, false, NULL, 3600, false, NULL)",
    )
    await trio.sleep(1.2)  # the session is older than the migration by this much
    async with PostgresStore.from_dsn(postgres.dsn, table=name) as store:
        reader = Session(store, old, cookie=COOKIE, expiry=Expiry(idle=600, absolute=2))
        assert await reader.get("a") == 1
        capped = Session(store, old, cookie=COOKIE, expiry=Expiry(idle=600, absolute=2))
        assert await capped.update("b", 2)
        assert capped.id == old
        assert "Max-Age=2;" in (capped.cookie_header() or "")  # 2 s from the migration
        await trio.sleep(2.2)
        assert await store.get_all(old) is None


async def test_concurrent_openers_migrate_once(postgres: servers.PostgresServer) -> None:
    name = unique()

    async def open_one() -> None:
        async with PostgresStore.from_dsn(postgres.dsn, table=name):
            pass

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(open_one)
    assert psql(postgres, f"SELECT count(*) FROM {name}_schema_version") == str(len(MIGRATIONS))


@pytest.mark.parametrize("bad", ["", "1abc", "a-b", 'a"b', "x" * 42, "sessions; DROP TABLE x"])
def test_identifiers_are_validated(bad: str) -> None:
    with pytest.raises(ValueError, match="letters, digits"):
        PostgresStore.from_dsn("postgresql://localhost/db", table=bad)
    with pytest.raises(ValueError, match="letters, digits"):
        PostgresStore.from_dsn("postgresql://localhost/db", schema=bad)


async def test_delete_expired_and_background_sweep(postgres: servers.PostgresServer) -> None:
    name = unique()
    async with PostgresStore.from_dsn(postgres.dsn, table=name, sweep_interval=0.5) as store:
        s = Session(store, cookie=CookieOptions(max_age=1))
        await s.update("a", 1)
        keep = Session(store, cookie=COOKIE)
        await keep.update("brief", 1, ttl=1)
        await keep.update("stays", 2)
        assert psql(postgres, f"SELECT count(*) FROM {name}") == "2"
        await trio.sleep(2.0)
        assert psql(postgres, f"SELECT count(*) FROM {name}") == "1"  # swept in the background
        assert psql(postgres, f"SELECT field FROM {name}_fields") == "stays"
        assert await store.delete_expired() == 0


async def test_unreachable_server_is_a_clear_error() -> None:
    port = servers.free_port()
    with pytest.raises(StoreError) as info:
        async with PostgresStore.from_dsn(f"postgresql://u:secretpw@127.0.0.1:{port}/db"):
            pass
    assert f"127.0.0.1:{port}" in str(info.value)
    assert "secretpw" not in str(info.value)


async def test_racing_inserts_and_renames(postgres: servers.PostgresServer) -> None:
    async with PostgresStore.from_dsn(postgres.dsn, table=unique(), max_size=8) as store:
        owner = Session(store, cookie=COOKIE)
        await owner.update("seed", 0)
        wins: list[bool] = []

        async def insert(i: int) -> None:
            wins.append(await Session(store, owner.id, cookie=COOKIE).insert("winner", i))

        async with trio.open_nursery() as nursery:
            for i in range(40):
                nursery.start_soon(insert, i)
        assert wins.count(True) == 1

        renamed: list[SessionId | None] = []

        async def regenerate() -> None:
            renamed.append(await Session(store, owner.id, cookie=COOKIE).regenerate())

        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(regenerate)
        moved = [r for r in renamed if r is not None]
        assert len(moved) == 1  # the others found the old id gone
        assert await Session(store, moved[0]).get("seed") == 0


async def test_cancellations_leave_pool_healthy(postgres: servers.PostgresServer) -> None:
    rng = random.Random(7)
    async with PostgresStore.from_dsn(postgres.dsn, table=unique(), max_size=4) as store:
        s = Session(store, cookie=COOKIE)
        await s.update("n", -1)
        sid = s.id
        possible: dict[int, set[int]] = {}

        async def writer(w: int) -> None:
            possible[w] = {None}  # type: ignore[arg-type]
            for k in range(25):
                done = False
                with trio.move_on_after(rng.choice([0, 0.0005, 0.002, 5])):
                    await Session(store, sid, cookie=COOKIE).update(f"w{w}", k)
                    done = True
                possible[w] = {k} if done else possible[w] | {k}

        async with trio.open_nursery() as nursery:
            for w in range(12):
                nursery.start_soon(writer, w)
        everything = await Session(store, sid).get_all()
        assert everything is not None
        for w, allowed in possible.items():
            assert everything.get(f"w{w}") in allowed
        for _ in range(20):  # the pool still works, every connection of it
            assert await Session(store, sid).get("n") == -1
    active = psql(
        postgres,
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid()",
    )
    assert active == "0"


async def test_from_pool_uses_callers_loop(postgres: servers.PostgresServer) -> None:
    import asyncpg

    async with trio_asyncio.open_loop():
        pool = await trio_asyncio.aio_as_trio(asyncpg.create_pool)(postgres.dsn)
        try:
            async with PostgresStore.from_pool(pool, table=unique()) as store:
                s = Session(store, cookie=COOKIE)
                await s.update("a", 1)
                assert await Session(store, s.id).get("a") == 1
            # The caller's pool is still open: the store did not own it.
            assert await trio_asyncio.aio_as_trio(pool.fetchval)("SELECT 1") == 1
        finally:
            await trio_asyncio.aio_as_trio(pool.close)()


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[servers.PostgresServer]:
    """A server of this module's own, since the restart test stops it."""
    with servers.postgres_server() as server:
        yield server


async def test_restart_errors_then_recovers(own_postgres: servers.PostgresServer) -> None:
    async with PostgresStore.from_dsn(own_postgres.dsn, table=unique(), max_size=3) as store:
        s = Session(store, cookie=COOKIE)
        await s.update("a", 1)
        own_postgres.stop()
        for _ in range(3):
            with pytest.raises(StoreError) as info:
                await Session(store, s.id).get("a")
            assert f"127.0.0.1:{own_postgres.port}" in str(info.value)
        own_postgres.start()
        # The data survived (PostgreSQL keeps it on disk); the pool reconnects by itself.
        for _ in range(5):
            assert await Session(store, s.id).get("a") == 1
        await Session(store, s.id).update("b", 2)
        assert dict(await Session(store, s.id).get_all() or {}) == {"a": 1, "b": 2}
