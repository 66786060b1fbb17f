"""MemoryStore specifics: lifecycle, sweeping, scale and cancellation."""

from __future__ import annotations

import random

import pytest
import trio
from trio.testing import MockClock

from trio_ruts import CookieOptions, Expiry, Session, SessionId, StoreNotOpen
from trio_ruts.stores import MemoryStore

COOKIE = CookieOptions(max_age=60)


async def test_use_before_open_and_after_close() -> None:
    store = MemoryStore()
    with pytest.raises(StoreNotOpen, match="async with"):
        await store.get(SessionId.generate(), "a")
    async with store:
        assert store.is_open
    assert not store.is_open
    with pytest.raises(trio.ClosedResourceError):
        await store.get(SessionId.generate(), "a")
    await store.aclose()  # idempotent
    with pytest.raises(RuntimeError, match="once"):
        async with store:
            pass


async def test_sweeper_purges_expired_sessions(autojump_clock: MockClock) -> None:
    async with MemoryStore(sweep_interval=10) as store:
        for i in range(2500):
            await Session(store, cookie=COOKIE).update("i", i)
        keep = Session(store, cookie=COOKIE)
        await keep.update("i", -1, ttl=-1)
        assert len(store) == 2501
        await trio.sleep(61)
        await trio.sleep(10)  # one sweep after expiry
        assert len(store) == 1
        assert await Session(store, keep.id).get("i") == -1


async def test_expired_fields_invisible_before_the_sweep(autojump_clock: MockClock) -> None:
    async with MemoryStore(sweep_interval=3600) as store:
        s = Session(store, cookie=COOKIE)
        await s.update("a", 1, ttl=5)
        await s.update("b", 2)
        await trio.sleep(6)
        assert await Session(store, s.id).get("a") is None
        record = await store.get_all(s.id)  # type: ignore[arg-type]
        assert record is not None
        assert set(record.fields) == {"b"}


async def test_field_lifetimes_expire_in_order(autojump_clock: MockClock) -> None:
    # Reads skip the scan for expired fields until the soonest field lifetime is due; this
    # checks that bookkeeping across several lifetimes, overwrites and removals.
    async with MemoryStore(sweep_interval=3600) as store:
        s = Session(store, cookie=COOKIE)
        await s.update("keep", 0)  # lives with the session (60 s)
        await s.update("a", 1, ttl=10)
        await s.update("b", 2, ttl=5)
        await s.update("c", 3, ttl=20)
        await s.update("b", 2, ttl=30)  # b's old, sooner expiry no longer applies
        await s.update("d", 4, ttl=8)
        await s.remove("d")

        async def live() -> set[str]:
            # Reads that extend nothing (Expiry() slides on writes only): lifetimes as written.
            found = await Session(store, s.id, cookie=COOKIE, expiry=Expiry()).get_all()
            return set() if found is None else set(found)

        await trio.sleep(6)
        assert await live() == {"keep", "a", "b", "c"}
        await trio.sleep(5)  # t=11
        assert await live() == {"keep", "b", "c"}
        await s.update("e", 5, ttl=2)  # sooner than anything left
        await trio.sleep(3)  # t=14
        assert await live() == {"keep", "b", "c"}
        await trio.sleep(7)  # t=21
        assert await live() == {"keep", "b"}
        assert await Session(store, s.id, cookie=COOKIE, expiry=Expiry()).get("b") == 2
        await trio.sleep(10)  # t=31
        assert await live() == {"keep"}
        await trio.sleep(39)  # t=70: the last write (t=11) gave the session 60 s
        assert await live() == {"keep"}
        await trio.sleep(2)  # t=72
        assert await live() == set()
        assert len(store) == 0


async def test_nothing_runs_after_close(autojump_clock: MockClock) -> None:
    store = MemoryStore(sweep_interval=1)
    async with store:
        pass
    before = trio.lowlevel.current_statistics().tasks_living
    await trio.sleep(5)
    assert trio.lowlevel.current_statistics().tasks_living == before


async def test_close_when_cancelled() -> None:
    store = MemoryStore()
    with trio.CancelScope() as scope:
        async with store:
            scope.cancel()
            await trio.sleep_forever()
    assert not store.is_open


async def test_hundreds_of_tasks() -> None:
    async with MemoryStore() as store:
        ids: list[SessionId] = []
        for _ in range(20):
            s = Session(store, cookie=COOKIE)
            await s.update("n", 0)
            assert s.id is not None
            ids.append(s.id)

        async def worker(w: int) -> None:
            for k in range(10):
                sid = ids[(w + k) % len(ids)]
                await Session(store, sid, cookie=COOKIE).update(f"w{w}k{k}", w * k)

        async with trio.open_nursery() as nursery:
            for w in range(300):
                nursery.start_soon(worker, w)
        total = 0
        for sid in ids:
            record = await store.get_all(sid)
            assert record is not None
            total += len(record.fields) - 1
        assert total == 3000


async def test_cancellation_at_every_checkpoint_leaves_store_consistent() -> None:
    """Cancel writes and renames at random points; afterwards every session is either
    wholly before or wholly after each operation."""
    rng = random.Random(1234)
    async with MemoryStore() as store:
        sessions: list[Session] = []
        for i in range(50):
            s = Session(store, cookie=COOKIE)
            await s.update("v", i)
            sessions.append(s)

        async def op(s: Session, n: int) -> None:
            with trio.move_on_after(rng.choice([0, 0, 1e-6, 1e-5, 1])):
                if n % 3 == 0:
                    await s.regenerate()
                else:
                    await s.update("v", n)
                    await s.update(f"x{n}", n)

        for _ in range(20):
            async with trio.open_nursery() as nursery:
                for n, s in enumerate(sessions):
                    nursery.start_soon(op, s, n)
        for s in sessions:
            assert s.id is not None
            record = await store.get_all(s.id)
            assert record is not None, "a session was lost by a cancelled operation"
            assert "v" in record.fields
        assert len(store) == 50
