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
from tests import servers
from trio_ruts import CookieOptions, Expiry, Session
from trio_ruts.stores import PostgresStore, RedisStore, SessionStore

COOKIE = CookieOptions(max_age=3600)
PLAIN = Expiry(idle=None)
SLIDING = Expiry(idle=3600)
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


async def measure(store: SessionStore, calls: int) -> dict[str, float]:
    async with store:
        ops, prepare = await reads_on(store)
        return await interleaved_medians(ops, calls, prepare)


def run(quick: bool) -> dict[str, Any]:
    calls = 500 if quick else 3000
    results: dict[str, dict[str, float]] = {}
    with servers.redis_server(servers.system_redis_binary()) as redis70:
        store = RedisStore.from_url(redis70.url, prefix="touch:")
        results["redis (scripts)"] = trio.run(measure, store, calls)
    found = servers.redis74_binary()
    if found is not None:
        with servers.redis_server(*found) as redis74:
            store = RedisStore.from_url(redis74.url, prefix="touch:")
            results["redis (HEXPIRE)"] = trio.run(measure, store, calls)
    else:
        print("no Redis 7.4 prepared (scripts/redis74.sh): the HEXPIRE path is not measured")
    with servers.postgres_server() as pg:
        store = PostgresStore.from_dsn(pg.dsn, table="bench_touch", max_size=4)
        results["postgres"] = trio.run(measure, store, calls)
    print(f"\nSession.get with and without a touch, on loopback ({calls} calls each)")
    ratios: dict[str, float] = {}
    for where, lat in results.items():
        for name, value in lat.items():
            print(f"  {where:16} {name:16} {value:9.1f} us")
        plain = lat["plain get"]
        ratios[f"{where}: get+touch vs plain"] = lat["get + touch"] / plain
        ratios[f"{where}: get no touch vs plain"] = lat["get, no touch"] / plain
        ratios[f"{where}: plain A/A"] = lat["plain get (A/A)"] / plain
    print("\nratios (get + touch: target <= 1.1; no touch: within the A/A noise)")
    for name, value in ratios.items():
        print(f"  {name:40} {value:6.3f}")
    return {k: round(v, 3) for k, v in ratios.items()} | {
        "latency_us": {w: {k: round(v, 1) for k, v in lat.items()} for w, lat in results.items()}
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick)))
