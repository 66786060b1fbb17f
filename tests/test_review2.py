"""Second adversarial review (recheck notices, the touching read's fast paths): a test per
bug it found, named after the behaviour that is now right; real servers as the rest of the
suite (tests/servers.py)."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from tests.conftest import KITS
from tests.contract.test_watch import a_session, new, watching
from trio_ruts import SessionId
from trio_ruts.stores import SessionStore, Touch

#: the memory store (mock clock), Redis with and without HEXPIRE, Postgres.
KITS3 = [
    pytest.param(k, id=k.id, marks=k.marks)
    for k in KITS
    if k.id in ("memory", "redis7.0", "redis7.4", "postgres")
]


# -- 1. a shorter lifetime that is not "a lasting field given one" sends no recheck --


@pytest.mark.parametrize("kit", KITS3, indirect=True)
async def test_removing_the_longest_lived_field_elsewhere_ends_the_watch_on_time(
    store: SessionStore, clock: Any
) -> None:
    """Every field has a lifetime of its own (300 s and 2 s): the watch's deadline is the
    longest, 300 s. Another request removes the 300 s field: the session now ends with the
    2 s one, but no "recheck" is sent (only a removed field *without* a lifetime sends one),
    so the watch outlives the session by ~300 s."""
    s = new(store)
    await s.update("a", 1, ttl=300)
    await s.update("b", 1, ttl=2)
    assert s.id is not None
    async with watching(new(store, s.id)) as running:
        await trio.sleep(0.1)
        assert await new(store, s.id).remove("a")
        await trio.sleep(3.5)
        assert await new(store, s.id).get("b") is None  # the session has ended
        assert await running.ended(within=1.5) == "expired"


@pytest.mark.parametrize("kit", KITS3, indirect=True)
async def test_a_field_lifetime_shortened_elsewhere_ends_the_watch_on_time(
    store: SessionStore, clock: Any
) -> None:
    """The session's only field has a lifetime of 300 s (the watch's deadline). Another
    request rewrites it with a lifetime of 2 s: the session ends 2 s later, but no
    "recheck" is sent (the field was not lasting), so the watch runs on to 300 s."""
    s = new(store)
    await s.update("user", "ada", ttl=300)
    assert s.id is not None
    async with watching(new(store, s.id)) as running:
        await trio.sleep(0.1)
        assert await new(store, s.id).update("user", "ada", ttl=2)
        await trio.sleep(3.5)
        assert await new(store, s.id).get("user") is None  # the session has ended
        assert await running.ended(within=1.5) == "expired"


# -- 2. Postgres schema version 11's fast touch shortens a session --


@pytest.mark.parametrize(
    "kit", [p for p in KITS3 if p.id in ("memory", "redis7.4", "postgres")], indirect=True
)
async def test_touching_read_never_shortens_a_session(store: SessionStore) -> None:
    """A Touch whose threshold is above its idle (Touch is public store API; the Redis store
    clamps below to idle: "a touch never shortens a lifetime", and the memory store and
    Postgres version 7's function never shorten either). Postgres version 11's fast path
    (the read found its field live, no cap) sets expires_at = now() + idle without checking
    that this is later than the current expiry: a 600 s session drops to 10 s."""
    sid: SessionId = await a_session(store)
    before = await store.get_all(sid)
    assert before is not None
    assert before.ttl > 500
    await store.touch_get(sid, "user", Touch(10, 1000.0))
    after = await store.get_all(sid)
    assert after is not None
    assert after.ttl > 500, after.ttl


# -- 3. Watch.start(if_held=True) while the session's own rename is in flight --


async def test_start_if_held_during_own_regenerate_follows_the_session(
    autojump_clock: Any,
) -> None:
    """``start(if_held=True)`` (Quart, for a session whose cookie is not verified yet) runs
    while the same session's ``regenerate()`` is in flight (the store applied the rename,
    its reply is on its way). The start's check finds the old id gone and, with
    ``if_held``, stops the watch and reports the session as not held, although it was
    only moved by the session's own rename: ``_check`` holds an end seen during an own
    rename only when ``gone`` is not None. Expected: the watch follows the new id."""
    from trio_ruts._watch import Watch
    from trio_ruts.stores import MemoryStore

    store = MemoryStore()
    async with store:
        sid = await a_session(store)
        real_rename = store.rename

        async def slow_reply(old: SessionId, new_id: SessionId) -> int | None:
            ttl = await real_rename(old, new_id)
            await trio.sleep(0.5)  # the reply's way back
            return ttl

        store.rename = slow_reply  # type: ignore[method-assign]
        session = new(store, sid)
        assert await session.get("user") == "ada"
        watch = Watch(session)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.regenerate)
            await trio.sleep(0.1)  # the rename is applied, its reply not yet in
            held = await watch.start(if_held=True)
            await trio.sleep(1)
            assert held
            assert watch.reason is None
            assert watch._id == session.id
            watch.stop()
