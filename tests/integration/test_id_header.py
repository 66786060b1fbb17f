"""Header tokens (``id_header=``): the session id in a request header instead of a cookie, for
the Quart extension, Quart's dict session, and plain trio-websocket servers."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio
from quart import session as quart_session
from quart_trio import QuartTrio
from quart_trio.testing import TrioClient
from trio_websocket import WebSocketRequest, open_websocket_url, serve_websocket

from trio_ruts import CookieOptions, MemoryStore, Session, SessionId
from trio_ruts.quart import ServerSessionInterface, Sessions, session
from trio_ruts.websocket import accept, session_for

KEY = b"k" * 32
COOKIE = CookieOptions(name="sid", secure=False, max_age=300)
SIGNED = CookieOptions(name="sid", secure=False, max_age=300, signing_keys=[KEY])
MODES = [
    pytest.param("X-Session-Id", "", id="named"),
    pytest.param("Authorization", "Bearer ", id="bearer"),
]


def extension_app(header: str, cookie: CookieOptions) -> QuartTrio:
    app = QuartTrio("trio-ruts-header-tests")
    Sessions(app, MemoryStore(), cookie=cookie, id_header=header)

    @app.get("/login/<user>")
    async def login(user: str) -> str:
        session.prepare_regenerate()
        await session.update("user", user)
        return "ok"

    @app.get("/me")
    async def me() -> str:
        return str(await session.get("user"))

    @app.get("/note/<text>")
    async def note(text: str) -> str:
        await session.update("note", text)
        return "ok"

    @app.get("/logout")
    async def logout() -> str:
        return str(await session.delete())

    return app


def dict_app(header: str, cookie: CookieOptions) -> QuartTrio:
    app = QuartTrio("trio-ruts-header-dict-tests")
    ServerSessionInterface(MemoryStore(), cookie=cookie, id_header=header).init_app(app)

    @app.get("/login/<user>")
    async def login(user: str) -> str:
        quart_session.regenerate()  # type: ignore[attr-defined]
        quart_session["user"] = user
        return "ok"

    @app.get("/me")
    async def me() -> str:
        return str(quart_session.get("user"))

    @app.get("/note/<text>")
    async def note(text: str) -> str:
        quart_session["note"] = text
        return "ok"

    @app.get("/logout")
    async def logout() -> str:
        quart_session.clear()
        return "True"

    return app


AppMaker = Callable[[str, CookieOptions], QuartTrio]


@pytest.fixture(params=[extension_app, dict_app], ids=["Sessions", "ServerSessionInterface"])
def app_maker(request: pytest.FixtureRequest) -> AppMaker:
    return request.param  # type: ignore[no-any-return]


async def _client(app: QuartTrio) -> TrioClient:
    return app.test_client(use_cookies=False)  # type: ignore[return-value]


@pytest.mark.parametrize(("header", "prefix"), MODES)
async def test_header_token_round_trip(app_maker: AppMaker, header: str, prefix: str) -> None:
    app = app_maker(header, COOKIE)
    async with app.test_app():
        client = await _client(app)
        anonymous = await client.get("/me")
        assert await anonymous.get_data(as_text=True) == "None"
        assert header not in anonymous.headers
        first = await client.get("/login/alice")
        assert "Set-Cookie" not in first.headers  # no cookie in header mode
        token = first.headers[header]
        assert token.startswith(prefix)
        sent = {header: token}
        me = await client.get("/me", headers=sent)
        assert await me.get_data(as_text=True) == "alice"
        assert header not in me.headers  # the id did not change: nothing to send
        same = await client.get("/note/hi", headers=sent)
        assert header not in same.headers  # a write under the same id
        again = await client.get("/login/bob", headers=sent)
        new = again.headers[header]
        assert new.startswith(prefix)
        assert new != token  # regenerated: the new id comes back in the same header
        assert await (await client.get("/me", headers=sent)).get_data(as_text=True) == "None"
        out = await client.get("/logout", headers={header: new})
        assert out.headers[header] == ""  # ended: empty
        assert "Set-Cookie" not in out.headers
        gone = await client.get("/me", headers={header: new})
        assert await gone.get_data(as_text=True) == "None"


async def test_cookie_and_other_schemes_are_ignored_in_header_mode(app_maker: AppMaker) -> None:
    app = app_maker("Authorization", COOKIE)
    async with app.test_app():
        client = await _client(app)
        token = (await client.get("/login/alice")).headers["Authorization"]
        raw = token.removeprefix("Bearer ")
        for headers in (
            {"Cookie": f"sid={raw}"},
            {"Authorization": f"Basic {raw}"},
            {"Authorization": raw},
        ):
            response = await client.get("/me", headers=headers)
            assert await response.get_data(as_text=True) == "None"
        lower = await client.get("/me", headers={"Authorization": f"bearer  {raw} "})
        assert await lower.get_data(as_text=True) == "alice"


async def test_header_tokens_are_signed_like_cookies(app_maker: AppMaker) -> None:
    app = app_maker("X-Session-Id", SIGNED)
    async with app.test_app():
        client = await _client(app)
        token = (await client.get("/login/alice")).headers["X-Session-Id"]
        raw, dot, signature = token.partition(".")
        assert dot
        assert len(signature) == 43
        ok = await client.get("/me", headers={"X-Session-Id": token})
        assert await ok.get_data(as_text=True) == "alice"
        for forged in (raw, f"{raw}.{'A' * 43}"):
            response = await client.get("/me", headers={"X-Session-Id": forged})
            assert await response.get_data(as_text=True) == "None"


async def test_unknown_header_id_is_not_adopted(app_maker: AppMaker) -> None:
    app = app_maker("X-Session-Id", COOKIE)
    async with app.test_app():
        client = await _client(app)
        planted = str(SessionId.generate())
        response = await client.get("/note/x", headers={"X-Session-Id": planted})
        issued = response.headers["X-Session-Id"]
        assert issued
        assert issued != planted


async def test_session_in_header_mode_never_makes_a_cookie() -> None:
    async with MemoryStore() as store:
        found = Session.from_id_header(store, [], id_header="X-Session-Id", cookie=COOKIE)
        await found.update("user", "alice")
        assert found.cookie_header() is None
        name, value = found.response_header() or ("", "")
        assert name == "X-Session-Id"
        assert COOKIE.decode(value) == found.id
        cookie_mode = Session(store, cookie=COOKIE)
        await cookie_mode.update("user", "bob")
        assert (cookie_mode.response_header() or ("", ""))[0] == "Set-Cookie"


def test_id_header_names_are_checked() -> None:
    for bad in ("Cookie", "set-cookie", "bad header", ""):
        with pytest.raises(ValueError, match="id_header"):
            Sessions(QuartTrio("x"), MemoryStore(), id_header=bad)


async def test_session_for_reads_and_answers_in_the_header() -> None:
    store = MemoryStore()

    async def handler(request: WebSocketRequest) -> None:
        found = session_for(request, store, cookie=COOKIE, id_header="Authorization")
        user = await found.get("user")
        if user is None:
            await found.update("user", "carol")
        ws = await accept(request, found)
        await ws.send_message(str(user))

    async with store, trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
        url = f"ws://127.0.0.1:{server.port}/"
        async with open_websocket_url(url) as ws:
            assert await ws.get_message() == "None"
            headers = dict(ws.handshake_headers)
            assert b"set-cookie" not in headers
            token = headers[b"authorization"]
            assert token.startswith(b"Bearer ")
        async with open_websocket_url(url, extra_headers=[(b"authorization", token)]) as ws:
            assert await ws.get_message() == "carol"
            assert b"authorization" not in dict(ws.handshake_headers)
        nursery.cancel_scope.cancel()
