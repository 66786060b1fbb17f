"""LayeredStore: strategies seen in each layer, warming, misses, concurrency, deadlines and
faults (a slowed hot layer, a failing cold one, a real redis-server killed and restarted)."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

import pytest
import trio
from trio.testing import MockClock

from tests import servers
from tests.layered_kit import Faulty, settled
from trio_ruts import CborSerializer, CookieOptions, Expiry, Session, SessionId, StoreError
from trio_ruts.stores import (
    ColdOnly,
    HotOnly,
    LayeredStore,
    MemoryStore,
    PostgresStore,
    RedisStore,
    SessionStore,
    WriteThrough,
)

T = TypeVar("T")
COOKIE = CookieOptions(max_age=600)
CBOR = CborSerializer()


async def fields_of(store: SessionStore, sid: SessionId | None) -> dict[str, Any]:
    assert sid is not None
    record = await store.get_all(sid)
    return {} if record is None else {k: CBOR.loads(f.value) for k, f in record.fields.items()}


async def field_ttl(store: SessionStore, sid: SessionId | None, name: str) -> int | None:
    assert sid is not None
    record = await store.get_all(sid)
    assert record is not None
    return record.fields[name].ttl


# -- strategies, seen in each layer ---------------------------------------------------------------


async def check_strategies(hot: SessionStore, cold: SessionStore, layered: LayeredStore) -> None:
    s = Session(layered, cookie=COOKIE)
    await s.update("plain", 1)
    await s.update("user", WriteThrough("alice", hot_ttl=60), ttl=30 * 86400)
    await s.update("flash", HotOnly("hi"))
    await s.update("secret", ColdOnly("s3"))
    await s.update("forever", 7, ttl=-1)
    await settled(layered)  # the hot halves settle in the store's nursery
    sid = s.id
    assert await fields_of(cold, sid) == {"plain": 1, "user": "alice", "secret": "s3", "forever": 7}
    assert await fields_of(hot, sid) == {"plain": 1, "user": "alice", "flash": "hi", "forever": 7}
    cold_user = await field_ttl(cold, sid, "user")
    assert cold_user is not None
    assert cold_user > 29 * 86400
    hot_user = await field_ttl(hot, sid, "user")
    assert hot_user is not None
    assert hot_user <= 60
    assert await field_ttl(cold, sid, "forever") == -1
    hot_forever = await field_ttl(hot, sid, "forever")
    assert hot_forever is not None
    assert 0 < hot_forever <= layered._max_hot_ttl
    hot_record = await hot.get_all(sid)  # type: ignore[arg-type]
    assert hot_record is not None
    assert hot_record.ttl != -1
    cold_record = await cold.get_all(sid)  # type: ignore[arg-type]
    assert cold_record is not None
    assert cold_record.fields["secret"].hot_ttl == 0

    # Warming from cold honours each field's policy: drop the hot copy and read again.
    assert await hot.delete(sid)  # type: ignore[arg-type]
    reader = Session(layered, sid, cookie=COOKIE)
    assert await reader.get("plain") == 1
    warmed = await fields_of(hot, sid)
    assert warmed == {"plain": 1, "user": "alice", "forever": 7}  # never the ColdOnly field
    assert (await field_ttl(hot, sid, "user") or 0) <= 60
    assert 0 < (await field_ttl(hot, sid, "forever") or 0) <= layered._max_hot_ttl
    assert await reader.get("secret") == "s3"  # from cold
    assert "secret" not in await fields_of(hot, sid)
    everything = await reader.get_all()  # always from cold
    assert everything is not None
    assert "flash" not in everything
    assert everything["secret"] == "s3"


async def test_strategies_in_memory_layers() -> None:
    hot, cold = MemoryStore(), MemoryStore()
    async with LayeredStore(hot, cold, max_hot_ttl=120) as layered:
        await check_strategies(hot, cold, layered)


async def test_strategies_in_redis_over_postgres(
    redis74: servers.RedisServer, postgres: servers.PostgresServer
) -> None:
    hot = RedisStore.from_url(redis74.url, prefix=f"lay{uuid.uuid4().hex[:6]}:")
    cold = PostgresStore.from_dsn(postgres.dsn, table=f"lay_{uuid.uuid4().hex[:8]}")
    async with LayeredStore(hot, cold, max_hot_ttl=120) as layered:
        await check_strategies(hot, cold, layered)
        assert layered.hot.is_open
        assert layered.cold.is_open
    assert not hot.is_open
    assert not cold.is_open


async def test_open_layers_are_left_open() -> None:
    async with MemoryStore() as hot, MemoryStore() as cold:
        async with LayeredStore(hot, cold) as layered:
            await Session(layered, cookie=COOKIE).update("a", 1)
        assert hot.is_open
        assert cold.is_open
    half = MemoryStore()
    async with MemoryStore() as open_cold:
        async with LayeredStore(half, open_cold):
            assert half.is_open
        assert not half.is_open
        assert open_cold.is_open


# -- misses and concurrency -----------------------------------------------------------------------


async def test_missing_fields_do_not_cost_a_cold_read_each_time(autojump_clock: MockClock) -> None:
    hot, cold = Faulty(), Faulty()
    async with LayeredStore(hot, cold) as layered:
        s = Session(layered, cookie=COOKIE)
        await s.update("present", 1)
        reader = Session(layered, s.id, cookie=COOKIE)
        for _ in range(10):
            assert await reader.get("absent") is None
        # One cold read: the fill marked the field absent in hot, for every app server.
        assert cold.calls["touch_get_all"] == 1
        assert cold.calls["get"] == cold.calls["get_all"] == cold.calls["touch_get"] == 0
        await Session(layered, s.id, cookie=COOKIE).update("absent", 2)  # writes clear it
        await settled(layered)  # once the write has settled in hot, hot has the value
        assert await reader.get("absent") == 2
        assert cold.calls["touch_get_all"] == 1
        assert await reader.remove("absent") is True
        await settled(layered)
        for _ in range(10):  # a removal leaves no marker: one read refills it
            assert await reader.get("absent") is None
        assert cold.calls["touch_get_all"] == 2


async def test_write_latency_is_the_slower_layer(autojump_clock: MockClock) -> None:
    hot, cold = Faulty(), Faulty()
    hot.delay, cold.delay = 0.05, 0.2
    async with LayeredStore(hot, cold, hot_timeout=1.0) as layered:
        s = Session(layered, cookie=COOKIE)
        # Ordered (0.05 + 0.2): the mark lands first, then the cold write, and the settle
        # after it runs in the store's nursery (not 0.05 + 0.2 + 0.05). Beside (0.2): once
        # hot knows the session's floor, a change marks beside the cold write (MemoryStore
        # stamps its writes and removals); a change without a stamp (expire, regenerate)
        # makes hot forget the floor, and the next change is ordered and learns it again.
        ordered, beside = 0.25, 0.2
        for op, took in (
            (lambda: s.update("a", 1), ordered),  # a new session: floor unknown
            (lambda: s.insert("b", 2), beside),
            (lambda: s.update("a", 3), beside),
            (lambda: s.remove("b"), beside),
            (lambda: s.update("a", 1), beside),
            (lambda: s.expire(300), beside),
            (lambda: s.regenerate(), ordered),
            (lambda: s.update("a", 1), ordered),  # the new id: floor unknown
            (lambda: s.update("a", 1), beside),
        ):
            await settled(layered)  # the previous write's settle is done
            start = trio.current_time()
            await op()
            assert trio.current_time() - start == pytest.approx(took)
        assert await Session(layered, s.id).get("a") == 1  # the moved session refills hot
        assert await fields_of(cold.inner, s.id) == await fields_of(hot.inner, s.id) == {"a": 1}


# -- deadlines and faults ---------------------------------------------------------------------


async def test_slow_hot_layer_costs_at_most_hot_timeout(autojump_clock: MockClock) -> None:
    hot, cold = Faulty(), Faulty()
    async with LayeredStore(hot, cold, hot_timeout=0.05, hot_retry=1.0) as layered:
        s = Session(layered, cookie=COOKIE)
        await s.update("v", 1)
        await settled(layered)
        hot.delay = 10.0  # hot hangs
        start = trio.current_time()
        await s.update("v", 2)  # cold answers at once; hot gives up after 0.05 s
        assert trio.current_time() - start == pytest.approx(0.05)
        assert await fields_of(cold.inner, s.id) == {"v": 2}
        assert await fields_of(hot.inner, s.id) == {"v": 1}  # stale, but marked dirty:
        start = trio.current_time()
        assert await Session(layered, s.id).get("v") == 2  # read from cold, no waiting
        assert trio.current_time() - start < 0.05
        hot.delay = 0.0  # hot recovers: its stale copy is deleted, then warming resumes
        await trio.sleep(2)
        assert await hot.inner.get_all(s.id) is None  # type: ignore[arg-type]
        assert await Session(layered, s.id).get("v") == 2
        assert await fields_of(hot.inner, s.id) == {"v": 2}


async def test_failing_hot_layer_still_succeeds(autojump_clock: MockClock) -> None:
    hot, cold = Faulty(), Faulty()
    async with LayeredStore(hot, cold, hot_retry=0.5) as layered:
        s = Session(layered, cookie=COOKIE)
        await s.update("keep", 0)
        await s.update("v", 1)
        hot.fail = True
        assert await s.update("v", 2) is True
        assert await Session(layered, s.id).get("v") == 2
        assert await s.remove("v") is True
        assert await Session(layered, s.id).get("v") is None
        hot.fail = False
        await trio.sleep(1)
        assert await hot.inner.get_all(s.id) is None  # type: ignore[arg-type]


async def test_a_revocation_the_hot_layer_misses_is_dropped_from_hot_later(
    autojump_clock: MockClock,
) -> None:
    # The index lives in cold, which knows revoked sessions by ref, not id: their hot
    # copies are dropped by ref, and one the hot layer missed stays dirty (reads skip it)
    # until the hot layer answers again.
    hot = Faulty()
    async with LayeredStore(hot, MemoryStore(), hot_retry=0.5) as layered:
        s = Session(layered, cookie=COOKIE)
        await s.update("v", 1)
        await s.login("alice")
        assert s.id is not None
        assert await Session(layered, s.id).get("v") == 1
        assert await fields_of(hot.inner, s.id) == {"v": 1}
        hot.fail = True
        assert await layered.revoke_user("alice") == 1
        assert await fields_of(hot.inner, s.id) == {"v": 1}  # missed: still in hot
        hot.fail = False
        assert await Session(layered, s.id).get("v") is None  # not served from hot
        await trio.sleep(1)
        assert await hot.inner.get_all(s.id) is None  # type: ignore[arg-type]
        assert hot.calls["cache_forget"] >= 2


async def test_failing_cold_write_leaves_nothing_in_hot(autojump_clock: MockClock) -> None:
    hot, cold = Faulty(), Faulty()
    async with LayeredStore(hot, cold, hot_timeout=1.0) as layered:
        s = Session(layered, cookie=COOKIE)
        await s.update("v", 1)
        cold.delay, cold.fail = 0.2, True  # hot finishes first, then cold fails
        with pytest.raises(StoreError, match="injected"):
            await s.update("v", 2)
        with pytest.raises(StoreError):
            await Session(layered, cookie=COOKIE).update("new", 1)
        cold.delay, cold.fail = 0.0, False
        assert await fields_of(cold.inner, s.id) == {"v": 1}
        hot_now = await hot.inner.get_all(s.id)  # type: ignore[arg-type]
        assert hot_now is None or CBOR.loads(hot_now.fields["v"].value) == 1
        assert await Session(layered, s.id).get("v") == 1
        assert len(hot.inner) <= 1  # the half-written new session was removed from hot


async def test_cancelled_write_leaves_nothing_in_hot(autojump_clock: MockClock) -> None:
    hot, cold = Faulty(), Faulty()
    async with LayeredStore(hot, cold, hot_timeout=1.0) as layered:
        s = Session(layered, cookie=COOKIE)
        await s.update("v", 1)
        cold.delay = 0.5
        with trio.move_on_after(0.2):  # hot done, cold still running: cancel the call
            await s.update("v", 2)
        cold.delay = 0.0
        hot_now = await hot.inner.get_all(s.id)  # type: ignore[arg-type]
        assert hot_now is None or CBOR.loads(hot_now.fields["v"].value) == 1
        assert await Session(layered, s.id).get("v") == 1


async def test_redis_killed_and_restarted(postgres: servers.PostgresServer) -> None:
    """A real redis-server dies mid-run: reads and writes go on from Postgres within
    hot_timeout; after a restart, warming resumes by itself."""
    with servers.redis_server(servers.system_redis_binary()) as redis:
        hot = RedisStore.from_url(redis.url, connect_timeout=0.2)
        cold = PostgresStore.from_dsn(postgres.dsn, table=f"kill_{uuid.uuid4().hex[:8]}")
        async with LayeredStore(hot, cold, hot_timeout=0.3, hot_retry=0.5) as layered:
            s = Session(layered, cookie=COOKIE)
            await s.update("user", "alice")
            await settled(layered)
            assert await hot.get(s.id, "user") is not None  # type: ignore[arg-type]
            redis.stop()
            with trio.fail_after(5):
                for i in range(20):
                    await s.update("n", i)
                    assert await Session(layered, s.id).get("n") == i
                    assert await Session(layered, s.id).get("user") == "alice"
            redis.start()  # empty: it keeps nothing on disk
            await trio.sleep(1.0)
            with trio.fail_after(5):
                while await _hot_has(hot, s.id, "user") is False:
                    assert await Session(layered, s.id).get("user") == "alice"
                    await trio.sleep(0.2)
            assert await hot.get(s.id, "n") == CBOR.dumps(19)  # type: ignore[arg-type]


async def _hot_has(hot: RedisStore, sid: SessionId | None, field: str) -> bool:
    assert sid is not None
    try:
        return await hot.get(sid, field) is not None
    except StoreError:
        return False


async def test_postgres_down_writes_fail_and_hot_stays_consistent(
    redis74: servers.RedisServer,
) -> None:
    with servers.postgres_server() as pg:
        hot = RedisStore.from_url(redis74.url, prefix=f"pgd{uuid.uuid4().hex[:6]}:")
        cold = PostgresStore.from_dsn(pg.dsn)
        async with LayeredStore(hot, cold) as layered:
            s = Session(layered, cookie=COOKIE)
            await s.update("v", 1)
            pg.stop()
            with pytest.raises(StoreError):
                await s.update("v", 2)
            assert await hot.get(s.id, "v") in (None, CBOR.dumps(1))  # type: ignore[arg-type]
            pg.start()
            assert await Session(layered, s.id).get("v") == 1


# -- lifetimes: hot copies end when a read must extend the session in cold --------------------


async def test_reads_served_from_hot_still_slide_the_session(autojump_clock: MockClock) -> None:
    hot, cold = Faulty(), Faulty()
    expiry = Expiry(idle=600, touch_interval=60)
    async with LayeredStore(hot, cold) as layered:
        s = Session(layered, cookie=COOKIE, expiry=expiry)
        await s.update("a", 1)
        await settled(layered)
        sid = s.id
        assert sid is not None
        for _ in range(3):  # within the interval: hot answers, nothing is extended
            reader = Session(layered, sid, cookie=COOKIE, expiry=expiry)
            before = cold.calls["touch_get_all"] + cold.calls["get_all"]
            assert await reader.get("a") == 1
            assert cold.calls["touch_get_all"] + cold.calls["get_all"] == before  # a hot hit
            assert reader.cookie_header() is None
            await trio.sleep(15)
        await trio.sleep(20)  # 65 s since the write: below idle - touch_interval
        reader = Session(layered, sid, cookie=COOKIE, expiry=expiry)
        assert await reader.get("a") == 1
        assert "Max-Age=600" in (reader.cookie_header() or "")  # the read extended it
        record = await cold.inner.get_all(sid)
        assert record is not None
        assert record.ttl >= 599
        # ... and hot holds the refilled copy for at most another interval.
        read = await hot.inner.cache_read(sid, "a")
        assert read.value == CBOR.dumps(1)
        await trio.sleep(60)
        assert (await hot.inner.cache_read(sid, "a")).value is None


async def test_a_session_read_only_from_hot_does_not_expire(autojump_clock: MockClock) -> None:
    hot, cold = Faulty(), Faulty()
    expiry = Expiry(idle=120, touch_interval=30)
    async with LayeredStore(hot, cold) as layered:
        s = Session(layered, cookie=COOKIE, expiry=expiry)
        await s.update("a", 1)
        sid = s.id
        for _ in range(120):  # 20 minutes of reads every 10 s, never a write
            await trio.sleep(10)
            assert await Session(layered, sid, cookie=COOKIE, expiry=expiry).get("a") == 1
        # Hot copies end a second or two before a touch is due (whole seconds, and the
        # margin for the time a fill takes), so a read in that gap goes to cold and extends
        # nothing yet; the next one extends. Still, a third or more were hot hits.
        assert 20 < cold.calls["touch_get_all"] <= 80
