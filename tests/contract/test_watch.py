"""The store contract for live revocation (SPEC section 10): ``Session.watch()``.

A watch's body is cancelled when its session ends elsewhere (another Session object, or
another store instance over the same servers), with ``w.reason`` saying why; a living session
keeps it open, and a body that ends first leaves ``reason`` ``None``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import trio

from trio_ruts import CookieOptions, Expiry, Session, SessionId, SessionStateError
from trio_ruts._watch import Watch
from trio_ruts.stores import LayeredStore, PostgresStore, RedisStore, SessionStore
from trio_ruts.stores.redis._transport import NativeFactory

COOKIE = CookieOptions(max_age=600)
#: A notification reaches the watch within this many seconds (SPEC: within a second).
WITHIN = 1.0


def new(store: SessionStore, id: SessionId | None = None, **expiry: Any) -> Session:
    return Session(store, id, cookie=COOKIE, expiry=Expiry(**expiry) if expiry else None)


async def a_session(store: SessionStore, **fields: Any) -> SessionId:
    s = new(store)
    for name, value in (fields or {"user": "ada"}).items():
        await s.update(name, value)
    assert s.id is not None
    return s.id


class Running:
    """A watch running in a task whose body sleeps until cancelled."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.watch: Watch | None = None
        self.body_finished = False

    async def run(
        self, session: Session, body: float, *, task_status: trio.TaskStatus[None]
    ) -> None:
        try:
            async with session.watch() as w:
                self.watch = w
                task_status.started()
                await trio.sleep(body)
                self.body_finished = True
        finally:
            self.done.set()

    @property
    def reason(self) -> str | None:
        assert self.watch is not None
        return self.watch.reason

    async def ended(self, within: float = WITHIN) -> str | None:
        with trio.fail_after(within):
            await self.done.wait()
        assert not self.body_finished
        return self.reason


@asynccontextmanager
async def watching(session: Session, body: float = 3600) -> AsyncIterator[Running]:
    running = Running()
    async with trio.open_nursery() as nursery:
        await nursery.start(running.run, session, body)
        yield running
        nursery.cancel_scope.cancel()


def sibling(store: SessionStore) -> SessionStore | None:
    """Another instance over the same servers and keys, or ``None`` (in-process stores)."""
    if isinstance(store, RedisStore) and isinstance(store._factory, NativeFactory):
        return RedisStore(store._factory, prefix=store._prefix)
    if isinstance(store, PostgresStore) and store._dsn is not None:
        return PostgresStore.from_dsn(store._dsn, table=store._names.table, sweep_interval=None)
    if isinstance(store, LayeredStore):
        hot, cold = sibling(store.hot), sibling(store.cold)
        if hot is not None and cold is not None:
            return LayeredStore(hot, cold)
    return None


# -- ending it elsewhere ---------------------------------------------------------------------


async def test_delete_by_another_session_object_ends_the_watch(
    store: SessionStore, clock: Any
) -> None:
    sid = await a_session(store)
    async with watching(new(store, sid)) as running:
        await trio.sleep(0.05)
        assert running.reason is None
        assert await new(store, sid).delete()
        assert await running.ended() == "deleted"


async def test_delete_by_another_store_instance_ends_the_watch(store: SessionStore) -> None:
    other = sibling(store)
    if other is None:
        pytest.skip("an in-process store has no other instance over the same data")
    sid = await a_session(store)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(other)
        async with watching(new(store, sid)) as running:
            assert await new(other, sid).delete()
            assert await running.ended() == "deleted"


async def test_a_rename_elsewhere_ends_the_watch_as_renamed(
    store: SessionStore, clock: Any
) -> None:
    sid = await a_session(store)
    async with watching(new(store, sid)) as running:
        assert await new(store, sid).regenerate() is not None
        assert await running.ended() == "renamed"


async def test_a_write_that_renames_elsewhere_ends_the_watch(
    store: SessionStore, clock: Any
) -> None:
    sid = await a_session(store)
    async with watching(new(store, sid)) as running:
        other = new(store, sid)
        other.prepare_regenerate()
        assert await other.update("user", "bob")
        assert await running.ended() == "renamed"


async def test_removing_the_last_field_and_expire_zero_end_the_watch(
    store: SessionStore, clock: Any
) -> None:
    sid = await a_session(store)
    async with watching(new(store, sid)) as running:
        assert await new(store, sid).remove("user")
        assert await running.ended() == "deleted"
    sid = await a_session(store)
    async with watching(new(store, sid)) as running:
        assert await new(store, sid).expire(0)
        assert await running.ended() == "deleted"


async def test_a_revocation_carries_its_reason(store: SessionStore, clock: Any) -> None:
    sid = await a_session(store)
    async with watching(new(store, sid)) as running:
        assert await store._end_session(sid, "revoked")
        assert await running.ended() == "revoked"


async def test_expiry_ends_the_watch(store: SessionStore, clock: Any) -> None:
    sid = await a_session(store)
    assert await new(store, sid).expire(2)
    async with watching(new(store, sid)) as running:
        await trio.sleep(1.2)
        assert not running.done.is_set()
        assert await running.ended(within=2.0) == "expired"


async def test_a_touch_elsewhere_postpones_the_expiry(store: SessionStore, clock: Any) -> None:
    sid = await a_session(store)
    assert await new(store, sid).expire(2)
    async with watching(new(store, sid)) as running:
        await trio.sleep(1)
        assert await new(store, sid).expire(4)  # another request extends it
        await trio.sleep(2.5)  # past the first deadline: rechecked, still alive
        assert not running.done.is_set()
        assert running.reason is None
        assert await running.ended(within=3.0) == "expired"


async def test_a_session_whose_fields_all_expire_ends_the_watch(
    store: SessionStore, clock: Any
) -> None:
    s = new(store)
    await s.update("a", 1, ttl=2)
    assert s.id is not None
    async with watching(new(store, s.id)) as running:
        assert await running.ended(within=3.5) == "expired"


# -- what does not end it --------------------------------------------------------------------


async def test_a_living_session_keeps_the_watch_open(store: SessionStore, clock: Any) -> None:
    sid = await a_session(store)
    other = await a_session(store)
    async with watching(new(store, sid), body=2.0) as running:
        await new(store, other).delete()  # another session's end is not ours
        await new(store, sid).update("more", 1)
        with trio.fail_after(3):
            await running.done.wait()
        assert running.body_finished
        assert running.reason is None


async def test_a_body_that_ends_first_leaves_no_reason(store: SessionStore, clock: Any) -> None:
    sid = await a_session(store)
    session = new(store, sid)
    async with session.watch() as w:
        await trio.sleep(0.01)
    assert w.reason is None
    assert await session.delete()  # after the block: nothing is cancelled any more
    await trio.sleep(0.2)
    assert w.reason is None
    assert len(store._watch_hub()) == 0


async def test_the_watching_sessions_own_regenerate_does_not_end_it(
    store: SessionStore, clock: Any
) -> None:
    sid = await a_session(store)
    session = new(store, sid)
    async with watching(session) as running:
        new_id = await session.regenerate()
        assert new_id is not None
        await trio.sleep(0.3)
        assert running.reason is None
        assert not running.done.is_set()
        # ... and it now watches the new id.
        assert await new(store, new_id).delete()
        assert await running.ended() == "deleted"


async def test_watching_a_session_that_is_gone_ends_at_once(
    store: SessionStore, clock: Any
) -> None:
    sid = await a_session(store)
    assert await new(store, sid).delete()
    async with new(store, sid).watch() as w:
        await trio.sleep(10)
        pytest.fail("the body should have been cancelled")
    assert w.reason == "deleted"


async def test_watching_no_session_is_an_error(store: SessionStore) -> None:
    with pytest.raises(SessionStateError, match="no session to watch"):
        async with new(store).watch():
            pass


async def test_many_watchers_of_one_session_all_end(store: SessionStore, clock: Any) -> None:
    sid = await a_session(store)
    runs = [Running() for _ in range(20)]
    async with trio.open_nursery() as nursery:
        for running in runs:
            await nursery.start(running.run, new(store, sid), 3600)
        assert len(store._watch_hub()) == 20
        await new(store, sid).delete()
        for running in runs:
            assert await running.ended() == "deleted"
    assert len(store._watch_hub()) == 0


# -- cancellation and shutdown ------------------------------------------------------------------


def task_names() -> list[str]:
    names, stack = [], [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        names.append(task.name)
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return names


def watch_tasks() -> list[str]:
    keys = ("trio_ruts._watch.", "._watch_listen", "_subscriber.", "_sharded.")
    return [n for n in task_names() if any(k in n for k in keys)]


async def test_cancelled_watches_and_a_closed_store_leave_no_task_behind(
    kit: Any, request: pytest.FixtureRequest, clock: Any
) -> None:
    async with kit.factory(request) as store:
        sid = await a_session(store)
        # Cancelled while starting, at each of its first checkpoints, and while running.
        for delay in (0.0, 0.001, 0.01):
            with trio.move_on_after(delay):
                async with new(store, sid).watch():
                    await trio.sleep_forever()
        async with watching(new(store, sid)):
            assert watch_tasks()  # the hub's tasks run in the store's nursery
        assert len(store._watch_hub()) == 0
        # A watch still open when the store closes: its session can no longer end.
        running = Running()
        async with trio.open_nursery() as nursery:
            await nursery.start(running.run, new(store, sid), 3600)
            await store.aclose()
            await trio.sleep(0.05)
            assert watch_tasks() == []
            nursery.cancel_scope.cancel()
    assert watch_tasks() == []


# -- users (SPEC section 9) end watches too ------------------------------------------------------


async def logged_in(store: SessionStore, user: str = "ada") -> Session:
    s = new(store)
    await s.update("data", 1)
    await s.login(user)
    return s


async def test_revoke_user_ends_the_watch_as_revoked(store: SessionStore, clock: Any) -> None:
    s = await logged_in(store)
    assert s.id is not None
    async with watching(new(store, s.id)) as running:
        assert await store.revoke_user("ada") == 1
        assert await running.ended() == "revoked"


async def test_revoke_others_and_logout_end_the_other_watches(
    store: SessionStore, clock: Any
) -> None:
    mine, other = await logged_in(store), await logged_in(store)
    assert mine.id is not None
    assert other.id is not None
    async with watching(new(store, other.id)) as running:
        assert await mine.revoke_others() == 1
        assert await running.ended() == "revoked"
    async with watching(new(store, mine.id)) as running:
        assert await new(store, mine.id).logout()
        assert await running.ended() == "deleted"


async def test_a_login_elsewhere_ends_the_watch_and_ones_own_login_does_not(
    store: SessionStore, clock: Any
) -> None:
    sid = await a_session(store)
    async with watching(new(store, sid)) as running:
        await new(store, sid).login("ada")
        assert await running.ended() == "renamed"
    sid = await a_session(store)
    session = new(store, sid)
    async with watching(session) as running:
        new_id = await session.login("ada")
        await trio.sleep(0.3)
        assert running.reason is None
        assert await store.revoke_user("ada") >= 1  # ... and it now watches the new id
        assert new_id is not None
        assert await running.ended() == "revoked"
