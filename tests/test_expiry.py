"""Expiry: validation and defaults, what integrations pass on, and stores that keep no
lifetimes (the store-interface defaults). Store behaviour itself is in tests/contract."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest
from quart_trio.testing import TrioClient
from trio.testing import MockClock

from tests.integration.apps import CountingStore, make_app
from tests.layered_kit import Faulty
from trio_ruts import CookieOptions, Expiry, MemoryStore, Session
from trio_ruts.stores import SessionStore, Touch
from trio_ruts.websocket import session_for

COOKIE = CookieOptions(name="sid", secure=False, max_age=300)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"idle": 0}, "idle must be None or a positive"),
        ({"idle": -1}, "idle must be None or a positive"),
        ({"idle": 1.5}, "idle must be None or a positive"),
        ({"idle": True}, "idle must be None or a positive"),
        ({"idle": 2**31}, "idle must be None or a positive"),
        ({"idle": 10, "absolute": 0}, "absolute must be None or a positive"),
        ({"idle": 10, "touch_interval": 0}, "touch_interval must be a number of seconds"),
        ({"idle": 10, "touch_interval": 10}, "touch_interval must be a number of seconds"),
        ({"idle": 10, "touch_interval": "1"}, "touch_interval must be a number of seconds"),
        ({"touch_interval": 1}, "touch_interval needs idle"),
    ],
)
def test_invalid_expiry_is_refused(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Expiry(**kw)


def test_touch_interval_defaults() -> None:
    assert Expiry(idle=600).interval == 60
    assert Expiry(idle=5).interval == 1  # at least 1 s
    assert Expiry(idle=1).interval == 0.5  # and below idle
    assert Expiry(idle=600, touch_interval=2.5).interval == 2.5
    assert Expiry().interval is None
    assert Expiry(absolute=3600).touch() is None  # a cap alone: reads extend nothing
    assert Expiry(idle=600, absolute=3600).touch() == Touch(600, 540, 3600)
    assert Expiry(idle=600) == Expiry(idle=600)
    assert "_touch" not in repr(Expiry(idle=600))


async def test_session_default_follows_the_cookie() -> None:
    async with MemoryStore() as store:
        assert Session(store, cookie=COOKIE).expiry == Expiry(idle=300)
        persistent = CookieOptions(max_age=-1)
        assert Session(store, cookie=persistent).expiry == Expiry()
        given = Expiry(idle=30, absolute=60)
        assert Session(store, cookie=COOKIE, expiry=given).expiry is given
        with pytest.raises(TypeError, match="expiry must be an Expiry"):
            Session(store, expiry=30)  # type: ignore[arg-type]


async def test_session_for_takes_expiry() -> None:
    async with MemoryStore() as store:
        writer = Session(store, cookie=COOKIE)
        await writer.update("user", "alice")
        header = (writer.cookie_header() or "").split(";")[0].encode()
        request: Any = SimpleNamespace(headers=[(b"cookie", header)])
        found = session_for(cast(Any, request), store, cookie=COOKIE, expiry=Expiry(idle=20))
        assert found.id == writer.id
        assert found.expiry == Expiry(idle=20)
        assert await found.get("user") == "alice"
        assert found.cookie_header() is None  # above 20 - 2 s: reads extend nothing


class _WithoutLifetimes(Faulty):
    """Forwards the seven abstract methods only: the defaults of the lifetimes capability."""

    touch_get = SessionStore.touch_get
    touch_get_all = SessionStore.touch_get_all
    touch = SessionStore.touch
    expire_capped = SessionStore.expire_capped


async def test_a_store_without_lifetimes_keeps_working(autojump_clock: MockClock) -> None:
    # The store inherits the defaults, so reads extend nothing, touch() extends through
    # expire(), and expire() applies no cap. (Its writes reach a MemoryStore with the whole
    # Write, Write.absolute included.)
    async with _WithoutLifetimes() as store:
        s = Session(store, cookie=COOKIE, expiry=Expiry(idle=20, absolute=30))
        await s.update("a", 1)
        assert await s.expire(-1)
        assert "Max-Age=34560000" in (s.cookie_header() or "")  # no cap: as documented
        assert await s.expire(1)
        reader = Session(store, s.id, cookie=COOKIE, expiry=Expiry(idle=20))
        assert await reader.get("a") == 1
        assert reader.cookie_header() is None  # no touching reads
        assert await reader.touch()
        assert "Max-Age=20;" in (reader.cookie_header() or "")
        record = await store.get_all(s.id)  # type: ignore[arg-type]
        assert record is not None
        assert record.ttl == 20
        assert store.calls["expire"] == 3


# -- the Quart extension ---------------------------------------------------------------------


async def test_quart_rolling_cookie_only_when_a_read_extends() -> None:
    store = CountingStore()
    app = make_app(COOKIE, store, expiry=Expiry(idle=20, touch_interval=5))
    async with app.test_app():
        client = cast(TrioClient, app.test_client(use_cookies=False))
        first = await client.get("/count")
        set_cookie = first.headers["Set-Cookie"]
        assert "Max-Age=20;" in set_cookie
        jar = {"Cookie": set_cookie.split(";")[0]}
        inside = await client.get("/peek", headers=jar)
        assert await inside.get_data(as_text=True) == "1"
        assert "Set-Cookie" not in inside.headers  # 20 s left: inside the interval
        sid = Session.from_cookie_header(store, jar["Cookie"], cookie=COOKIE).id
        assert sid is not None
        await store.expire(sid, 10)  # as if 10 s had passed
        rolled = await client.get("/peek", headers=jar)
        assert await rolled.get_data(as_text=True) == "1"
        assert rolled.headers["Set-Cookie"].split(";")[0] == jar["Cookie"]
        assert "Max-Age=20;" in rolled.headers["Set-Cookie"]
        again = await client.get("/peek", headers=jar)
        assert "Set-Cookie" not in again.headers
