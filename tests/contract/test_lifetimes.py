"""The store contract for lifetimes (SPEC section 7): idle sliding, coalesced touches, the
absolute cap and ``Session.touch()``. Every store passes these, through the Session API and
the store interface.

Most cases set a session's remaining lifetime with ``expire()`` and check what a read does to
it, so they wait for nothing; the few that let real time pass use short lifetimes (seconds)
that real servers' clocks decide.
"""

from __future__ import annotations

from typing import Any

import trio

from tests.conftest import pass_time
from trio_ruts import CookieChange, CookieOptions, Expiry, Session, SessionId
from trio_ruts.stores import SessionStore, Touch

COOKIE = CookieOptions(max_age=600)


def new(store: SessionStore, id: SessionId | None = None, **expiry: Any) -> Session:
    return Session(store, id, cookie=COOKIE, expiry=Expiry(**expiry) if expiry else None)


def max_age(session: Session) -> int:
    header = session.cookie_header()
    assert header is not None, "expected a Set-Cookie"
    return int(header.split("Max-Age=")[1].split(";")[0])


async def session_ttl(store: SessionStore, sid: SessionId) -> int:
    record = await store.get_all(sid)
    assert record is not None
    return record.ttl


async def short_lived(store: SessionStore, remaining: int = 1, **fields: Any) -> SessionId:
    """A session whose remaining lifetime is ``remaining`` seconds."""
    s = new(store)
    for name, value in (fields or {"a": 1}).items():
        await s.update(name, value)
    assert await s.expire(remaining)
    assert s.id is not None
    return s.id


# -- the default and the idle timeout ------------------------------------------------------------


async def test_default_expiry_slides_with_the_cookie_max_age(
    store: SessionStore, clock: Any
) -> None:
    sid = await short_lived(store, 1)
    s = Session(store, sid, cookie=CookieOptions(max_age=30))
    assert s.expiry == Expiry(idle=30)
    assert await s.get("a") == 1
    assert s.cookie_change is CookieChange.SET
    assert 29 <= max_age(s) <= 30
    assert 29 <= await session_ttl(store, sid) <= 30


async def test_a_read_below_the_threshold_extends_and_sets_the_cookie(
    store: SessionStore, clock: Any
) -> None:
    for read in ("get", "get_missing", "get_all"):
        sid = await short_lived(store, 1)
        s = new(store, sid, idle=20)
        if read == "get":
            assert await s.get("a") == 1
        elif read == "get_missing":  # reading the session, not the field, is what counts
            assert await s.get("missing", "none") == "none"
        else:
            assert dict(await s.get_all() or {}) == {"a": 1}
        assert s.cookie_change is CookieChange.SET, read
        assert 19 <= max_age(s) <= 20, read
        assert s.cookie_header() == COOKIE.set_cookie_header(sid, max_age(s))
        assert 19 <= await session_ttl(store, sid) <= 20, read


async def test_reads_inside_the_touch_interval_write_nothing(
    store: SessionStore, clock: Any
) -> None:
    sid = await short_lived(store, 8)
    # idle 20, interval 15: reads extend only below 5 s left; 8 s are left.
    s = new(store, sid, idle=20, touch_interval=15)
    assert await s.get("a") == 1
    assert await s.get("missing") is None
    assert await s.get_all() is not None
    assert s.cookie_change is CookieChange.NONE
    assert s.cookie_header() is None
    assert await session_ttl(store, sid) <= 8


async def test_idle_none_reads_extend_nothing(store: SessionStore, clock: Any) -> None:
    sid = await short_lived(store, 1)
    s = new(store, sid, idle=None)
    assert await s.get("a") == 1
    assert await s.get_all() is not None
    assert s.cookie_header() is None
    assert await session_ttl(store, sid) == 1
    # Writes still extend, to the cookie's max_age.
    await s.update("b", 2)
    assert 599 <= max_age(s) <= 600


async def test_writes_extend_to_idle(store: SessionStore, clock: Any) -> None:
    sid = await short_lived(store, 1)
    s = new(store, sid, idle=20)
    assert await s.update("b", 2)
    assert 19 <= max_age(s) <= 20
    assert 19 <= await session_ttl(store, sid) <= 20


async def test_persistent_sessions_are_not_touched(store: SessionStore, clock: Any) -> None:
    s = new(store, idle=20)
    await s.update("remember", "me", ttl=-1)
    reader = new(store, s.id, idle=20)
    assert await reader.get("remember") == "me"
    assert reader.cookie_header() is None
    assert await session_ttl(store, s.id) == -1  # type: ignore[arg-type]


async def test_an_active_session_slides_and_field_ttls_keep_their_meaning(
    store: SessionStore, clock: Any
) -> None:
    # The case: idle 2 s, read at 1.4 s, still there at 2.8 s. The field with a TTL
    # of its own expires on time all the same.
    s = new(store, idle=2)
    await s.update("a", 1)
    await s.update("brief", 2, ttl=1)
    await trio.sleep(1.4)
    reader = new(store, s.id, idle=2)
    assert await reader.get("a") == 1
    assert max_age(reader) == 2
    assert await reader.get("brief") is None
    await trio.sleep(1.4)
    later = new(store, s.id, idle=2)
    assert await later.get("a") == 1
    assert dict(await later.get_all() or {}) == {"a": 1}


async def test_reads_of_a_cached_session_extend_it(store: SessionStore, clock: Any) -> None:
    s = new(store, idle=4, touch_interval=1)
    await s.update("a", 1)
    reader = new(store, s.id, idle=4, touch_interval=1)
    assert await reader.get("a") == 1  # 4 s left: nothing to extend (a cache now holds it)
    assert reader.cookie_header() is None
    await trio.sleep(1.2)  # below 3 s left
    again = new(store, s.id, idle=4, touch_interval=1)
    assert await again.get("a") == 1
    assert max_age(again) == 4


async def test_a_session_nobody_reads_still_ends(store: SessionStore, clock: Any) -> None:
    s = new(store, idle=1)
    await s.update("a", 1)
    await pass_time(1)
    assert await new(store, s.id, idle=1).get("a") is None
    assert await store.get_all(s.id) is None  # type: ignore[arg-type]


# -- touch() -------------------------------------------------------------------------------------


async def test_touch_extends_to_idle(store: SessionStore, clock: Any) -> None:
    assert await new(store, idle=20).touch() is False
    assert await new(store, SessionId.generate(), idle=20).touch() is False
    sid = await short_lived(store, 1)
    s = new(store, sid, idle=20)
    assert await s.touch() is True
    assert 19 <= max_age(s) <= 20
    assert 19 <= await session_ttl(store, sid) <= 20
    # Without an idle timeout, the cookie's max_age takes its place.
    sid = await short_lived(store, 1)
    plain = new(store, sid, idle=None)
    assert await plain.touch() is True
    assert 599 <= await session_ttl(store, sid) <= 600


async def test_store_touch_interface(store: SessionStore, clock: Any) -> None:
    sid = await short_lived(store, 1)
    read = await store.touch_get(sid, "a", Touch(idle=20, below=10))
    assert read.value is not None
    assert read.ttl is not None
    assert 19 <= read.ttl <= 20
    again = await store.touch_get(sid, "a", Touch(idle=20, below=10))
    assert again.value == read.value
    assert again.ttl is None  # inside the interval: nothing extended, nothing reported
    record = await store.touch_get_all(sid, Touch(idle=30, below=25))
    assert record is not None
    assert record.touched
    assert 29 <= record.ttl <= 30
    record = await store.touch_get_all(sid, Touch(idle=30, below=25))
    assert record is not None
    assert not record.touched
    assert await store.touch(sid, Touch(idle=40, below=40)) in (39, 40)
    unknown = SessionId.generate()
    assert (await store.touch_get(unknown, "a", Touch(20, 10))).value is None
    assert await store.touch_get_all(unknown, Touch(20, 10)) is None
    assert await store.touch(unknown, Touch(20, 10)) is None


async def test_a_touching_read_extends_no_session_whose_fields_ended(
    store: SessionStore, clock: Any
) -> None:
    # The session's own lifetime is due for a touch, but its one field has ended: whether the
    # read asks for that field or another, it finds a dead session and extends nothing.
    s = new(store)
    await s.update("a", 1, ttl=1)
    assert await s.expire(10)
    assert s.id is not None
    await pass_time(1)
    for field in ("a", "other"):
        read = await store.touch_get(s.id, field, Touch(idle=20, below=15))
        assert (read.value, read.ttl) == (None, None)
    assert await store.get_all(s.id) is None


# -- the absolute cap --------------------------------------------------------------------------


async def test_the_absolute_cap_bounds_every_lifetime(store: SessionStore, clock: Any) -> None:
    s = new(store, idle=20, absolute=30)
    await s.update("a", 1)
    assert 19 <= max_age(s) <= 20
    await s.update("long", 2, ttl=100)  # a field ttl beyond the cap
    assert 29 <= max_age(s) <= 30
    await s.update("forever", 3, ttl=-1)  # -1 too
    assert 29 <= max_age(s) <= 30
    assert 29 <= await session_ttl(store, s.id) <= 30  # type: ignore[arg-type]
    assert await s.expire(-1)
    assert 29 <= max_age(s) <= 30
    assert await s.expire(100)
    assert 29 <= max_age(s) <= 30
    assert await s.expire(5)  # shorter than the cap: exact
    assert max_age(s) == 5
    assert await s.touch()
    assert 19 <= max_age(s) <= 20
    reader = new(store, s.id, idle=50, absolute=30)
    assert await reader.get("a") == 1  # 20 s left, below 50 - 5: a touch, capped
    assert 28 <= max_age(reader) <= 30
    assert 28 <= await session_ttl(store, s.id) <= 30  # type: ignore[arg-type]


async def test_the_cap_counts_from_creation_across_regenerate(
    store: SessionStore, clock: Any
) -> None:
    s = new(store, idle=20, absolute=2)
    await s.update("a", 1)
    await trio.sleep(1)
    old = s.id
    new_id = await s.regenerate()
    assert new_id is not None
    assert new_id != old
    await s.update("b", 2, ttl=-1)  # asks for forever; gets what is left of the 2 s
    assert max_age(s) <= 1
    assert await s.touch()
    assert max_age(s) <= 1
    await pass_time(1)
    assert await store.get_all(new_id) is None
    late = new(store, new_id, idle=20, absolute=2)
    assert await late.get("a") is None
    # A write after the cap starts a new session under a new id.
    assert await late.update("c", 3)
    assert late.id not in (None, new_id)


async def test_a_session_past_a_new_cap_is_gone_for_writes(store: SessionStore, clock: Any) -> None:
    # Created without a cap; an app that now configures one finds it past it.
    s = new(store, idle=20)
    await s.update("a", 1)
    await trio.sleep(1.2)
    capped = new(store, s.id, idle=20, absolute=1)
    assert await capped.update("b", 2)
    assert capped.id != s.id  # the write went to a fresh session
    assert await new(store, capped.id, idle=20, absolute=1).get("a") is None
    assert await new(store, s.id, idle=20, absolute=1).expire(5) is False
