"""The async ``session`` proxy used like Quart's dict, or without ``await``: errors that say
what to write instead; and a store that was never opened, with Quart's advice."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from quart.signals import got_request_exception
from quart_trio import QuartTrio

from trio_ruts import CookieOptions, MemoryStore, SessionError, SessionUsageError, StoreNotOpen
from trio_ruts.quart import Sessions, session

COOKIE = CookieOptions(name="sid", secure=False)
s: Any = session  # the proxy as untyped code sees it


def misuses() -> dict[str, Callable[[], object]]:
    def set_item() -> None:
        s["x"] = 1

    def del_item() -> None:
        del s["user"]

    def set_permanent() -> None:
        s.permanent = True

    return {
        "getitem": lambda: s["user"],
        "contains": lambda: "user" in s,
        "setitem": set_item,
        "delitem": del_item,
        "setattr": set_permanent,
        "len": lambda: len(s),
        "iter": lambda: list(s),
        "if-get": lambda: bool(s.get("user")),
        "get-eq": lambda: s.get("user") == "alice",
        "get-index": lambda: s.get("cart")[0],
        "pop-in": lambda: "x" in s.pop("flash"),
    }


def make_app(store: MemoryStore) -> QuartTrio:
    app = QuartTrio("trio-ruts-misuse-tests")
    app.config["PROPAGATE_EXCEPTIONS"] = False
    Sessions(app, store, cookie=COOKIE)

    @app.get("/misuse/<name>")
    async def misuse(name: str) -> str:
        try:
            misuses()[name]()
        except SessionUsageError as exc:
            return f"{type(exc).__name__}: {exc}"
        return "no error"

    @app.get("/keys")
    async def keys() -> str:
        try:
            s.keys()
        except AttributeError as exc:
            return str(exc)
        return "no error"

    @app.get("/typo")
    async def typo() -> str:
        return str(hasattr(s, "no_such_thing"))

    @app.get("/awaited")
    async def awaited() -> str:
        await s.update("user", "alice")
        return f"{await s.get('user')} {await s.pop('user')} {await s.get('user', 'gone')}"

    @app.get("/write")
    async def write() -> str:
        await session.update("user", "alice")
        return "ok"

    return app


@pytest.mark.parametrize("name", sorted(misuses()))
async def test_dict_style_use_says_what_to_write(name: str) -> None:
    app = make_app(MemoryStore())
    async with app.test_app():
        response = await app.test_client().get(f"/misuse/{name}")
        message = await response.get_data(as_text=True)
    assert message.startswith("SessionUsageError: ")
    assert "await session." in message


def test_the_error_is_a_type_error_and_a_session_error() -> None:
    assert issubclass(SessionUsageError, TypeError)
    assert issubclass(SessionUsageError, SessionError)


async def test_missing_dict_methods_and_typos() -> None:
    app = make_app(MemoryStore())
    async with app.test_app():
        client = app.test_client()
        keys = await (await client.get("/keys")).get_data(as_text=True)
        assert "not a dict" in keys
        assert "await session.get" in keys
        assert await (await client.get("/typo")).get_data(as_text=True) == "False"
        awaited = await client.get("/awaited")
        assert await awaited.get_data(as_text=True) == "alice alice gone"


async def test_plain_test_client_says_to_use_test_app() -> None:
    app = make_app(MemoryStore())
    raised: list[BaseException] = []

    async def record(sender: object, exception: BaseException, **extra: object) -> None:
        raised.append(exception)

    got_request_exception.connect(record, app)
    response = await app.test_client().get("/write")  # no `async with app.test_app()`
    assert response.status_code == 500
    [error] = raised
    assert isinstance(error, StoreNotOpen)
    assert "async with app.test_app()" in str(error)
