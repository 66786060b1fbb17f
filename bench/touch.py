"""What sliding sessions cost a read: Session.get with and without a touch, on Redis (with
and without HEXPIRE) and on Postgres, in one run.

Per store, four reads take turns call by call (medians over many calls):

* plain get:       ``Expiry(idle=None)``, reads that extend nothing (the read of releases
  before lifetimes: a plain HGET with HEXPIRE, the GET script without, a SELECT);
* plain get (A/A): the same again, so the ratio between the two shows the noise;
* get, no touch:   ``Expiry(idle=3600)`` on a session with more than ``idle -
  touch_interval`` left: the touching read that finds nothing to extend (most reads);
* get + touch:     the same read on a session with 100 s left, which it extends.

Before each timed call, every read's session gets an untimed ``expire`` (to 100 s for the
touching read, 3600 s for the others), so all four see the same traffic. Targets: get +
touch <= 1.1x plain get; get, no touch within the A/A noise of plain get.

Then the floor, in the same run and the same way, below the store: the least a read can
cost that carries its own extension in its round trip, next to the least a plain read
costs. On Redis, over a bare trio stream with hiredis: ``HGET``, a script doing only
``HGET`` (the plain read without ``HEXPIRE`` is a script), and a script doing ``HGET`` +
``PTTL`` + the comparison (+ ``PEXPIRE`` when due). On Postgres, bare asyncpg through the
store's trio-asyncio loop: the field ``SELECT``, and the same ``SELECT`` with an ``UPDATE``
of the session row in one statement. Adding the floor's extra microseconds to the plain
``Session.get`` gives the best ratio any design of that kind could reach ("best possible").

Usage: python bench/touch.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._timing import interleaved_medians
from bench.redis_store import RawConnection
from tests import servers
from trio_ruts import CookieOptions, Expiry, Session
from trio_ruts._ids import id_digest
from trio_ruts.stores import PostgresStore, RedisStore, SessionStore
from trio_ruts.stores._asyncio import bridge

COOKIE = CookieOptions(max_age=3600)
PLAIN = Expiry(idle=None)
SLIDING = Expiry(idle=3600)
TABLE = "bench_touch"
Op = Callable[[], Awaitable[Any]]


async def reads_on(store: SessionStore) -> tuple[dict[str, Op], dict[str, Op]]:
    ops: dict[str, Op] = {}
    prepare: dict[str, Op] = {}
    for name, expiry, left in (
        ("plain get", PLAIN, 3600),
        ("plain get (A/A)", PLAIN, 3600),
        ("get, no touch", SLIDING, 3600),
        ("get + touch", SLIDING, 100),
    ):
        writer = Session(store, cookie=COOKIE, expiry=PLAIN)
        await writer.update("user", "alice")
        await writer.update("cart", [1, 2, 3])
        sid = writer.id
        assert sid is not None

        def op(sid: Any = sid, expiry: Expiry = expiry) -> Awaitable[Any]:
            return Session(store, sid, cookie=COOKIE, expiry=expiry).get("user")

        def before(sid: Any = sid, left: int = left) -> Awaitable[Any]:
            return store.expire(sid, left)

        ops[name], prepare[name] = op, before
    return ops, prepare


# The least a read that may extend can do in one round trip; ARGV: field, below ms, idle ms.
MINIMAL_TOUCH = """
local v = redis.call('HGET', KEYS[1], ARGV[1])
local p = redis.call('PTTL', KEYS[1])
if p >= 0 and p < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return v
"""
MINIMAL_READ = "return redis.call('HGET', KEYS[1], ARGV[1])"


async def redis_floor(store: RedisStore, port: int) -> tuple[dict[str, Op], dict[str, Op]]:
    raw = await RawConnection.open(port)
    touch_sha = await raw.call("SCRIPT", "LOAD", MINIMAL_TOUCH)
    read_sha = await raw.call("SCRIPT", "LOAD", MINIMAL_READ)
    ops: dict[str, Op] = {}
    prepare: dict[str, Op] = {}
    below, idle = str(3240 * 1000), str(3600 * 1000)
    for name, left in (
        ("floor: HGET", 3600),
        ("floor: script HGET", 3600),
        ("floor: touch, none", 3600),
        ("floor: touch", 100),
    ):
        writer = Session(store, cookie=COOKIE, expiry=PLAIN)
        await writer.update("user", "alice")
        sid = writer.id
        assert sid is not None
        key = store.key(sid)
        if name == "floor: HGET":
            args: tuple[Any, ...] = ("HGET", key, "user")
        elif name == "floor: script HGET":
            args = ("EVALSHA", read_sha, "1", key, "user")
        else:
            args = ("EVALSHA", touch_sha, "1", key, "user", below, idle)

        def op(args: tuple[Any, ...] = args) -> Awaitable[Any]:
            return raw.call(*args)

        def before(sid: Any = sid, left: int = left) -> Awaitable[Any]:
            return store.expire(sid, left)

        ops[name], prepare[name] = op, before
    return ops, prepare


async def postgres_floor(store: PostgresStore) -> tuple[dict[str, Op], dict[str, Op]]:
    fields, sessions = f"{TABLE}_fields", TABLE
    select = f"SELECT value FROM {fields} WHERE session_id = $1 AND field = $2"
    extend = (
        f"WITH u AS (UPDATE {sessions} SET expires_at = now() + interval '3600 s' "
        f"WHERE id = $1 RETURNING 1) {select}"
    )
    fetchval = bridge(store._loop, store._pool.fetchval)
    ops: dict[str, Op] = {}
    prepare: dict[str, Op] = {}
    for name, query, left in (
        ("floor: SELECT", select, 3600),
        ("floor: SELECT+UPDATE", extend, 100),
    ):
        writer = Session(store, cookie=COOKIE, expiry=PLAIN)
        await writer.update("user", "alice")
        sid = writer.id
        assert sid is not None

        # Rows are keyed by the id's digest (schema version 8): a query by the raw id would
        # find nothing and update nothing.
        digest = id_digest(sid)
        assert await fetchval(select, digest, "user") is not None

        def op(digest: bytes = digest, query: str = query) -> Awaitable[Any]:
            return fetchval(query, digest, "user")

        def before(sid: Any = sid, left: int = left) -> Awaitable[Any]:
            return store.expire(sid, left)

        ops[name], prepare[name] = op, before
    return ops, prepare


async def measure(store: SessionStore, calls: int, port: int | None = None) -> dict[str, float]:
    async with store:
        ops, prepare = await reads_on(store)
        if isinstance(store, RedisStore):
            assert port is not None
            more, more_prepare = await redis_floor(store, port)
        else:
            assert isinstance(store, PostgresStore)
            more, more_prepare = await postgres_floor(store)
        return await interleaved_medians(ops | more, calls, prepare | more_prepare)


def best_possible(lat: dict[str, float], where: str, extends: bool) -> float:
    """The best ratio to the plain get for a read that carries its extension in its own round
    trip: the plain Session.get plus the floor's extra cost (one that extends, or not)."""
    if where == "postgres":  # a read that extends nothing is the plain SELECT at best
        extra = lat["floor: SELECT+UPDATE"] - lat["floor: SELECT"] if extends else 0.0
    else:
        touch = lat["floor: touch" if extends else "floor: touch, none"]
        # With HEXPIRE the plain read is an HGET; without, it is a script already.
        plain = lat["floor: HGET" if where == "redis (HEXPIRE)" else "floor: script HGET"]
        extra = touch - plain
    return (lat["plain get"] + extra) / lat["plain get"]


def run(quick: bool) -> dict[str, Any]:
    calls = 500 if quick else 3000
    results: dict[str, dict[str, float]] = {}
    with servers.redis_server(servers.system_redis_binary()) as redis70:
        store = RedisStore.from_url(redis70.url, prefix="touch:")
        results["redis (scripts)"] = trio.run(measure, store, calls, redis70.port)
    found = servers.redis74_binary()
    if found is not None:
        with servers.redis_server(*found) as redis74:
            store = RedisStore.from_url(redis74.url, prefix="touch:")
            results["redis (HEXPIRE)"] = trio.run(measure, store, calls, redis74.port)
    else:
        print("no Redis 7.4 prepared (scripts/redis74.sh): the HEXPIRE path is not measured")
    with servers.postgres_server() as pg:
        pg_store = PostgresStore.from_dsn(pg.dsn, table=TABLE, max_size=4)
        results["postgres"] = trio.run(measure, pg_store, calls)
    print(f"\nSession.get with and without a touch, on loopback ({calls} calls each)")
    ratios: dict[str, float] = {}
    for where, lat in results.items():
        for name, value in lat.items():
            print(f"  {where:16} {name:20} {value:9.1f} us")
        plain = lat["plain get"]
        ratios[f"{where}: get+touch vs plain"] = lat["get + touch"] / plain
        ratios[f"{where}: get no touch vs plain"] = lat["get, no touch"] / plain
        ratios[f"{where}: plain A/A"] = lat["plain get (A/A)"] / plain
        ratios[f"{where}: get+touch best possible"] = best_possible(lat, where, True)
        ratios[f"{where}: get no touch best possible"] = best_possible(lat, where, False)
    print(
        "\nratios (get + touch: target <= 1.1; no touch: within the A/A noise; best possible:"
        " the plain get plus the floor's extra cost of extending in the read's round trip)"
    )
    for name, value in ratios.items():
        print(f"  {name:46} {value:6.3f}")
    return {k: round(v, 3) for k, v in ratios.items()} | {
        "latency_us": {w: {k: round(v, 1) for k, v in lat.items()} for w, lat in results.items()}
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick)))
