"""incr and pop next to update, on Redis and on Postgres, in one run.

Each operation is one atomic store step (one round trip); this shows what the arithmetic
and the read-before-remove cost on top of a plain write. Private servers on loopback; the
operations take turns call by call; medians; ratios and a JSON line.

Usage: python bench/atomic_ops.py [--quick]
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
from trio_ruts import CookieOptions, Session, SessionId
from trio_ruts.stores import PostgresStore, RedisStore, SessionStore

COOKIE = CookieOptions(max_age=3600)


async def ops_on(name: str, store: SessionStore) -> dict[str, Callable[[], Awaitable[Any]]]:
    s = Session(store, cookie=COOKIE)
    await s.update("n", 0)
    await s.update("flash", "x")
    sid: SessionId | None = s.id

    async def pop() -> None:  # a pop that finds its value, as a flash message does
        session = Session(store, sid, cookie=COOKIE)
        await session.pop("flash")
        await session.update("flash", "x")

    async def update_twice() -> None:  # the same two round trips, both plain writes
        session = Session(store, sid, cookie=COOKIE)
        await session.update("other", 1)
        await session.update("flash", "x")

    return {
        f"{name}: update": lambda: Session(store, sid, cookie=COOKIE).update("n", 1),
        f"{name}: incr": lambda: Session(store, sid, cookie=COOKIE).incr("n"),
        f"{name}: update + update": update_twice,
        f"{name}: pop + update": pop,
    }


async def main(redis_url: str, dsn: str, calls: int) -> dict[str, float]:
    async with (
        RedisStore.from_url(redis_url, prefix="atomic:") as redis,
        PostgresStore.from_dsn(dsn, table="bench_atomic", max_size=4) as postgres,
    ):
        # One store at a time: an operation's latency depends on what ran just before it
        # (a Redis call right after a Postgres one finds its connection idle).
        lat = await interleaved_medians(await ops_on("redis", redis), calls)
        return lat | await interleaved_medians(await ops_on("postgres", postgres), calls)


def run(quick: bool) -> dict[str, Any]:
    calls = 500 if quick else 3000
    found = servers.redis74_binary()
    binary, env = found if found else (servers.system_redis_binary(), {})
    with servers.redis_server(binary, env) as redis, servers.postgres_server() as pg:
        lat = trio.run(main, redis.url, pg.dsn, calls)
    print(f"\nincr and pop next to update on loopback ({calls} calls each)")
    for name, value in lat.items():
        print(f"  {name:28} {value:9.1f} us")
    ratios = {}
    for store in ("redis", "postgres"):
        ratios[f"{store}_incr_vs_update"] = lat[f"{store}: incr"] / lat[f"{store}: update"]
        ratios[f"{store}_pop_vs_update"] = (
            lat[f"{store}: pop + update"] / lat[f"{store}: update + update"]
        )
    print("\nratios (target <= 1.1):")
    for name, value in ratios.items():
        print(f"  {name:28} {value:6.2f}  ({'met' if value <= 1.1 else 'MISSED'})")
    return {k: round(v, 3) for k, v in ratios.items()} | {
        "latency_us": {k: round(v, 1) for k, v in lat.items()}
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick)))
