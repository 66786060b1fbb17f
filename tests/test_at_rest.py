"""Protection at rest (SPEC section 11): no usable session id in what the stores keep, and
data written with ids in clear (earlier releases) readable after the upgrade."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import trio

from tests import servers
from tests.conftest import StoreKit
from trio_ruts import CookieOptions, Expiry, Session, SessionId
from trio_ruts._ids import ID_BYTES, TAG_BYTES, id_digest
from trio_ruts.stores import LayeredStore, PostgresStore, RedisStore, SessionStore
from trio_ruts.stores.postgres import _store as pg_store
from trio_ruts.stores.redis.migrate import legacy_id, legacy_key, migrate_server

COOKIE = CookieOptions(max_age=600)
MARKER = "at-rest-marker-7f3a"  # a value the scans must find: proof that they see the data


@pytest.fixture
def created_ids(monkeypatch: pytest.MonkeyPatch) -> list[SessionId]:
    """Every id generated or regenerated while the test runs (the session's own and the
    store contract's alike)."""
    ids: list[SessionId] = []
    generate = SessionId.generate.__func__  # type: ignore[attr-defined]
    regenerate = SessionId.regenerate

    def recorded_generate(cls: type[SessionId]) -> SessionId:
        ids.append(generate(cls))
        return ids[-1]

    def recorded_regenerate(self: SessionId) -> SessionId:
        ids.append(regenerate(self))
        return ids[-1]

    monkeypatch.setattr(SessionId, "generate", classmethod(recorded_generate))
    monkeypatch.setattr(SessionId, "regenerate", recorded_regenerate)
    return ids


async def workload(store: SessionStore) -> None:
    """A bit of everything a session does to a store: creation, per-field TTLs, insert, incr,
    compare-and-set, removal, renames (immediate and prepared), touching reads, expiry."""
    a = Session(store, cookie=COOKIE)
    await a.update("marker", MARKER)
    await a.update("brief", [1, 2], ttl=300)
    assert await a.insert("once", {"x": 1})
    assert await a.incr("n", 5) == 5
    assert await a.update_if("marker", MARKER, MARKER)
    await a.regenerate()
    assert a.id is not None
    b = Session(store, a.id, cookie=COOKIE, expiry=Expiry(idle=600, absolute=3600))
    assert await b.get("marker") == MARKER
    b.prepare_regenerate()
    await b.update("c", b"\x00bytes")
    assert await b.pop("once") == {"x": 1}
    assert await b.remove("brief")
    record = await b.get_all()
    assert record is not None
    assert record["n"] == 5
    assert await b.touch()
    gone = Session(store, cookie=COOKIE)
    await gone.update("marker", MARKER)
    assert await gone.delete()
    kept = Session(store, cookie=COOKIE)
    await kept.update("marker", MARKER)
    assert await kept.expire(300)


def forms(id: SessionId) -> list[bytes]:
    """How an id could show in raw data: its cookie text, its bytes, their hex, and each of
    them without the hash-tag part (the old Redis key split the text around the tag)."""
    text, raw = str(id).encode(), id.bytes
    found = []
    for part in (text, raw, raw.hex().encode(), raw.hex().upper().encode()):
        found += [part, part[len(part) * TAG_BYTES // ID_BYTES :]]
    return found


def redis_dump(ports: list[int]) -> list[bytes]:
    """Every key of the servers, with its fields, values and DUMP payload."""
    out: list[bytes] = []
    for port in ports:
        client = redis.Redis(port=port)
        try:
            for key in client.scan_iter(count=1000):
                out.append(key)
                payload = client.dump(key)
                if payload is not None:
                    out.append(payload)
                if client.type(key) == b"hash":
                    for name, value in client.hgetall(key).items():
                        out += [name, value]
        finally:
            client.close()
    return out


def postgres_dump(server: servers.PostgresServer, table: str) -> list[bytes]:
    """The store's rows as PostgreSQL renders them (bytea in hex), and a pg_dump of the
    tables (COPY data, with bytea as hex)."""
    out = []
    for suffix in ("", "_fields"):
        out.append(
            subprocess.run(
                ["psql", server.dsn, "-XAtc", f'SELECT t::text FROM "{table}{suffix}" t'],
                check=True,
                capture_output=True,
                timeout=60,
            ).stdout
        )
    dump = subprocess.run(
        ["pg_dump", "--data-only", "-t", f"{table}*", server.dsn],
        check=True,
        capture_output=True,
        timeout=60,
    )
    out.append(dump.stdout)
    return out


#: The servers each contract kit writes to (a kit not listed fails the test: add it).
_KIT_SERVERS = {
    "redis7.0": ("redis70",),
    "redis7.4": ("redis74",),
    "redis-cluster": ("redis_cluster",),
    "redis-py": ("redis70",),
    "redis-py-cluster": ("redis_cluster",),
    "postgres": ("postgres",),
    "layered-redis-postgres": ("redis74", "postgres"),
    "layered-redis7.0-postgres": ("redis70", "postgres"),
}


def _postgres_tables(store: SessionStore) -> Iterator[str]:
    if isinstance(store, PostgresStore):
        yield store._names.table
    elif isinstance(store, LayeredStore):
        for layer in (store.hot, store.cold):
            yield from _postgres_tables(layer)


async def test_no_usable_id_at_rest(
    kit: StoreKit, request: pytest.FixtureRequest, created_ids: list[SessionId]
) -> None:
    """After a workload on each persistent store, neither the raw Redis keyspace (names,
    fields, values, DUMP payloads) nor the raw Postgres rows hold any id the run created."""
    if kit.id.startswith(("memory", "layered-memory")):
        pytest.skip("the memory store lives and dies with the process: it may keep ids")
    async with kit.factory(request) as store:
        await workload(store)
    assert len(created_ids) >= 5
    raw: list[bytes] = []
    for name in _KIT_SERVERS[kit.id]:
        server = request.getfixturevalue(name)
        if name == "postgres":
            for table in _postgres_tables(store):
                raw += postgres_dump(server, table)
        else:
            nodes = server if isinstance(server, list) else [server]
            raw += redis_dump([node.port for node in nodes])
    blob = b"\n".join(raw)
    marker = MARKER.encode()
    assert marker in blob or marker.hex().encode() in blob  # the scan does see the data
    for sid in created_ids:
        for form in forms(sid):
            assert form not in blob, f"a session id ({form!r}) is stored in clear"


# -- Redis: the old layout, then the migration command -------------------------------------------


class LegacyKeyStore(RedisStore):
    """The Redis store as released before hashed keys: the same code with the old key()."""

    def key(self, id: SessionId) -> bytes:
        return legacy_key(self._prefix, id)


def _prefix() -> str:
    return f"m{SessionId.generate().bytes.hex()[:8]}:"


async def write_old_dataset(store: SessionStore) -> dict[SessionId, dict[str, Any]]:
    """Sessions written by the old code: plain, with a field TTL, renamed, counted."""
    data: dict[SessionId, dict[str, Any]] = {}
    for n in range(20):
        s = Session(store, cookie=COOKIE)
        await s.update("n", n)
        await s.update("brief", "soon", ttl=120)
        await s.incr("hits", n)
        if n % 3 == 0:
            await s.regenerate()
        assert s.id is not None
        data[s.id] = {"n": n, "brief": "soon", "hits": n}
    return data


async def check_dataset(store: SessionStore, data: dict[SessionId, dict[str, Any]]) -> None:
    for sid, fields in data.items():
        record = await store.get_all(sid)
        assert record is not None
        assert 0 < record.ttl <= 600
        assert 0 < (record.fields["brief"].ttl or 0) <= 120  # the field keeps its own TTL
        assert dict((await Session(store, sid).get_all()) or {}) == fields
        s = Session(store, sid, cookie=COOKIE)
        assert await s.incr("hits") == fields["hits"] + 1  # and the session works on
        assert s.id == sid


@pytest.mark.redis
@pytest.mark.parametrize("server_name", ["redis70", "redis74", "redis_cluster"])
async def test_redis_old_layout_is_migrated(
    server_name: str, request: pytest.FixtureRequest
) -> None:
    server = request.getfixturevalue(server_name)
    nodes = server if isinstance(server, list) else [server]
    prefix = _prefix()
    urls = [n.url for n in nodes]

    def store(cls: type[RedisStore]) -> RedisStore:
        if len(nodes) > 1:
            return cls.cluster(urls, prefix=prefix)
        return cls.from_url(urls[0], prefix=prefix)

    async with store(LegacyKeyStore) as old:
        data = await write_old_dataset(old)
    dump = b"\n".join(redis_dump([n.port for n in nodes]))
    assert all(legacy_key(prefix.encode(), sid) in dump for sid in data)  # ids in clear
    async with store(RedisStore) as new:
        for sid in data:
            assert await new.get_all(sid) is None  # not readable before the migration
        done = [await migrate_server(url, prefix) for url in urls]
        assert sum(d.renamed for d in done) == len(data)
        assert sum(d.kept + d.gone for d in done) == 0
        await check_dataset(new, data)
        again = [await migrate_server(url, prefix) for url in urls]  # idempotent
        assert sum(d.renamed + d.kept + d.gone for d in again) == 0
    dump = b"\n".join(redis_dump([n.port for n in nodes]))
    for sid in data:
        for form in forms(sid):
            assert form not in dump


@pytest.mark.redis
async def test_redis_migration_command(redis74: servers.RedisServer) -> None:
    """The command line: moves old keys, leaves keys of other prefixes and foreign keys of
    the same shape alone, and reports what it did."""
    prefix = _prefix()
    async with LegacyKeyStore.from_url(redis74.url, prefix=prefix) as old:
        data = await write_old_dataset(old)
    redis74.cli("SET", f"{prefix}{{abcd}}not-an-id-at-all!!", "x")  # right length, not an id
    async with LegacyKeyStore.from_url(redis74.url, prefix="other:" + prefix) as other:
        await Session(other, cookie=COOKIE).update("a", 1)
    result = await trio.to_thread.run_sync(
        lambda: subprocess.run(
            [
                sys.executable,
                "-m",
                "trio_ruts.stores.redis.migrate",
                redis74.url,
                "--prefix",
                prefix,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    )
    assert result.returncode == 0, result.stderr
    assert f"{len(data)} renamed, 0 kept" in result.stdout
    assert redis74.cli("EXISTS", f"{prefix}{{abcd}}not-an-id-at-all!!").strip() == "1"
    others = redis74.cli("--scan", "--pattern", f"other:{prefix}*").split()
    assert len(others) == 1
    assert legacy_id(f"other:{prefix}".encode(), others[0].encode())
    async with RedisStore.from_url(redis74.url, prefix=prefix) as new:
        await check_dataset(new, data)


def test_id_digest_is_sha256_of_the_id_bytes() -> None:
    """Postgres' migration computes sha256(id) in SQL: the helper must agree."""
    for _ in range(100):
        sid = SessionId.generate()
        assert id_digest(sid) == hashlib.sha256(sid.bytes).digest()
        assert id_digest(SessionId.parse(str(sid))) == id_digest(sid)  # cached per object


def test_legacy_key_round_trip() -> None:
    sid = SessionId.generate()
    key = legacy_key(b"p:", sid)
    assert legacy_id(b"p:", key) == sid
    assert legacy_id(b"q:", key) is None
    assert legacy_id(b"p:", key + b"x") is None
    assert legacy_id(b"p:", RedisStore.from_url("redis://localhost", prefix="p:").key(sid)) is None


# -- Postgres: tables and rows of schema version 7, then migration 8 -----------------------------


@pytest.mark.postgres
async def test_postgres_old_rows_are_migrated(
    postgres: servers.PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows written by the release before hashed ids (schema version 7, ids in clear: the
    store's code with the identity for id_digest) are readable after migration 8, and the
    tables then hold no id in clear."""
    table = f"t_{SessionId.generate().bytes.hex()[:10]}"
    with monkeypatch.context() as old_release:
        old_release.setattr(pg_store, "id_digest", lambda id: id.bytes)
        old_release.setattr(
            pg_store, "MIGRATIONS", {v: s for v, s in pg_store.MIGRATIONS.items() if v <= 7}
        )
        old_release.setattr(pg_store, "LATEST", 7)
        async with PostgresStore.from_dsn(postgres.dsn, table=table) as old:
            data = await write_old_dataset(old)
    dump = b"\n".join(postgres_dump(postgres, table))
    assert all(sid.bytes.hex().encode() in dump for sid in data)  # the old layout: in clear
    async with PostgresStore.from_dsn(postgres.dsn, table=table) as new:
        await check_dataset(new, data)
    dump = b"\n".join(postgres_dump(postgres, table))
    assert all(id_digest(sid).hex().encode() in dump for sid in data)
    for sid in data:
        for form in forms(sid):
            assert form not in dump


@pytest.mark.parametrize(
    ("url", "says"),
    [("redis://127.0.0.1:1", "unreachable"), ("http://localhost", "Redis URLs start with")],
)
def test_redis_migration_command_errors(url: str, says: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "trio_ruts.stores.redis.migrate", url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
    assert says in result.stderr
    assert "Traceback" not in result.stderr
