"""Users (SPEC section 9): what a login and a device list cost, in one run.

* ``login`` next to ``regenerate`` (both move the session to a fresh id; a login also records
  it in the user's index in the same store step), through ``Session`` and at the store level,
  on Redis (a single 7.4 server) and on PostgreSQL; target: login <= 1.5x regenerate;
* ``store.user_sessions`` for a user with 100 live sessions on Redis, next to a plain
  ``store.get``; target: under 2 ms.

The ops take turns call by call; medians of many calls. Prints a table and a final JSON line.

Usage: python bench/users.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._timing import interleaved_medians
from tests import servers
from trio_ruts import CookieOptions, Session
from trio_ruts.stores import PostgresStore, RedisStore, SessionStore

COOKIE = CookieOptions(max_age=3600)


async def measure(store: SessionStore, calls: int, listing: bool) -> dict[str, float]:
    regenerated = Session(store, cookie=COOKIE)
    await regenerated.update("field", "value")
    logged = Session(store, cookie=COOKIE)
    await logged.update("field", "value")
    await logged.login("bench-login", label="bench")
    a, b = regenerated.id, logged.id
    assert a is not None
    assert b is not None
    ids = {"a": a, "b": b}

    async def store_rename() -> None:
        new = ids["a"].regenerate()
        await store.rename(ids["a"], new)
        ids["a"] = new

    async def store_login() -> None:
        new = ids["b"].regenerate()
        await store.login(ids["b"], new, "bench-login", "bench", 3600)
        ids["b"] = new

    ops = {
        "Session.regenerate": regenerated.regenerate,
        "Session.login": lambda: logged.login("bench-login", label="bench"),
    }
    found = await interleaved_medians(ops, calls)
    found.update(
        await interleaved_medians({"store.rename": store_rename, "store.login": store_login}, calls)
    )
    if listing:
        for _ in range(100):
            s = Session(store, cookie=COOKIE)
            await s.update("field", "value")
            await s.login("bench-user", label="device")
        assert len(await store.user_sessions("bench-user")) == 100
        plain = Session(store, cookie=COOKIE)
        await plain.update("field", "value")
        sid = plain.id
        assert sid is not None
        listing_ops = {
            "store.get": lambda: store.get(sid, "field"),
            "store.user_sessions (100)": lambda: store.user_sessions("bench-user"),
        }
        found.update(await interleaved_medians(listing_ops, max(100, calls // 5)))
    return found


async def main(redis_url: str, dsn: str, calls: int) -> dict[str, dict[str, float]]:
    results = {}
    async with RedisStore.from_url(redis_url, prefix="bench:") as redis:
        results["redis"] = await measure(redis, calls, listing=True)
    async with PostgresStore.from_dsn(dsn, table="bench_users", sweep_interval=None) as pg:
        results["postgres"] = await measure(pg, calls, listing=False)
    return results


def run(quick: bool) -> dict[str, Any]:
    calls = 300 if quick else 2000
    found = servers.redis74_binary()
    binary, env = found if found is not None else (servers.system_redis_binary(), {})
    with servers.redis_server(binary, env) as redis, servers.postgres_server() as pg:
        results = trio.run(main, redis.url, pg.dsn, calls)
    out: dict[str, Any] = {"latency_us": {}}
    print(f"\nusers bench ({'quick' if quick else 'full'} run, {calls} calls each, medians)")
    for backend, lat in results.items():
        print(f"\n{backend}")
        for name, value in lat.items():
            print(f"  {name:28} {value:10.1f} us")
            out["latency_us"][f"{backend} {name}"] = round(value, 1)
        session_ratio = lat["Session.login"] / lat["Session.regenerate"]
        store_ratio = lat["store.login"] / lat["store.rename"]
        for what, ratio in (("Session", session_ratio), ("store", store_ratio)):
            verdict = "met" if ratio <= 1.5 else "MISSED"
            print(f"  {backend}_{what.lower()}_login_vs_regenerate {ratio:.2f} (<= 1.5: {verdict})")
            out[f"{backend}_{what.lower()}_login_vs_regenerate"] = round(ratio, 3)
    listing = results["redis"]["store.user_sessions (100)"] / 1000
    verdict = "met" if listing < 2 else "MISSED"
    print(f"\nredis_user_sessions_100_ms {listing:.3f} (< 2 ms: {verdict}); ", end="")
    print(f"a plain get: {results['redis']['store.get'] / 1000:.3f} ms")
    out["redis_user_sessions_100_ms"] = round(listing, 3)
    out["redis_get_ms"] = round(results["redis"]["store.get"] / 1000, 3)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick)))
