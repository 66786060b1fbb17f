"""LayeredStore(Redis, Postgres) latency next to each layer alone, in one run.

Writes (``Session.update``): hot alone, cold alone, both one after the other, and the layered
store (both at once). Reads: a layered hit next to the hot store alone. Clients take turns call
by call on private servers on loopback; medians of many calls; ratios and a JSON line.

Usage: python bench/layered_store.py [--quick]
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
from trio_ruts import CookieOptions, Session
from trio_ruts.stores import LayeredStore, PostgresStore, RedisStore, SessionStore

COOKIE = CookieOptions(max_age=3600)


async def session_on(store: SessionStore) -> Session:
    s = Session(store, cookie=COOKIE)
    await s.update("field", "value")
    return s


async def main(redis_url: str, dsn: str, calls: int) -> dict[str, float]:
    async with (
        RedisStore.from_url(redis_url, prefix="bench:") as hot,
        PostgresStore.from_dsn(dsn, table="bench_layered", max_size=4) as cold,
        LayeredStore(hot, cold) as layered,
    ):
        on = {
            name: await session_on(st)
            for name, st in [("hot", hot), ("cold", cold), ("layered", layered)]
        }

        def update(s: Session) -> Callable[[], Awaitable[Any]]:
            return lambda: Session(s.store, s.id, cookie=COOKIE).update("field", "v2")

        async def hot_then_cold() -> None:  # what a naive two-layer write costs
            await update(on["hot"])()
            await update(on["cold"])()

        ops: dict[str, Callable[[], Awaitable[Any]]] = {
            "write: hot (Redis) alone": update(on["hot"]),
            "write: cold (Postgres) alone": update(on["cold"]),
            "write: hot then cold": hot_then_cold,
            "write: layered": update(on["layered"]),
            "read: hot alone": lambda: Session(hot, on["hot"].id).get("field"),
            "read: layered hit": lambda: Session(layered, on["layered"].id).get("field"),
        }
        return await interleaved_medians(ops, calls)


def run(quick: bool) -> dict[str, Any]:
    calls = 500 if quick else 3000
    found = servers.redis74_binary()
    binary, env = found if found else (servers.system_redis_binary(), {})
    with servers.redis_server(binary, env) as redis, servers.postgres_server() as pg:
        lat = trio.run(main, redis.url, pg.dsn, calls)
    print(f"\nLayeredStore(Redis, Postgres) on loopback ({calls} calls each)")
    for name, value in lat.items():
        print(f"  {name:30} {value:9.1f} us")
    hot, cold = lat["write: hot (Redis) alone"], lat["write: cold (Postgres) alone"]
    ratios = {
        "layered_write_vs_max": lat["write: layered"] / max(hot, cold),
        "layered_write_vs_sequential": lat["write: layered"] / lat["write: hot then cold"],
        "layered_write_vs_sum": lat["write: layered"] / (hot + cold),
        # The best any concurrent write can do against the sequential pair:
        "best_possible_vs_sequential": max(hot, cold) / (hot + cold),
        "layered_read_hit_vs_hot": lat["read: layered hit"] / lat["read: hot alone"],
    }
    targets = {
        "layered_write_vs_max": 1.15,
        "layered_write_vs_sequential": 0.75,
        "layered_read_hit_vs_hot": 1.2,
    }
    print("\nratios (target):")
    for name, value in ratios.items():
        bound = targets.get(name)
        verdict = (
            "" if bound is None else f"  (<= {bound}: {'met' if value <= bound else 'MISSED'})"
        )
        print(f"  {name:30} {value:6.2f}{verdict}")
    return {k: round(v, 3) for k, v in ratios.items()} | {
        "latency_us": {k: round(v, 1) for k, v in lat.items()}
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick)))
