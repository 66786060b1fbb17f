"""Protection at rest: what hashed ids and EncryptedSerializer cost, in one run.

On a private redis-server on loopback (7.4 if prepared, else the system's), side by side:

* ``get`` and ``update`` with hashed keys (``prefix{tag}digest``, this release) and with the
  previous layout (``prefix{tag}rest``, the id in clear: the same store with the old
  ``key()``), plus a second old-layout store as an A/A pair: the difference between the two
  old-layout rows is the noise to judge the hashed one by;
* a read that falls back to the old key (the path this release did not take): a two-key
  script that reads the hashed key and, when it is missing, moves the old one;
* ``Session.get`` / ``Session.update`` with ``CborSerializer`` and with
  ``EncryptedSerializer(CborSerializer())``, on Redis and on the memory store (where the
  serializer is all there is), and the serializer calls alone.

Latency is the median over many sequential calls, taken in interleaved turns (in a new random
order each turn) so that machine noise hits every variant alike. Prints medians, ratios and a
final JSON line.

Usage: python bench/at_rest.py [--quick] [--server 7.0|7.4]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._timing import Op
from tests import servers
from trio_ruts import (
    CborSerializer,
    CookieOptions,
    EncryptedSerializer,
    MemoryStore,
    Session,
    SessionId,
)
from trio_ruts.stores import RedisStore, SessionStore
from trio_ruts.stores.redis.migrate import legacy_key

COOKIE = CookieOptions(max_age=3600)
VALUE = {"user": 12345, "name": "Ada Lovelace", "roles": ["admin", "dev"], "theme": "dark"}

# What every read would run if reads fell back to the old key: one more key (the id in
# clear, on the wire), and a script instead of HGET on servers with HEXPIRE.
FALLBACK_GET = """
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v or redis.call('EXISTS', KEYS[1]) == 1 then return v end
if redis.call('EXISTS', KEYS[2]) == 0 then return false end
redis.call('RENAME', KEYS[2], KEYS[1])
return redis.call('HGET', KEYS[1], ARGV[1])
"""


class LegacyKeyStore(RedisStore):
    """The store with the previous release's key layout (the id in clear)."""

    def key(self, id: SessionId) -> bytes:
        return legacy_key(self._prefix, id)


def ops_for(store: SessionStore, sid: SessionId, serializer: Any = None) -> tuple[Op, Op]:
    # Each call parses the id from its cookie text, as a request does: no cached digest.
    text = str(sid)

    async def get() -> Any:
        s = Session(store, SessionId.parse(text), cookie=COOKIE, serializer=serializer)
        return await s.get("field")

    async def update() -> Any:
        s = Session(store, SessionId.parse(text), cookie=COOKIE, serializer=serializer)
        return await s.update("field", VALUE)

    return get, update


async def seeded(store: SessionStore, serializer: Any = None) -> SessionId:
    s = Session(store, cookie=COOKIE, serializer=serializer)
    await s.update("field", VALUE)
    assert s.id is not None
    return s.id


async def shuffled_medians(ops: dict[str, Op], calls: int) -> dict[str, float]:
    """Median microseconds per call of each op; the ops take turns call by call, in a new
    random order each turn (a fixed order favours some places: the first op after another
    store's, say), after a warm-up of a tenth as many turns."""
    samples: dict[str, list[float]] = {name: [] for name in ops}
    items = list(ops.items())
    for turn in range(calls + calls // 10):
        random.shuffle(items)
        for name, op in items:
            start = time.perf_counter_ns()
            await op()
            if turn >= calls // 10:
                samples[name].append((time.perf_counter_ns() - start) / 1000)
    return {name: statistics.median(values) for name, values in samples.items()}


def cpu_us(fn: Any, calls: int) -> float:
    """Median-free, plain mean microseconds of a synchronous call (tiny, so many calls)."""
    start = time.perf_counter_ns()
    for _ in range(calls):
        fn()
    return (time.perf_counter_ns() - start) / calls / 1000


async def main(quick: bool, server: servers.RedisServer, version: str) -> dict[str, Any]:
    calls = 2000 if quick else 10000
    encrypted = EncryptedSerializer(CborSerializer(), keys=[os.urandom(32)])
    async with (
        RedisStore.from_url(server.url, prefix="hashed:") as hashed,
        LegacyKeyStore.from_url(server.url, prefix="old:") as old,
        LegacyKeyStore.from_url(server.url, prefix="old2:") as old2,
        MemoryStore() as memory,
    ):
        get_h, upd_h = ops_for(hashed, await seeded(hashed))
        get_o, upd_o = ops_for(old, await seeded(old))
        get_o2, upd_o2 = ops_for(old2, await seeded(old2))
        enc_sid = await seeded(hashed, encrypted)
        get_he, upd_he = ops_for(hashed, enc_sid, encrypted)
        get_m, upd_m = ops_for(memory, await seeded(memory))
        get_me, upd_me = ops_for(memory, await seeded(memory, encrypted), encrypted)

        transport = hashed._transport
        sha = await transport.execute(None, ("SCRIPT", "LOAD", FALLBACK_GET), idempotent=True)
        fb_text = str(await seeded(hashed))

        async def fallback_get() -> Any:
            fb_sid = SessionId.parse(fb_text)
            key = hashed.key(fb_sid)
            cmd = ("EVALSHA", sha, 2, key, legacy_key(b"hashed:", fb_sid), "field")
            return await transport.execute(key, cmd, idempotent=True)

        h_text = str(await seeded(hashed))

        async def store_get_hashed() -> Any:
            return await hashed.get(SessionId.parse(h_text), "field")

        o_text = str(await seeded(old))

        async def store_get_old() -> Any:
            return await old.get(SessionId.parse(o_text), "field")

        lat = await shuffled_medians(
            {
                "store.get hashed": store_get_hashed,
                "store.get old layout": store_get_old,
                "store.get fallback script": fallback_get,
                "Session.get hashed": get_h,
                "Session.get old layout": get_o,
                "Session.get old layout (A/A)": get_o2,
                "Session.update hashed": upd_h,
                "Session.update old layout": upd_o,
                "Session.update old layout (A/A)": upd_o2,
                "Session.get encrypted": get_he,
                "Session.update encrypted": upd_he,
                "memory Session.get cbor": get_m,
                "memory Session.get encrypted": get_me,
                "memory Session.update cbor": upd_m,
                "memory Session.update encrypted": upd_me,
            },
            calls,
        )
        sid = SessionId.generate()
        cbor = CborSerializer()
        plain, sealed = cbor.dumps(VALUE), encrypted.dumps_field("field", VALUE)
        n = calls * 10
        text = str(sid)
        cpu = {
            "key() hashed": cpu_us(lambda: hashed.key(SessionId.parse(text)), n),
            "key() old layout": cpu_us(lambda: old.key(SessionId.parse(text)), n),
            "cbor dumps": cpu_us(lambda: cbor.dumps(VALUE), n),
            "encrypted dumps_field": cpu_us(lambda: encrypted.dumps_field("field", VALUE), n),
            "cbor loads": cpu_us(lambda: cbor.loads(plain), n),
            "encrypted loads_field": cpu_us(lambda: encrypted.loads_field("field", sealed), n),
        }

    print(f"\nRedis {version} on loopback ({'quick' if quick else 'full'} run), medians")
    for name, value in lat.items():
        print(f"  {name:36} {value:9.1f} us")
    print("\nCPU per call (means, no I/O)")
    for name, value in cpu.items():
        print(f"  {name:36} {value:9.2f} us")
    ratios = {
        "get_hashed_vs_old": lat["Session.get hashed"] / lat["Session.get old layout"],
        "get_old_aa": lat["Session.get old layout (A/A)"] / lat["Session.get old layout"],
        "update_hashed_vs_old": lat["Session.update hashed"] / lat["Session.update old layout"],
        "update_old_aa": lat["Session.update old layout (A/A)"] / lat["Session.update old layout"],
        "store_get_hashed_vs_old": lat["store.get hashed"] / lat["store.get old layout"],
        "store_get_fallback_vs_hashed": lat["store.get fallback script"] / lat["store.get hashed"],
        "redis_get_encrypted_vs_cbor": lat["Session.get encrypted"] / lat["Session.get hashed"],
        "redis_update_encrypted_vs_cbor": lat["Session.update encrypted"]
        / lat["Session.update hashed"],
        "memory_get_encrypted_vs_cbor": lat["memory Session.get encrypted"]
        / lat["memory Session.get cbor"],
        "memory_update_encrypted_vs_cbor": lat["memory Session.update encrypted"]
        / lat["memory Session.update cbor"],
    }
    print("\nratios (the A/A rows are the noise; target: hashed within it)")
    for name, value in ratios.items():
        print(f"  {name:36} {value:6.3f}")
    return {k: round(v, 3) for k, v in ratios.items()} | {
        "redis_server": version,
        "latency_us": {k: round(v, 1) for k, v in lat.items()},
        "cpu_us": {k: round(v, 2) for k, v in cpu.items()},
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
    parser.add_argument("--quick", action="store_true", help="fewer calls")
    parser.add_argument("--server", choices=["7.0", "7.4"], default=None)
    args = parser.parse_args()
    print(json.dumps(run(args.quick, args.server)))
