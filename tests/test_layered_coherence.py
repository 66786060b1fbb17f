"""The layered store's coherence rules (SPEC section 4), under adversarial schedules.

Two LayeredStore instances (two app servers) over the same two layers: one private Redis (with
and without HEXPIRE) over one Postgres, and one MemoryStore over another. Many tasks write,
insert, remove, read (cache fills), rename, expire and delete shared sessions and fields
through both instances, under random deadlines from 0 to a few times the measured latency (so
cancellations land mid-flight), while the cold layer refuses some writes and the hot Redis is
frozen, killed and restarted. Violations are counted over thousands of operations:

1. convergence: after quiescence, every entry hot holds equals cold (read each layer
   directly);
2. read-your-writes: a read that starts after a write returned, on either instance, sees it;
3. no phantoms: no read ever returns a value whose cold write failed;
4. no hot failure escapes a call (any other exception fails the test).

``TRIO_RUTS_CHAOS_STEPS`` sets the operations per schedule (default 3000).
"""

from __future__ import annotations

import itertools
import math
import os
import random
import signal
import statistics
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from tests import servers
from tests.layered_kit import Faulty, settled
from trio_ruts import (
    CborSerializer,
    CookieOptions,
    Session,
    SessionError,
    SessionId,
    StoreError,
)
from trio_ruts.stores import (
    CacheEntry,
    CacheRead,
    HotLayer,
    LayeredStore,
    Marker,
    MemoryStore,
    Placement,
    PostgresStore,
    RedisStore,
    SessionStore,
    Write,
)

CBOR = CborSerializer()
FIELDS = ("a", "b", "c")
STEPS = int(os.environ.get("TRIO_RUTS_CHAOS_STEPS", "3000"))


@dataclass
class Rig:
    """Two app servers' LayeredStores, and direct views of the shared layers."""

    a: LayeredStore
    b: LayeredStore
    hot: HotLayer
    cold: SessionStore
    hots: tuple[Faulty, Faulty]
    colds: tuple[Faulty, Faulty]
    redis: servers.RedisServer | None = None
    stats: Counter[str] = field(default_factory=Counter)

    def failed(self) -> set[bytes]:
        return self.colds[0].failed | self.colds[1].failed


def update(id: SessionId | None, name: str, value: bytes, **kw: object) -> Write:
    fresh = SessionId.generate() if id is None else id.regenerate()
    args: dict[str, object] = {
        "only_if_absent": False,
        "field_ttl": None,
        "key_ttl": 600,
        "fresh_id": fresh,
    }
    args.update(kw)
    return Write(id=id, field=name, value=value, **args)  # type: ignore[arg-type]


@asynccontextmanager
async def memory_rig(seed: int) -> AsyncIterator[Rig]:
    hot, cold = MemoryStore(), MemoryStore()
    async with hot, cold:
        hots = Faulty(hot, seed=seed), Faulty(hot, seed=seed + 1)
        colds = Faulty(cold, seed=seed + 2), Faulty(cold, seed=seed + 3)
        for h in hots:  # as slow as cold at times: marks and settles land in every order
            h.jitter = 0.003
            h.stall_rate, h.stall = 0.05, 0.04  # and now and then after a whole other change
        for c in colds:
            c.jitter = 0.003
        async with (
            LayeredStore(hots[0], colds[0], hot_timeout=0.05) as a,
            LayeredStore(hots[1], colds[1], hot_timeout=0.05) as b,
        ):
            yield Rig(a, b, hot, cold, hots, colds)


@asynccontextmanager
async def redis_rig(
    seed: int, redis: servers.RedisServer, pg: servers.PostgresServer
) -> AsyncIterator[Rig]:
    prefix, table = f"chaos{uuid.uuid4().hex[:6]}:", f"chaos_{uuid.uuid4().hex[:8]}"
    hot_a, hot_b = (
        RedisStore.from_url(redis.url, prefix=prefix, connect_timeout=0.2) for _ in "ab"
    )
    cold_a, cold_b = (
        PostgresStore.from_dsn(pg.dsn, table=table, sweep_interval=None) for _ in "ab"
    )
    hots = Faulty(hot_a, seed=seed), Faulty(hot_b, seed=seed + 1)
    colds = Faulty(cold_a, seed=seed + 2), Faulty(cold_b, seed=seed + 3)
    for h in hots:
        h.jitter = 0.0005
    for c in colds:
        c.jitter = 0.001
    async with (
        LayeredStore(hots[0], colds[0], hot_timeout=0.2, hot_retry=0.2, write_hold=1.0) as a,
        LayeredStore(hots[1], colds[1], hot_timeout=0.2, hot_retry=0.2, write_hold=1.0) as b,
    ):
        yield Rig(a, b, hot_a, cold_a, hots, colds, redis)


# -- the schedules ----------------------------------------------------------------------------


async def measure_latency(rig: Rig, sid: SessionId) -> float:
    times = []
    for i in range(10):
        start = trio.current_time()
        await rig.a.write(update(sid, "a", CBOR.dumps(f"m{i}")))
        await rig.b.get(sid, "b")
        times.append((trio.current_time() - start) / 2)
    return statistics.median(times)


async def chaos(
    rig: Rig, seed: int, steps: int, *, workers: int = 8, rounds: int = 1
) -> Counter[str]:
    """Random operations from ``workers`` tasks over both instances, in ``rounds``: after
    each, the layers are let quiesce and rule 1 is checked on the sessions the round touched
    (a stale copy that a later change would have hidden is caught too); returns violations."""
    bad: Counter[str] = Counter()
    ids: list[SessionId] = []
    known: set[SessionId] = set()
    touched: set[SessionId] = set()
    for _ in range(6):
        w = update(None, "a", CBOR.dumps("init"))
        known.add(w.fresh_id)
        ids.append((await rig.a.write(w)).id)
    latency = await measure_latency(rig, ids[0])
    for c in rig.colds:
        c.fail_rate = 0.05  # from now on the cold layer refuses one write in twenty
    serial = itertools.count()
    failed = rig.failed

    async def step(rng: random.Random) -> None:
        sid = rng.choice(ids[-8:])
        touched.add(sid)
        name = rng.choice(FIELDS)
        store = rng.choice((rig.a, rig.b))
        roll = rng.random()
        if roll < 0.42:
            value = CBOR.dumps(f"v{next(serial)}")
            ttl = rng.choice((None, None, None, 1, 2, -1))
            w = update(sid, name, value, field_ttl=ttl, only_if_absent=roll < 0.07)
            known.add(w.fresh_id)
            touched.add(w.fresh_id)
            result = await store.write(w)
            if result.id != sid:
                ids.append(result.id)
        elif roll < 0.52:
            await store.remove(sid, name)
        elif roll < 0.86:
            got = await store.get(sid, name)
            rig.stats["reads"] += 1
            if got is not None and got in failed():
                bad["phantom (rule 3)"] += 1
        elif roll < 0.91:
            new = sid.regenerate()
            known.add(new)
            touched.add(new)
            if await store.rename(sid, new) is not None:
                ids.append(new)
        elif roll < 0.97:
            await store.expire(sid, rng.choice((1, 2, -1, 600)))
        else:
            await store.delete(sid)

    rngs = [random.Random(seed * 1000 + n) for n in range(workers)]

    async def worker(rng: random.Random) -> None:
        for _ in range(steps // workers // rounds):
            deadline = rng.choice((math.inf, math.inf, rng.uniform(0, 3 * latency)))
            with trio.move_on_after(deadline) as scope:
                try:
                    await step(rng)
                except StoreError:  # a refused cold write (injected), or a dead cold layer
                    rig.stats["cold errors"] += 1
            rig.stats["ops"] += 1
            rig.stats["cancelled"] += scope.cancelled_caught

    async def run_rounds() -> None:
        for _ in range(rounds):
            async with trio.open_nursery() as nursery:
                for rng in rngs:
                    nursery.start_soon(worker, rng)
            if rounds > 1:
                await quiesce(rig)
                try:
                    bad.update(await divergence(rig, touched))
                    rig.stats["checks"] += 1
                except StoreError:  # the hot server is down for an outage: check next round
                    continue
                touched.clear()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_rounds)
        if rig.redis is not None:
            nursery.start_soon(hot_outages, rig.redis, latency * steps / workers)
    for c in rig.colds:
        c.fail_rate = 0.0
    await quiesce(rig)
    bad.update(await divergence(rig, known))
    return bad


async def hot_outages(redis: servers.RedisServer, duration: float) -> None:
    """Freeze the hot Redis (its queued commands run when it thaws), then kill and restart
    it (empty), during the run."""
    await trio.sleep(duration * 0.25)
    redis.proc.send_signal(signal.SIGSTOP)
    try:
        await trio.sleep(0.5)
    finally:
        redis.proc.send_signal(signal.SIGCONT)
    await trio.sleep(duration * 0.25)
    redis.stop()
    await trio.sleep(0.5)
    redis.start()


async def quiesce(rig: Rig) -> None:
    """Wait until neither instance has a hot ending running or a hot copy left to drop, then
    one hot_timeout more."""
    with trio.fail_after(30):
        while rig.a._dirty or rig.b._dirty or rig.a._settling or rig.b._settling:
            await trio.sleep(0.05)
    await trio.sleep(0.25)


async def divergence(rig: Rig, ids: set[SessionId]) -> Counter[str]:
    """Rule 1: every entry hot holds agrees with cold (each layer read directly)."""
    bad: Counter[str] = Counter()
    for sid in ids:
        record = await rig.cold.get_all(sid)
        cold = {} if record is None else {k: f.value for k, f in record.fields.items()}
        for name in FIELDS:
            read = await rig.hot.cache_read(sid, name)
            if isinstance(read.value, bytes):
                bad["hot value cold lacks or differs (rule 1)"] += cold.get(name) != read.value
            elif read.value is Marker.MISSING:
                bad["hot says absent, cold holds it (rule 1)"] += name in cold
    return +bad


async def read_your_writes(rig: Rig, seed: int, rounds: int) -> Counter[str]:
    """Rule 2: sequential write-then-read pairs across the two instances, while other tasks
    write, read (fill) and get cancelled on the same session's other fields."""
    bad: Counter[str] = Counter()
    sid = (await rig.a.write(update(None, "rw", CBOR.dumps(-1)))).id
    latency = await measure_latency(rig, sid)

    async def noise(n: int) -> None:
        rng = random.Random(seed * 7 + n)
        while True:
            store = rng.choice((rig.a, rig.b))
            name = rng.choice(FIELDS)
            with trio.move_on_after(rng.choice((math.inf, rng.uniform(0, 3 * latency)))):
                try:
                    if rng.random() < 0.5:
                        await store.write(update(sid, name, CBOR.dumps(rng.random())))
                    elif rng.random() < 0.2:
                        await store.remove(sid, name)
                    else:
                        await store.get(sid, name)
                except StoreError:
                    pass

    rng = random.Random(seed)
    for c in rig.colds:
        c.fail_rate = 0.05
    async with trio.open_nursery() as nursery:
        for n in range(4):
            nursery.start_soon(noise, n)
        for i in range(rounds):
            writer, reader = rng.sample((rig.a, rig.b), 2)
            value = CBOR.dumps(i)
            while True:  # the cold layer refuses some writes: retry until one is committed
                try:
                    await writer.write(update(sid, "rw", value))
                    break
                except StoreError:
                    continue
            got = await reader.get(sid, "rw")
            bad["read missed a returned write (rule 2)"] += got != value
            rig.stats["ryw"] += 1
        nursery.cancel_scope.cancel()
    for c in rig.colds:
        c.fail_rate = 0.0
    return +bad


# -- the tests ----------------------------------------------------------------------------------


def _check(rig: Rig, bad: Counter[str]) -> None:
    fills = sum(h.calls["cache_fill"] for h in rig.hots)
    settles = sum(h.calls["cache_settle"] for h in rig.hots)
    beside = sum(h.calls["cache_settle beside"] for h in rig.hots)
    print(
        f"\n{dict(rig.stats)}, fills {fills}, settles {settles} ({beside} marked beside); "
        f"violations {dict(bad) or 0}"
    )
    assert rig.stats["cancelled"] > STEPS // 20  # cancellations did land
    assert fills > STEPS // 50  # and the cache was really used
    assert bad == Counter()


@pytest.mark.parametrize("seed", [1, 2])
async def test_chaos_memory_layers(seed: int, autojump_clock: MockClock) -> None:
    async with memory_rig(seed) as rig:
        bad = await chaos(rig, seed, STEPS, rounds=STEPS // 40)
        bad += await read_your_writes(rig, seed, STEPS // 4)
        _check(rig, bad)


async def late_marks(rig: Rig, seed: int, steps: int, *, workers: int = 8) -> Counter[str]:
    """Marks that land after their own commit, on purpose: hot calls stall now and then for
    longer than a whole change takes on the other instance, while tasks on both instances
    update and remove long-lived fields of a few sessions (so settles install, and a stale
    install would stay), with some cancellations. Every few steps the layers quiesce and
    rule 1 is checked on every session. Returns violations."""
    bad: Counter[str] = Counter()
    ids = [(await rig.a.write(update(None, "a", CBOR.dumps("init")))).id for _ in range(4)]
    for h in rig.hots:
        h.stall_rate = 0.15
    serial = itertools.count()
    rngs = [random.Random(seed * 7919 + n) for n in range(workers)]

    async def worker(rng: random.Random) -> None:
        for _ in range(4):
            sid, name = rng.choice(ids), rng.choice(FIELDS[:2])
            store = rng.choice((rig.a, rig.b))
            with trio.move_on_after(rng.choice((math.inf,) * 9 + (rng.uniform(0, 0.01),))):
                roll = rng.random()
                if roll < 0.85:
                    await store.write(update(sid, name, CBOR.dumps(f"v{next(serial)}")))
                elif roll < 0.95:
                    await store.remove(sid, name)
                else:  # a change without a version stamp: hot forgets the floor
                    await store.expire(sid, 600)
            rig.stats["ops"] += 1

    for _ in range(steps // (4 * workers)):
        async with trio.open_nursery() as nursery:
            for rng in rngs:
                nursery.start_soon(worker, rng)
        await quiesce(rig)
        bad.update(await divergence(rig, set(ids)))
        for sid in ids:  # a removal may have ended a session: start it again
            if await rig.cold.get_all(sid) is None:
                ids[ids.index(sid)] = (await rig.a.write(update(None, "a", b"\x00"))).id
    for h in rig.hots:
        h.stall_rate = 0.0
    return +bad


@pytest.mark.parametrize("seed", [1, 2])
async def test_late_marks_memory_layers(seed: int, autojump_clock: MockClock) -> None:
    async with memory_rig(seed) as rig:
        bad = await late_marks(rig, seed, STEPS)
        beside = sum(h.calls["cache_settle beside"] for h in rig.hots)
        print(f"\n{dict(rig.stats)}, {beside} marked beside; violations {dict(bad) or 0}")
        assert beside > STEPS // 8
        assert bad == Counter()


@pytest.fixture(params=["redis7.0", "redis7.4"])
def private_redis(request: pytest.FixtureRequest) -> Iterator[servers.RedisServer]:
    """A private redis-server for this test alone (it gets frozen and killed)."""
    if request.param == "redis7.0":
        binary, env = servers.system_redis_binary(), None
    else:
        request.getfixturevalue("redis74")  # skips (or fails under CI) without a 7.4
        found = servers.redis74_binary()
        assert found is not None
        binary, env = found
    with servers.redis_server(binary, env) as server:
        yield server


@pytest.mark.redis
@pytest.mark.postgres
async def test_chaos_redis_over_postgres(
    private_redis: servers.RedisServer, postgres: servers.PostgresServer
) -> None:
    async with redis_rig(7, private_redis, postgres) as rig:
        bad = await chaos(rig, 7, STEPS, rounds=10)
        bad += await read_your_writes(rig, 7, STEPS // 6)
        _check(rig, bad)


@pytest.mark.redis
@pytest.mark.postgres
async def test_late_marks_redis_over_postgres(
    private_redis: servers.RedisServer, postgres: servers.PostgresServer
) -> None:
    async with redis_rig(11, private_redis, postgres) as rig:
        for h in rig.hots:
            h.stall = 0.03  # longer than a whole change on the other instance takes
        bad = await late_marks(rig, 11, STEPS // 3)
        beside = sum(h.calls["cache_settle beside"] for h in rig.hots)
        print(f"\n{dict(rig.stats)}, {beside} marked beside; violations {dict(bad) or 0}")
        assert beside > STEPS // 40
        assert bad == Counter()


# -- the defects found by hand, as named regressions -------------------------------------------


@asynccontextmanager
async def two_servers(**kw: float) -> AsyncIterator[tuple[LayeredStore, LayeredStore, Rig]]:
    """Two instances over one hot and one cold MemoryStore, each behind its own switches."""
    hot, cold = MemoryStore(), MemoryStore()
    async with hot, cold:
        hots = Faulty(hot, seed=1), Faulty(hot, seed=2)
        colds = Faulty(cold, seed=3), Faulty(cold, seed=4)
        async with (
            LayeredStore(hots[0], colds[0], hot_timeout=1.0, **kw) as a,
            LayeredStore(hots[1], colds[1], hot_timeout=1.0, **kw) as b,
        ):
            yield a, b, Rig(a, b, hot, cold, hots, colds)


async def agree(rig: Rig, sid: SessionId, *names: str) -> bool:
    """The hot entry of each field (if any) is what cold holds."""
    if await divergence(rig, {sid}):
        return False
    for name in names:
        if await rig.a.get(sid, name) != await rig.cold.get(sid, name):
            return False
    return True


async def test_concurrent_updates_of_one_field_converge(autojump_clock: MockClock) -> None:
    """Two requests updating one field at once used to leave the layers disagreeing for good
    (each layer applied them in its own order)."""
    async with two_servers() as (a, b, rig):
        for h in rig.hots:
            h.jitter = 0.002
        for c in rig.colds:
            c.jitter = 0.002
        sid = (await a.write(update(None, "n", CBOR.dumps(0)))).id
        for round in range(5):
            async with trio.open_nursery() as nursery:
                for i in range(100):
                    store = (a, b)[i % 2]
                    nursery.start_soon(store.write, update(sid, "n", CBOR.dumps((round, i))))
            assert await agree(rig, sid, "n")
            assert await b.get(sid, "n") == await rig.cold.get(sid, "n")


async def test_concurrent_incr_through_two_servers_loses_nothing(
    autojump_clock: MockClock,
) -> None:
    """SPEC section 8: an increment is applied by cold; the hot copy settles to the value
    cold computed, and reads through either instance see the last one."""
    async with two_servers() as (a, b, rig):
        for layer in (*rig.hots, *rig.colds):
            layer.jitter = 0.002
        first = Session(a, cookie=CookieOptions(max_age=600))
        await first.update("b", "x")
        sid = first.id
        assert sid is not None
        results: list[int] = []

        async def bump(store: LayeredStore, into: list[int]) -> None:
            into.append(await Session(store, sid, cookie=CookieOptions(max_age=600)).incr("a"))

        async with trio.open_nursery() as nursery:
            for i in range(200):
                nursery.start_soon(bump, (a, b)[i % 2], results)
        assert sorted(results) == list(range(1, 201))
        await settled(a)
        await settled(b)
        assert await rig.cold.get(sid, "a") == CBOR.dumps(200)
        for store in (a, b):
            assert await Session(store, sid).get("a") == 200
        assert await agree(rig, sid, "a", "b")
        # The reads above filled hot (or a settle installed the value): hot holds cold's.
        assert (await rig.hot.cache_read(sid, "a")).value == CBOR.dumps(200)
        # An uncontended increment's settle installs the value cold computed.
        assert await Session(a, sid).incr("a", -5) == 195
        await settled(a)
        assert (await rig.hot.cache_read(sid, "a")).value == CBOR.dumps(195)
        assert await Session(b, sid).get("a") == 195


async def test_a_refused_incr_does_not_hold_the_session(autojump_clock: MockClock) -> None:
    """An increment cold refused (not an integer) changed nothing: unlike a cold call of
    unknown outcome, it does not keep the session's hot copy from being refilled."""
    async with two_servers() as (a, b, rig):
        s = Session(a, cookie=CookieOptions(max_age=600))
        await s.update("a", "text")
        sid = s.id
        assert sid is not None
        await settled(a)
        with pytest.raises(SessionError, match="field 'a'"):
            await s.incr("a")
        await settled(a)
        assert await b.get(sid, "a") == CBOR.dumps("text")  # a miss: fills hot
        assert (await rig.hot.cache_read(sid, "a")).value == CBOR.dumps("text")


@pytest.mark.parametrize("op", ["update", "remove"])
async def test_cancel_after_the_cold_commit_leaves_hot_clean(
    op: str, autojump_clock: MockClock
) -> None:
    """A call cancelled after cold committed, before its answer (and the hot half) came
    back, left hot stale."""
    async with two_servers() as (a, b, rig):
        sid = (await a.write(update(None, "v", CBOR.dumps(1)))).id
        await a.write(update(sid, "keep", CBOR.dumps(0)))
        assert await b.get(sid, "v") == CBOR.dumps(1)  # cached in hot
        rig.colds[0].after = 0.5  # cold commits at once, its answer comes late
        with trio.move_on_after(0.1) as scope:
            if op == "update":
                await a.write(update(sid, "v", CBOR.dumps(2)))
            else:
                await a.remove(sid, "v")
        assert scope.cancelled_caught
        rig.colds[0].after = 0.0
        await settled(a)
        expected = CBOR.dumps(2) if op == "update" else None
        assert await rig.cold.get(sid, "v") == expected
        assert await b.get(sid, "v") == expected
        assert await agree(rig, sid, "v", "keep")


async def test_a_fill_racing_a_removal_never_installs_the_old_value(
    autojump_clock: MockClock,
) -> None:
    """A cache fill read cold, a write landed, then the fill wrote the older value to hot."""
    async with two_servers() as (a, b, rig):
        sid = (await a.write(update(None, "x", CBOR.dumps(1)))).id
        await a.write(update(sid, "y", CBOR.dumps(2)))
        await rig.hot.cache_settle(sid, None, None, None, known=True, hold=1)  # hot lost it
        rig.colds[1].after = 0.5  # b's cold read is taken, then its answer is slow

        async def removal() -> None:
            await trio.sleep(0.1)  # after b's snapshot, before b's fill
            assert (await a.remove(sid, "x")).removed

        async with trio.open_nursery() as nursery:
            nursery.start_soon(removal)
            assert await b.get(sid, "y") == CBOR.dumps(2)  # a miss: b reads cold and fills
        rig.colds[1].after = 0.0
        assert await rig.cold.get(sid, "x") is None
        assert await b.get(sid, "x") is None
        assert await a.get(sid, "x") is None
        assert await agree(rig, sid, "x", "y")


async def test_recovery_after_a_hot_outage_is_per_session(autojump_clock: MockClock) -> None:
    """Every write used to mark its id and its unused fresh id dirty: the clean-up grew with
    the writes made during an outage, not with the sessions touched."""
    async with two_servers(hot_retry=0.1) as (a, _, rig):
        sids = [(await a.write(update(None, "n", CBOR.dumps(0)))).id for _ in range(20)]
        rig.hots[0].fail = True
        for i in range(50):
            for sid in sids:
                await a.write(update(sid, "n", CBOR.dumps(i)))
        assert len(a._dirty) == 20
        before = rig.hots[0].calls["cache_settle"]
        rig.hots[0].fail = False
        await trio.sleep(1)
        assert not a._dirty
        assert rig.hots[0].calls["cache_settle"] - before <= 25  # one drop per session
        for sid in sids:
            assert await a.get(sid, "n") == CBOR.dumps(49)
            assert await agree(rig, sid, "n")


async def test_hot_only_after_the_hot_copy_was_lost_keeps_the_session(
    autojump_clock: MockClock,
) -> None:
    """HotOnly used to move the session to a new id only hot held."""
    async with two_servers() as (a, b, rig):
        sid = (await a.write(update(None, "user", CBOR.dumps("alice")))).id
        await rig.hot.cache_settle(sid, None, None, None, known=True, hold=1)  # hot lost it
        flash = update(sid, "flash", CBOR.dumps("hi"), placement=Placement.HOT)
        result = await a.write(flash)
        assert result.id == sid
        assert result.written
        assert await b.get(sid, "flash") == CBOR.dumps("hi")
        assert await b.get(sid, "user") == CBOR.dumps("alice")
        assert await rig.cold.get(sid, "flash") is None
        # An id neither layer holds is never adopted, in hot either.
        stranger = SessionId.generate()
        moved = await a.write(update(stranger, "flash", CBOR.dumps("x"), placement=Placement.HOT))
        assert moved.id != stranger
        assert await b.get(stranger, "flash") is None


async def test_a_failing_cold_write_is_never_visible(autojump_clock: MockClock) -> None:
    """While a cold write was in flight and then failed, readers saw its value in hot."""
    async with two_servers() as (a, b, rig):
        sid = (await a.write(update(None, "v", CBOR.dumps(1)))).id
        rig.colds[0].delay, rig.colds[0].fail_rate = 0.3, 1.0  # writes only
        seen: Counter[bytes | None] = Counter()

        async def reader(store: LayeredStore) -> None:
            while True:
                seen[await store.get(sid, "v")] += 1
                await trio.sleep(0.001)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader, a)
            nursery.start_soon(reader, b)
            with pytest.raises(StoreError, match="injected"):
                await a.write(update(sid, "v", CBOR.dumps(2)))
            nursery.cancel_scope.cancel()
        assert seen[CBOR.dumps(2)] == 0
        assert seen[CBOR.dumps(1)] > 100
        assert await agree(rig, sid, "v")


async def test_reads_after_writes_across_instances(autojump_clock: MockClock) -> None:
    """A read on one app server after a write returned on another used to miss it (each
    instance remembered misses for itself)."""
    async with two_servers() as (a, b, rig):
        sid = (await a.write(update(None, "v", CBOR.dumps(0)))).id
        for i in range(300):
            name = f"f{i % 7}"
            writer, reader = (a, b) if i % 2 else (b, a)
            await reader.get(sid, name)  # a miss, remembered in hot (for everyone)
            await rig.hot.delete(sid)  # type: ignore[attr-defined]  # the cache evicts it
            await writer.write(update(sid, name, CBOR.dumps(i)))
            assert await reader.get(sid, name) == CBOR.dumps(i)
            await writer.remove(sid, name)
            assert await reader.get(sid, name) is None


@pytest.mark.parametrize("error", [RuntimeError, ValueError, ConnectionError, StoreError])
async def test_a_hot_layer_raising_anything_never_fails_a_call(
    error: type[Exception], autojump_clock: MockClock
) -> None:
    """A hot store raising something other than SessionError (redis-py's InvalidResponse,
    say) turned session.update into an ExceptionGroup."""
    async with two_servers(hot_retry=0.01) as (a, b, rig):
        sid = (await a.write(update(None, "v", CBOR.dumps(1)))).id
        await a.write(update(sid, "keep", CBOR.dumps(0)))
        rig.hots[0].fail, rig.hots[0].error = True, error
        assert (await a.write(update(sid, "v", CBOR.dumps(2)))).written
        assert await a.get(sid, "v") == CBOR.dumps(2)
        assert (await a.remove(sid, "v")).removed
        assert (await a.write(update(sid, "v", CBOR.dumps(3)))).written
        new = sid.regenerate()
        assert await a.rename(sid, new) is not None
        assert await a.expire(new, 60)
        assert await a.delete(new)
        rig.hots[0].fail = False
        await trio.sleep(0.5)
        assert await b.get(new, "v") is None
        assert await agree(rig, new, "v")


@pytest.mark.redis
async def test_a_lease_taken_before_the_hot_server_lost_its_data_is_refused(
    redis74: servers.RedisServer,
) -> None:
    """Epochs start at random: a fill whose lease predates a hot restart (or an eviction) can
    never match the state that follows it."""
    async with RedisStore.from_url(redis74.url, prefix=f"lease{uuid.uuid4().hex[:6]}:") as hot:
        sid = SessionId.generate()
        before = await hot.cache_read(sid, "v")
        assert before.value is None
        redis74.cli("DEL", hot.key(sid).decode())  # as a restart (nothing on disk) does
        after = await hot.cache_read(sid, "v")
        assert after.epoch != before.epoch
        entry = CacheEntry("v", CBOR.dumps("old snapshot"), 60)
        assert not await hot.cache_fill(sid, before.epoch, [entry], 60)
        assert (await hot.cache_read(sid, "v")).value is None
        assert await hot.cache_fill(sid, after.epoch, [entry], 60)
        assert (await hot.cache_read(sid, "v")).value == CBOR.dumps("old snapshot")


async def test_a_field_never_outlives_its_session_in_hot(autojump_clock: MockClock) -> None:
    """A field that never expires lives as long as its session, which expire() can shorten:
    fills and settles used to give such a field max_hot_ttl (found by the chaos schedules)."""
    async with two_servers() as (a, b, rig):
        sid = (await a.write(update(None, "forever", CBOR.dumps(1), field_ttl=-1))).id
        await a.write(update(sid, "long", CBOR.dumps(2), field_ttl=500))
        await settled(a)
        assert await a.expire(sid, 5)
        await settled(a)
        assert await b.get(sid, "forever") == CBOR.dumps(1)  # a miss: filled from cold
        assert await b.get(sid, "long") == CBOR.dumps(2)
        assert isinstance((await rig.hot.cache_read(sid, "long")).value, bytes)  # cached
        await trio.sleep(5.5)
        assert await rig.cold.get_all(sid) is None
        assert not await divergence(rig, {sid})
        assert await b.get(sid, "forever") is None
        assert await b.get(sid, "long") is None


# -- found by the adversarial review ------------------------------------------------------------


async def test_a_slow_mark_cannot_settle_an_older_value(autojump_clock: MockClock) -> None:
    """A mark sent beside its cold write could land after its own commit, after another
    write had fully settled a newer value: the older one then settled over it, for good."""
    for _ in range(20):
        async with two_servers() as (a, b, rig):
            sid = (await a.write(update(None, "f", CBOR.dumps("v0")))).id
            await settled(a)
            rig.hots[0].delay = 0.1  # a's hot round trips are slow

            async with trio.open_nursery() as nursery:
                nursery.start_soon(a.write, update(sid, "f", CBOR.dumps("v1")))
                await trio.sleep(0.01)
                await b.write(update(sid, "f", CBOR.dumps("v2")))
            await settled(a)
            await settled(b)
            assert await agree(rig, sid, "f")


@pytest.mark.parametrize("op", ["rename", "delete"])
async def test_hot_only_racing_a_rename_or_delete_adopts_nothing(
    op: str, autojump_clock: MockClock
) -> None:
    """HotOnly checked cold, then wrote at the old id even though a rename or delete had
    ended it meanwhile: hot then served a session cold no longer held."""
    async with two_servers() as (a, b, rig):
        sid = (await a.write(update(None, "user", CBOR.dumps("alice")))).id
        await settled(a)
        await rig.hot.cache_settle(sid, None, None, None, known=True, hold=1)  # evicted
        rig.colds[0].after = 0.5  # a's check that the session exists answers slowly

        async def other() -> None:
            await trio.sleep(0.1)
            if op == "rename":
                assert await b.rename(sid, sid.regenerate()) is not None
            else:
                assert await b.delete(sid)
            await settled(b)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(other)
            flash = update(sid, "flash", CBOR.dumps("hi"), placement=Placement.HOT)
            result = await a.write(flash)
        assert not result.written
        assert await b.get(sid, "flash") is None
        assert await rig.cold.get_all(sid) is None


class _BrokenCancel(MemoryStore):
    """A hot layer whose slow read runs a helper task that fails while being cancelled (a
    connection whose close raises), so the hot call ends in an exception group."""

    slow = False

    async def cache_read(self, id: SessionId, field: str) -> CacheRead:
        if not self.slow:
            return await super().cache_read(id, field)

        async def helper() -> None:
            try:
                await trio.sleep_forever()
            finally:
                raise ConnectionResetError("close failed")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(helper)
            await trio.sleep(10)
        raise AssertionError("not reached")


async def test_an_exception_group_from_the_hot_layer_stays_inside(
    autojump_clock: MockClock,
) -> None:
    hot, cold = _BrokenCancel(), MemoryStore()
    async with hot, cold, LayeredStore(hot, cold, hot_timeout=0.25) as layered:
        sid = (await layered.write(update(None, "f", CBOR.dumps(1)))).id
        hot.slow = True
        assert await layered.get(sid, "f") == CBOR.dumps(1)


# -- found by the adversarial review of marks beside the cold write -----------------------------


async def _floored_session(a: LayeredStore, b: LayeredStore) -> SessionId:
    """A session whose f is v0, cached in hot, whose floor instance ``a`` knows."""
    sid = (await a.write(update(None, "f", CBOR.dumps("v0")))).id
    await settled(a)
    assert sid.bytes in a._floored
    assert await b.get(sid, "f") == CBOR.dumps("v0")
    return sid


@pytest.mark.parametrize("writer_inside", [False, True])
async def test_a_store_shut_down_mid_write_still_marks_hot(
    writer_inside: bool, autojump_clock: MockClock
) -> None:
    """The store's nursery cancelled (app shutdown) while a mark beside a committing cold
    write was on its way: the mark's task died before it reached hot, hot kept v0 for good,
    and a write that returned (its handler outside the store's scope) was missed by the
    other app server. Now the mark is shielded, and a change whose cold call outlives the
    store's nursery is ended by its caller."""
    async with two_servers() as (_, b, rig):
        hot_a, cold_a = Faulty(rig.hot, seed=5), Faulty(rig.cold, seed=6)
        a = LayeredStore(hot_a, cold_a, hot_timeout=1.0)
        sid: list[SessionId] = []

        async def write_v1() -> None:
            await a.write(update(sid[0], "f", CBOR.dumps("v1")))

        async def app_server(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
            with trio.CancelScope() as shutdown:
                async with a, trio.open_nursery() as inside:
                    sid.append(await _floored_session(a, b))
                    hot_a.delay, cold_a.after = 0.01, 0.05  # cold commits, answers later
                    if writer_inside:
                        inside.start_soon(write_v1)
                    task_status.started(shutdown)
                    await trio.sleep_forever()

        async with trio.open_nursery() as outside:
            shutdown = await outside.start(app_server)
            if not writer_inside:
                outside.start_soon(write_v1)
            await trio.sleep(0.005)  # the mark is on its way
            shutdown.cancel()
        await settled(b)
        assert await rig.cold.get(sid[0], "f") == CBOR.dumps("v1")
        assert await agree(rig, sid[0], "f")
        assert await b.get(sid[0], "f") == CBOR.dumps("v1")


async def test_a_write_cancelled_after_its_commit_leaves_once_its_mark_landed(
    autojump_clock: MockClock,
) -> None:
    """A write cancelled after its cold commit, its mark beside still on the way: the caller
    left at once, and a read through the other app server right after got v0 from hot."""
    async with two_servers() as (a, b, rig):
        sid = await _floored_session(a, b)
        rig.hots[0].delay = 0.2  # a's hot round trip: 200 ms (hot_timeout 1 s)
        rig.colds[0].after = 0.1  # cold commits at once, its reply takes 100 ms
        with trio.move_on_after(0.05) as scope:
            await a.write(update(sid, "f", CBOR.dumps("v1")))
        assert scope.cancelled_caught
        assert await rig.cold.get(sid, "f") == CBOR.dumps("v1")
        assert await b.get(sid, "f") == CBOR.dumps("v1")


async def test_closing_does_not_wait_for_slow_cold_writes_nor_skip_their_settle(
    autojump_clock: MockClock,
) -> None:
    """Closing a store while a write's cold call is slow: close waited its whole grace for
    the mark's task (which waits for cold), then cancelled it before the settle, so the
    session stayed uncached everywhere for write_hold."""
    async with two_servers() as (_, b, rig):
        hot_a, cold_a = Faulty(rig.hot, seed=5), Faulty(rig.cold, seed=6)
        a = LayeredStore(hot_a, cold_a, hot_timeout=0.25)
        async with trio.open_nursery() as nursery, a:
            sid = await _floored_session(a, b)
            cold_a.delay = 1.0
            nursery.start_soon(a.write, update(sid, "f", CBOR.dumps("v1")))
            await trio.sleep(0.1)
            start = trio.current_time()
            await a.aclose()
            assert trio.current_time() - start < 0.1
        await settled(b)
        assert await b.get(sid, "f") == CBOR.dumps("v1")
        assert (await rig.hot.cache_read(sid, "f")).value == CBOR.dumps("v1")  # cached again


class _OldHotLayer(Faulty):
    """A hot layer written against an earlier API: its settle answers a plain bool."""

    async def cache_settle(self, *args: Any, **kw: Any) -> Any:
        return bool((await super().cache_settle(*args, **kw)).installed)


async def test_a_hot_layer_answering_nonsense_to_a_settle_fails_nothing(
    autojump_clock: MockClock,
) -> None:
    hot, cold = MemoryStore(), MemoryStore()
    async with hot, cold, LayeredStore(_OldHotLayer(hot), cold) as layered:
        sid = (await layered.write(update(None, "f", CBOR.dumps(1)))).id
        await settled(layered)
        assert await layered.get(sid, "f") == CBOR.dumps(1)


async def test_closing_while_a_mark_is_on_its_way_waits_for_the_mark_only(
    autojump_clock: MockClock,
) -> None:
    async with two_servers() as (_, b, rig):
        hot_a, cold_a = Faulty(rig.hot, seed=5), Faulty(rig.cold, seed=6)
        a = LayeredStore(hot_a, cold_a, hot_timeout=0.25)
        async with trio.open_nursery() as nursery, a:
            sid = await _floored_session(a, b)
            hot_a.delay, cold_a.delay = 0.1, 1.0
            nursery.start_soon(a.write, update(sid, "f", CBOR.dumps("v1")))
            await trio.sleep(0.05)  # the mark is on its way; the cold call will be slow
            start = trio.current_time()
            await a.aclose()
            assert trio.current_time() - start == pytest.approx(0.05)  # the mark, not 0.5 s
        await settled(b)
        assert await b.get(sid, "f") == CBOR.dumps("v1")
