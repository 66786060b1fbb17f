"""Live revocation latency: from the call that ends a session to its watcher's cancellation,
on Redis (one server, a 3-master cluster with sharded pub/sub, and a redis-py client on each)
and Postgres, with 1,000 watchers open on the store.

One store (A) holds 1,000 watches, each on its own session; a second store instance (B) over
the same server ends them one at a time with ``delete()``, so each notification crosses
instances as it would between app servers. Latency is measured from just before B's delete
to the moment A's watcher body sees its cancellation (both in this process, on trio's
clock), so it includes B's round trip, the server's publish and A's delivery.

Usage: python bench/watch.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import servers
from trio_ruts import CookieOptions, Session, SessionId
from trio_ruts.stores import PostgresStore, RedisStore, SessionStore

COOKIE = CookieOptions(max_age=3600)
WATCHERS = 1000


async def measure(store: SessionStore, other: SessionStore, ends: int) -> dict[str, float]:
    async with store, other:
        ids: list[SessionId] = []
        for _ in range(WATCHERS):
            s = Session(store, cookie=COOKIE)
            await s.update("user", "ada")
            assert s.id is not None
            ids.append(s.id)
        cancelled: dict[SessionId, float] = {}
        events = {sid: trio.Event() for sid in ids}

        async def watch(sid: SessionId, *, task_status: trio.TaskStatus[None]) -> None:
            try:
                async with Session(store, sid, cookie=COOKIE).watch():
                    task_status.started()
                    await trio.sleep_forever()
            finally:
                cancelled[sid] = trio.current_time()
                events[sid].set()

        latencies: list[float] = []
        async with trio.open_nursery() as nursery:
            for sid in ids:
                await nursery.start(watch, sid)
            for sid in ids[:ends]:
                start = trio.current_time()
                await other.delete(sid)
                with trio.fail_after(5):
                    await events[sid].wait()
                latencies.append(cancelled[sid] - start)
            nursery.cancel_scope.cancel()
        latencies.sort()
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        return {"median_ms": statistics.median(latencies) * 1000, "p99_ms": p99 * 1000}


def _redispy(url: str) -> Any:
    import redis.asyncio

    pool = redis.asyncio.BlockingConnectionPool.from_url(url, max_connections=20)
    return redis.asyncio.Redis(connection_pool=pool)


def _redispy_cluster(nodes: list[servers.RedisServer]) -> Any:
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    return RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", n.port) for n in nodes])


def run(quick: bool) -> dict[str, Any]:
    ends = 100 if quick else WATCHERS
    results: dict[str, dict[str, float]] = {}
    with servers.redis_server(servers.system_redis_binary()) as redis:
        a = RedisStore.from_url(redis.url, prefix="watch-bench:")
        b = RedisStore.from_url(redis.url, prefix="watch-bench:")
        results["redis"] = trio.run(measure, a, b, ends)
        a = RedisStore.from_client(_redispy(redis.url), prefix="watch-bench-py:")
        b = RedisStore.from_url(redis.url, prefix="watch-bench-py:")
        results["redis-py"] = trio.run(measure, a, b, ends)
    with servers.redis_cluster(servers.system_redis_binary()) as nodes:
        urls = [n.url for n in nodes]
        a = RedisStore.cluster(urls, prefix="watch-bench:")
        b = RedisStore.cluster(urls, prefix="watch-bench:")
        results["cluster"] = trio.run(measure, a, b, ends)
        a = RedisStore.from_client(_redispy_cluster(nodes), prefix="watch-bench-py:")
        b = RedisStore.cluster(urls, prefix="watch-bench-py:")
        results["cluster-py"] = trio.run(measure, a, b, ends)
    with servers.postgres_server() as pg:
        a = PostgresStore.from_dsn(pg.dsn, table="bench_watch", sweep_interval=None)
        b = PostgresStore.from_dsn(pg.dsn, table="bench_watch", sweep_interval=None)
        results["postgres"] = trio.run(measure, a, b, ends)
    print(f"\nwatch notification latency, {WATCHERS} watchers open, {ends} sessions ended")
    for where, found in results.items():
        print(f"  {where:10} median {found['median_ms']:7.2f} ms   p99 {found['p99_ms']:7.2f} ms")
    return {w: {k: round(v, 3) for k, v in r.items()} for w, r in results.items()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick)))
