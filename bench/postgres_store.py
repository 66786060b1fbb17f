"""PostgresStore latency next to bare asyncpg, in one run, on a private PostgreSQL.

* bridged:  ``pool.fetchval`` of the equivalent bare SELECT, through the store's own
            trio-asyncio loop (the floor for a store that runs asyncpg from trio);
* store:    ``PostgresStore.get`` and ``Session.update``;
* asyncio:  the same bare SELECT with asyncpg on plain asyncio (no bridge), for reference.

The trio-side clients take turns call by call; the asyncio client runs after them in its
own event loop. Medians of many calls; prints ratios and a final JSON line.

Usage: python bench/postgres_store.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._timing import interleaved_medians
from tests import servers
from trio_ruts import CookieOptions, Session
from trio_ruts.stores import PostgresStore
from trio_ruts.stores._asyncio import bridge
from trio_ruts.stores.postgres._store import _keep_session_state

TABLE = "bench_sessions"
BARE = f"SELECT value FROM {TABLE}_fields WHERE session_id = $1 AND field = $2"


async def trio_side(dsn: str, calls: int) -> tuple[dict[str, float], bytes]:
    cookie = CookieOptions(max_age=3600)
    async with PostgresStore.from_dsn(dsn, table=TABLE, max_size=4) as store:
        session = Session(store, cookie=cookie)
        await session.update("field", "value")
        assert session.id is not None
        sid = session.id
        bare = bridge(store._loop, store._pool.fetchval)

        ops: dict[str, Callable[[], Awaitable[Any]]] = {
            "bare asyncpg via trio-asyncio": lambda: bare(BARE, sid.bytes, "field"),
            "store.get": lambda: store.get(sid, "field"),
            "Session.get": lambda: Session(store, sid, cookie=cookie).get("field"),
            "Session.update": lambda: Session(store, sid, cookie=cookie).update("field", "v"),
        }
        return await interleaved_medians(ops, calls), sid.bytes


async def asyncio_side(dsn: str, sid: bytes, calls: int) -> float:
    # The store's own pool settings (no per-release reset query), for a like-for-like floor.
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4, reset=_keep_session_state)
    try:
        for _ in range(calls // 10):
            await pool.fetchval(BARE, sid, "field")
        samples = []
        for _ in range(calls):
            start = time.perf_counter_ns()
            await pool.fetchval(BARE, sid, "field")
            samples.append((time.perf_counter_ns() - start) / 1000)
        return statistics.median(samples)
    finally:
        await pool.close()


def run(quick: bool) -> dict[str, Any]:
    calls = 1000 if quick else 5000
    with servers.postgres_server() as server:
        lat, sid = trio.run(trio_side, server.dsn, calls)
        lat["bare asyncpg on asyncio"] = asyncio.run(asyncio_side(server.dsn, sid, calls))
    floor = lat["bare asyncpg via trio-asyncio"]
    print(f"\nPostgreSQL on loopback ({'quick' if quick else 'full'} run, {calls} calls each)")
    print(f"{'client':32} {'median latency':>15} {'vs bridged':>11}")
    for name, value in lat.items():
        print(f"{name:32} {value:12.1f} us {value / floor:10.2f}x")
    ratio = lat["store.get"] / floor
    verdict = "met" if ratio <= 1.3 else "MISSED"
    print(f"\npostgres_get_vs_bridged {ratio:.2f} (target <= 1.3: {verdict})")
    return {
        "postgres_get_vs_bridged": round(ratio, 3),
        "postgres_update_vs_bridged": round(lat["Session.update"] / floor, 3),
        "postgres_bridge_cost": round(floor / lat["bare asyncpg on asyncio"], 3),
        "latency_us": {k: round(v, 1) for k, v in lat.items()},
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick)))
