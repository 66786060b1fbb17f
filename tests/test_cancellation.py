"""Cancellation of ``Session`` calls.

* Under a cancelled scope every public async method raises ``Cancelled`` and changes
  nothing, in the store or in the ``Session``; every path is a checkpoint.
* A rename (``regenerate()``, or the write that consumes ``prepare_regenerate()``) cancelled
  at any point never loses the session: its outcome reaches the ``Session``, whose id
  follows the data, on the memory store and on real Redis and Postgres servers.
* A rename whose outcome stays unknown (the store timed out or failed after the rename was
  sent) is settled by the session's next call.
"""

from __future__ import annotations

import random
import statistics
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trio
from trio.testing import MockClock, assert_checkpoints

from trio_ruts import CookieChange, CookieOptions, Session, SessionId, StoreError, StoreTimeout
from trio_ruts._session import RENAME_TIMEOUT
from trio_ruts.stores import (
    MemoryStore,
    PostgresStore,
    RedisStore,
    Removal,
    SessionRecord,
    SessionStore,
    Write,
    WriteResult,
)

COOKIE = CookieOptions(max_age=600)


class Recording(SessionStore):
    """An inner store, opened inside this one, seen through calls that add no checkpoint
    of their own. Notes every id a rename may move a session to, and waits ``lag`` seconds
    after a rename was applied (the reply's way back from a server)."""

    def __init__(self, inner: SessionStore, lag: float = 0.0) -> None:
        self.inner = inner
        self.lag = lag
        self.targets: list[SessionId] = []

    async def _open(self, nursery: trio.Nursery) -> None:
        await self._exit_stack.enter_async_context(self.inner)

    async def get(self, id: SessionId, field: str) -> bytes | None:
        return await self.inner.get(id, field)

    async def get_all(self, id: SessionId) -> SessionRecord | None:
        return await self.inner.get_all(id)

    async def write(self, write: Write) -> WriteResult:
        if write.rename:
            self.targets.append(write.fresh_id)
        result = await self.inner.write(write)
        if write.rename and self.lag:
            await trio.sleep(self.lag)
        return result

    async def remove(self, id: SessionId, field: str) -> Removal:
        return await self.inner.remove(id, field)

    async def delete(self, id: SessionId) -> bool:
        return await self.inner.delete(id)

    async def expire(self, id: SessionId, seconds: int) -> bool:
        return await self.inner.expire(id, seconds)

    async def rename(self, old: SessionId, new: SessionId) -> int | None:
        self.targets.append(new)
        ttl = await self.inner.rename(old, new)
        if self.lag:
            await trio.sleep(self.lag)
        return ttl


# -- under a cancelled scope, nothing happens ----------------------------------------------------


async def _prepared_update(s: Session) -> Any:
    s.prepare_regenerate()
    return await s.update("a", 9)


CALLS: dict[str, Callable[[Session], Awaitable[Any]]] = {
    "get": lambda s: s.get("a"),
    "get-missing": lambda s: s.get("zzz"),
    "get_all": lambda s: s.get_all(),
    "insert": lambda s: s.insert("b", 2),
    "insert-present": lambda s: s.insert("a", 2),
    "insert-ttl0": lambda s: s.insert("b", 2, ttl=0),
    "update": lambda s: s.update("a", 9),
    "update-ttl0": lambda s: s.update("a", 9, ttl=0),
    "update-prepared": _prepared_update,
    "remove": lambda s: s.remove("a"),
    "remove-missing": lambda s: s.remove("zzz"),
    "pop": lambda s: s.pop("a"),
    "pop-missing": lambda s: s.pop("zzz"),
    "update_if": lambda s: s.update_if("a", 1, 2),
    "update_if-mismatch": lambda s: s.update_if("a", 5, 2),
    "incr": lambda s: s.incr("a"),
    "incr-new": lambda s: s.incr("n", 3),
    "delete": lambda s: s.delete(),
    "expire": lambda s: s.expire(100),
    "expire-0": lambda s: s.expire(0),
    "expire-persistent": lambda s: s.expire(-1),
    "regenerate": lambda s: s.regenerate(),
}
STATES = ["no-id", "unknown-id", "claimed-id", "known-id"]


async def make_session(store: SessionStore, state: str) -> tuple[Session, SessionId]:
    """A session in ``state`` (no id, an id the store lacks, an id the store holds but this
    session has not read yet, or one it has written) and the id of the stored session."""
    other = Session(store, cookie=COOKIE)
    await other.update("a", 1)
    await other.update("c", 3, ttl=30)
    assert other.id is not None
    if state == "no-id":
        return Session(store, cookie=COOKIE), other.id
    if state == "unknown-id":
        return Session(store, SessionId.generate(), cookie=COOKIE), other.id
    if state == "claimed-id":
        return Session(store, other.id, cookie=COOKIE), other.id
    return other, other.id


async def snapshot(store: MemoryStore, s: Session, stored: SessionId) -> tuple[Any, ...]:
    """Everything a call could change: the store's sessions and the Session's state (on a
    frozen clock, so remaining lifetimes compare equal)."""
    return (len(store), await store.get_all(stored), s.id, s.cookie_change, s.cookie_header())


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("call", CALLS, ids=str)
async def test_a_call_in_a_cancelled_scope_raises_and_changes_nothing(
    call: str, state: str, mock_clock: MockClock
) -> None:
    async with MemoryStore() as store:
        s, stored = await make_session(store, state)
        before = await snapshot(store, s, stored)
        with trio.CancelScope() as scope:
            scope.cancel()
            with pytest.raises(trio.Cancelled):
                await CALLS[call](s)
        assert await snapshot(store, s, stored) == before


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("call", CALLS, ids=str)
async def test_every_path_is_a_checkpoint(call: str, state: str) -> None:
    """Fast paths included: no id, ``ttl=0`` inserts, removing from no session, ..."""
    async with MemoryStore() as store:
        s, _ = await make_session(store, state)
        with assert_checkpoints():
            await CALLS[call](s)


# -- a cancelled rename never loses the session ----------------------------------------------------


def _prefix() -> str:
    return f"c{uuid.uuid4().hex[:8]}:"


STORES: dict[str, Callable[[pytest.FixtureRequest], SessionStore]] = {
    # The memory store answers at once; the lag puts time between applying and answering.
    "memory": lambda request: Recording(MemoryStore(), lag=0.001),
    "redis": lambda request: Recording(
        RedisStore.from_url(request.getfixturevalue("redis70").url, prefix=_prefix())
    ),
    "postgres": lambda request: Recording(
        PostgresStore.from_dsn(
            request.getfixturevalue("postgres").dsn,
            table=f"c_{uuid.uuid4().hex[:10]}",
            sweep_interval=None,
        )
    ),
}


@pytest.fixture(
    params=[
        pytest.param("memory"),
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
async def recording(request: pytest.FixtureRequest) -> AsyncIterator[Recording]:
    store = STORES[request.param](request)
    assert isinstance(store, Recording)
    async with store:
        yield store


async def rename_latency(store: SessionStore) -> float:
    s = Session(store, cookie=COOKIE)
    await s.update("v", 0)
    times = []
    for _ in range(20):
        start = trio.current_time()
        await s.regenerate()
        times.append(trio.current_time() - start)
    return statistics.median(times)


async def regenerate(s: Session, i: int) -> None:
    await s.regenerate()


async def renaming_write(s: Session, i: int) -> None:
    s.prepare_regenerate()
    await s.update("w", i)


@pytest.mark.parametrize("rename", [regenerate, renaming_write], ids=lambda f: f.__name__)
async def test_a_rename_cancelled_at_any_point_never_loses_the_session(
    recording: Recording, rename: Callable[[Session, int], Awaitable[None]]
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    latency = await rename_latency(recording)
    lost, forked, cancelled_after_moving = [], [], 0
    for i in range(300):
        s = Session(recording, cookie=COOKIE)
        await s.update("v", i)
        old = s.id
        assert old is not None
        recording.targets.clear()
        with trio.move_on_after(rng.uniform(0, 3 * latency)) as scope:
            await rename(s, i)
        if s.id is None or await Session(recording, s.id, cookie=COOKIE).get("v") != i:
            lost.append(i)
        holders = [sid for sid in [old, *recording.targets] if await recording.get(sid, "v")]
        if len(holders) != 1:
            forked.append(i)
        if s.id != old:
            assert s.cookie_change is CookieChange.SET
            assert str(s.id) in (s.cookie_header() or "")
            cancelled_after_moving += scope.cancelled_caught
    assert not lost, f"{len(lost)} of 300 sessions lost (seed {seed})"
    assert not forked, f"{len(forked)} of 300 sessions not under exactly one id (seed {seed})"
    # The deadlines did fall inside renames: some calls were cancelled after the move.
    assert cancelled_after_moving > 0, f"no rename was cancelled mid-call (seed {seed})"


# -- a rename whose outcome stays unknown ---------------------------------------------------------


class Stuck(MemoryStore):
    """Renames hang (the server froze), before or after applying, or fail after applying."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    async def _stuck(self, apply: Callable[[], Awaitable[Any]]) -> Any:
        if self.mode == "hang-before":
            await trio.sleep_forever()
        result = await apply()
        if self.mode == "fail-after":
            raise StoreError("the connection broke before the reply")
        if self.mode == "hang-after":
            await trio.sleep_forever()
        return result

    async def rename(self, old: SessionId, new: SessionId) -> int | None:
        ttl: int | None = await self._stuck(lambda: MemoryStore.rename(self, old, new))
        return ttl

    async def write(self, write: Write) -> WriteResult:
        if not write.rename:
            return await super().write(write)
        result: WriteResult = await self._stuck(lambda: MemoryStore.write(self, write))
        return result


NEXT_CALLS: dict[str, Callable[[Session], Awaitable[Any]]] = {
    "get": lambda s: s.get("v"),
    "get_all": lambda s: s.get_all(),
    "update": lambda s: s.update("x", 1),
    "insert": lambda s: s.insert("x", 1),
    "remove-missing": lambda s: s.remove("zzz"),
    "pop": lambda s: s.pop("a"),
    "pop-missing": lambda s: s.pop("zzz"),
    "update_if": lambda s: s.update_if("a", 1, 2),
    "update_if-mismatch": lambda s: s.update_if("a", 5, 2),
    "incr": lambda s: s.incr("a"),
    "incr-new": lambda s: s.incr("n", 3),
    "expire": lambda s: s.expire(100),
    "regenerate": lambda s: s.regenerate(),
}


@pytest.mark.parametrize("next_call", NEXT_CALLS, ids=str)
@pytest.mark.parametrize("mode", ["hang-before", "hang-after", "fail-after"])
@pytest.mark.parametrize("rename", [regenerate, renaming_write], ids=lambda f: f.__name__)
async def test_the_next_call_settles_a_rename_of_unknown_outcome(
    rename: Callable[[Session, int], Awaitable[None]],
    mode: str,
    next_call: str,
    autojump_clock: MockClock,
) -> None:
    store = Stuck(mode)
    async with store:
        s = Session(store, cookie=COOKIE)
        await s.update("v", 7)
        old = s.id
        assert old is not None
        start = trio.current_time()
        with pytest.raises(StoreError) as caught, trio.fail_after(4 * RENAME_TIMEOUT):
            await rename(s, 7)
        if mode == "fail-after":
            assert "connection broke" in str(caught.value)
        else:
            assert isinstance(caught.value, StoreTimeout)
            assert trio.current_time() - start == pytest.approx(RENAME_TIMEOUT)
        assert s.id == old  # not known yet
        store.mode = "fine"  # the store answers again
        await NEXT_CALLS[next_call](s)
        assert s.id is not None
        moved = mode != "hang-before"
        if next_call != "regenerate":  # which renames again, in any case
            assert (s.id != old) is moved
        assert await Session(store, s.id, cookie=COOKIE).get("v") == 7
        assert len(store) == 1
        if moved:
            assert str(s.id) in (s.cookie_header() or "")


async def test_a_cancelled_caller_of_a_stuck_rename_gets_cancelled(
    autojump_clock: MockClock,
) -> None:
    async with Stuck("hang-after") as store:
        s = Session(store, cookie=COOKIE)
        await s.update("v", 7)
        with trio.fail_after(4 * RENAME_TIMEOUT), trio.move_on_after(1) as scope:
            await s.regenerate()
        assert scope.cancelled_caught  # Cancelled, not StoreTimeout, after the shield's bound
        store.mode = "fine"
        assert await s.get("v") == 7
        assert len(store) == 1
