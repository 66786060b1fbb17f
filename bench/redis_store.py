"""RedisStore latency and throughput next to raw and third-party clients, in one run.

Compares, on a private redis-server on loopback (7.4 if prepared, else the system's):

* raw:       one HGET over a bare trio stream, hiredis packing and parsing (the floor);
* store.get: ``RedisStore.get`` (and ``Session.get`` for reference), ``Session.update``;
* coredis:   coredis ``hget`` on trio;
* redis-py:  redis-py asyncio ``hget`` through trio-asyncio.

Latency is the median over many sequential calls, taken in interleaved rounds so that machine
noise hits every client alike; throughput is operations per second with 50 concurrent tasks,
median of several rounds. Prints ratios, the targets, and a final JSON line.

Usage: python bench/redis_store.py [--quick] [--server 7.0|7.4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import hiredis
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._timing import Op, interleaved_medians
from tests import servers
from trio_ruts import CookieOptions, Session
from trio_ruts.stores import RedisStore

TASKS = 50


class RawConnection:
    """The floor: a trio stream and hiredis, nothing else."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.reader = hiredis.Reader()

    @classmethod
    async def open(cls, port: int) -> RawConnection:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def call(self, *args: Any) -> Any:
        await self.stream.send_all(hiredis.pack_command(args))
        reply = self.reader.gets()
        while reply is False:
            self.reader.feed(await self.stream.receive_some(65536))
            reply = self.reader.gets()
        return reply


async def throughput(makers: dict[str, list[Op]], seconds: float, rounds: int) -> dict[str, float]:
    """Median operations per second over ``rounds`` runs of ``TASKS`` concurrent tasks."""
    results: dict[str, list[float]] = {name: [] for name in makers}
    for _ in range(rounds):
        for name, per_task in makers.items():
            count = 0
            deadline = trio.current_time() + seconds

            async def run(op: Op, deadline: float = deadline) -> None:
                nonlocal count
                while trio.current_time() < deadline:
                    await op()
                    count += 1

            start = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for op in per_task:
                    nursery.start_soon(run, op)
            results[name].append(count / (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in results.items()}


async def main(quick: bool, server: servers.RedisServer, version: str) -> dict[str, Any]:
    import coredis
    import redis.asyncio
    import trio_asyncio

    calls, rounds, seconds = (2000, 4, 0.5) if quick else (10000, 8, 1.0)
    port = server.port
    cookie = CookieOptions(max_age=3600)
    async with (
        RedisStore.from_url(server.url, pool_size=TASKS) as store,
        trio_asyncio.open_loop(),
        coredis.Redis(host="127.0.0.1", port=port, max_connections=TASKS) as core,
    ):
        pool = redis.asyncio.BlockingConnectionPool.from_url(server.url, max_connections=TASKS)
        redispy = redis.asyncio.Redis(connection_pool=pool)
        session = Session(store, cookie=cookie)
        await session.update("field", "value")
        assert session.id is not None
        sid = session.id
        key = store.key(sid)
        raw = [await RawConnection.open(port) for _ in range(TASKS)]
        assert await raw[0].call("HGET", key, "field") is not None

        def raw_op(conn: RawConnection) -> Op:
            return lambda: conn.call("HGET", key, "field")

        async def store_get() -> Any:
            return await store.get(sid, "field")

        async def session_get() -> Any:
            return await Session(store, sid, cookie=cookie).get("field")

        async def session_update() -> Any:
            return await Session(store, sid, cookie=cookie).update("field", "value")

        async def core_get() -> Any:
            return await core.hget(key, "field")

        bridged = trio_asyncio.aio_as_trio(redispy.hget)

        async def redispy_get() -> Any:
            return await bridged(key, "field")

        lat = await interleaved_medians(
            {
                "raw HGET": raw_op(raw[0]),
                "store.get": store_get,
                "Session.get": session_get,
                "Session.update": session_update,
                "coredis hget": core_get,
                "redis-py hget (trio-asyncio)": redispy_get,
            },
            calls,
        )
        thr = await throughput(
            {
                "raw HGET": [raw_op(c) for c in raw],
                "store.get": [store_get] * TASKS,
                "Session.update": [session_update] * TASKS,
                "coredis hget": [core_get] * TASKS,
                "redis-py hget (trio-asyncio)": [redispy_get] * TASKS,
            },
            seconds,
            rounds,
        )
        for conn in raw:
            await conn.stream.aclose()
        await trio_asyncio.aio_as_trio(redispy.aclose)()
        await trio_asyncio.aio_as_trio(pool.disconnect)()

    print(f"\nRedis {version} on loopback ({'quick' if quick else 'full'} run)")
    print(f"{'client':32} {'median latency':>15} {'vs raw':>8} {'50-task ops/s':>14} {'vs raw':>8}")
    for name in lat:
        ops = thr.get(name)
        print(
            f"{name:32} {lat[name]:12.1f} us {lat[name] / lat['raw HGET']:7.2f}x "
            + (f"{ops:14,.0f} {ops / thr['raw HGET']:7.2f}x" if ops else f"{'':14} {'':8}")
        )
    ratios = {
        "redis_get_vs_raw": lat["store.get"] / lat["raw HGET"],
        "redis_update_vs_raw": lat["Session.update"] / lat["raw HGET"],
        "redis_throughput_vs_raw": thr["store.get"] / thr["raw HGET"],
        "redis_throughput_vs_coredis": thr["store.get"] / thr["coredis hget"],
        "redis_throughput_vs_redispy": thr["store.get"] / thr["redis-py hget (trio-asyncio)"],
    }
    targets = {  # issue 14's: no slower than the raw round trip, pipelining pays under load
        "redis_get_vs_raw": ("<=", 1.0),
        "redis_throughput_vs_raw": (">=", 1.5),
        "redis_throughput_vs_coredis": (">=", 4.0),
        "redis_throughput_vs_redispy": (">=", 8.0),
    }
    print("\nratios (target):")
    for name, value in ratios.items():
        if name in targets:
            op, bound = targets[name]
            ok = value <= bound if op == "<=" else value >= bound
            print(f"  {name:30} {value:6.2f}  ({op} {bound}: {'met' if ok else 'MISSED'})")
        else:
            print(f"  {name:30} {value:6.2f}")
    return {k: round(v, 3) for k, v in ratios.items()} | {
        "redis_server": version,
        "latency_us": {k: round(v, 1) for k, v in lat.items()},
        "ops_per_s": {k: round(v) for k, v in thr.items()},
    }


def run(quick: bool, version: str | None = None) -> dict[str, Any]:
    found = servers.redis74_binary()
    if version in (None, "7.4") and found is not None:
        binary, env, version = found[0], found[1], "7.4"
    elif version == "7.4":
        raise SystemExit("no Redis 7.4 prepared: run bash scripts/redis74.sh first")
    else:
        binary, env, version = servers.system_redis_binary(), {}, "7.0"
    with servers.redis_server(binary, env) as server:
        return trio.run(main, quick, server, version)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls (about 20 s)")
    parser.add_argument("--server", choices=["7.0", "7.4"], default=None)
    args = parser.parse_args()
    print(json.dumps(run(args.quick, args.server)))
