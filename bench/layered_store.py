"""LayeredStore(Redis, Postgres) next to each layer alone, in one run.

Latency: writes (``Session.update``) to hot alone, cold alone, both one after the other, and
the layered store (mark beside the cold write, then a settle); a layered read hit next to the
hot store alone. Clients take turns call by call on private servers on loopback; medians of
many calls. Throughput: 50 tasks on warm sessions, 90% reads and 10% writes, through the
layered store and through Postgres alone, in alternating rounds; the median of the rounds.
Ratios and a JSON line.

Usage: python bench/layered_store.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
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

        # Reads use sessions of their own: a read of the session just written would wait for
        # that write's hot settle (read-your-writes in one process), not measure a hit.
        read = {name: await session_on(st) for name, st in [("hot", hot), ("layered", layered)]}
        assert await Session(layered, read["layered"].id).get("field") is not None  # warm

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
            "read: hot alone": lambda: Session(hot, read["hot"].id).get("field"),
            "read: layered hit": lambda: Session(layered, read["layered"].id).get("field"),
        }
        return await interleaved_medians(ops, calls)


async def mixed_rate(store: SessionStore, seconds: float, tasks: int = 50) -> float:
    """Operations per second of ``tasks`` tasks, each doing 90% reads of warm sessions and 10%
    writes, for ``seconds``."""
    sessions = [await session_on(store) for _ in range(200)]
    for s in sessions:  # warm: one read each fills the hot layer
        await Session(store, s.id).get("field")
    done = 0

    async def worker(seed: int) -> None:
        nonlocal done
        rng = random.Random(seed)
        while True:
            s = Session(store, rng.choice(sessions).id, cookie=COOKIE)
            if rng.random() < 0.9:
                await s.get("field")
            else:
                await s.update("field", rng.random())
            done += 1

    async with trio.open_nursery() as nursery:
        for n in range(tasks):
            nursery.start_soon(worker, n)
        await trio.sleep(0.2)  # every task running
        start, before = time.perf_counter(), done
        await trio.sleep(seconds)
        rate = (done - before) / (time.perf_counter() - start)
        nursery.cancel_scope.cancel()
    return rate


async def throughput(redis_url: str, dsn: str, rounds: int, seconds: float) -> dict[str, float]:
    """Median ops/s of the mixed load, layered and Postgres alone in alternating rounds."""
    rates: dict[str, list[float]] = {"layered": [], "postgres": []}
    async with (
        RedisStore.from_url(redis_url, prefix="mix:") as hot,
        PostgresStore.from_dsn(dsn, table="bench_mixed", max_size=10) as cold,
        LayeredStore(hot, cold) as layered,
    ):
        for _ in range(rounds):
            for name, store in (("layered", layered), ("postgres", cold)):
                rates[name].append(await mixed_rate(store, seconds))
    return {name: statistics.median(values) for name, values in rates.items()}


def run(quick: bool) -> dict[str, Any]:
    calls = 500 if quick else 3000
    found = servers.redis74_binary()
    binary, env = found if found else (servers.system_redis_binary(), {})
    with servers.redis_server(binary, env) as redis, servers.postgres_server() as pg:
        lat = trio.run(main, redis.url, pg.dsn, calls)
        mixed = trio.run(throughput, redis.url, pg.dsn, 3 if quick else 5, 1.0 if quick else 3.0)
    print(f"\nLayeredStore(Redis, Postgres) on loopback ({calls} calls each)")
    for name, value in lat.items():
        print(f"  {name:30} {value:9.1f} us")
    print("mixed load, 50 tasks, 90% reads of warm sessions (median of the rounds)")
    for name, value in mixed.items():
        print(f"  {name:30} {value:9.0f} ops/s")
    hot, cold = lat["write: hot (Redis) alone"], lat["write: cold (Postgres) alone"]
    ratios = {
        "layered_write_vs_max": lat["write: layered"] / max(hot, cold),
        "layered_write_vs_sequential": lat["write: layered"] / lat["write: hot then cold"],
        "layered_read_hit_vs_hot": lat["read: layered hit"] / lat["read: hot alone"],
        "layered_mixed_vs_postgres": mixed["layered"] / mixed["postgres"],
    }
    targets = {
        "layered_write_vs_max": ("<=", 1.2),
        "layered_read_hit_vs_hot": ("<=", 1.2),
        "layered_mixed_vs_postgres": (">=", 3.0),
    }
    print("\nratios (target):")
    for name, value in ratios.items():
        verdict = ""
        if name in targets:
            op, bound = targets[name]
            ok = value <= bound if op == "<=" else value >= bound
            verdict = f"  ({op} {bound}: {'met' if ok else 'MISSED'})"
        print(f"  {name:30} {value:6.2f}{verdict}")
    return {k: round(v, 3) for k, v in ratios.items()} | {
        "latency_us": {k: round(v, 1) for k, v in lat.items()},
        "mixed_ops_per_s": {k: round(v) for k, v in mixed.items()},
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick)))
