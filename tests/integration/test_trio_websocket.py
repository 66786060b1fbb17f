"""trio_ruts.websocket on a plain trio-websocket server, with a real websocket client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial

import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, open_websocket_url, serve_websocket

from trio_ruts import CookieOptions, MemoryStore, Session, SessionId, SessionStateError
from trio_ruts.websocket import CLOSE_CODE, accept, handshake_headers, run_watched, session_for

COOKIE = CookieOptions(name="sid", secure=False, max_age=60)


async def handler(store: MemoryStore, request: WebSocketRequest) -> None:
    session = session_for(request, store, cookie=COOKIE)
    if request.path == "/watched":
        ws = await accept(request, session)

        async def echo() -> None:
            while True:
                await ws.send_message(f"echo:{await ws.get_message()}")

        await run_watched(ws, session, echo)
        return
    if request.path == "/manual":
        ws = await request.accept(extra_headers=handshake_headers(session))
        await ws.send_message(f"user={await session.get('user')}")
        return
    visits = await session.get("visits", 0) + 1
    await session.update("visits", visits)
    ws = await accept(request, session)
    await ws.send_message(f"visits={visits}")
    try:
        await session.regenerate()
    except SessionStateError:
        await ws.send_message("regenerate refused after accept")


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, MemoryStore]]:
    async with MemoryStore() as store, trio.open_nursery() as nursery:
        ws_server = await nursery.start(
            partial(serve_websocket, partial(handler, store), "127.0.0.1", 0, ssl_context=None)
        )
        yield f"ws://127.0.0.1:{ws_server.port}", store
        nursery.cancel_scope.cancel()


def set_cookie(headers: tuple[tuple[bytes, bytes], ...]) -> list[str]:
    return [v.decode() for k, v in headers if k == b"set-cookie"]


async def test_new_visitor_gets_cookie_with_handshake(server: tuple[str, MemoryStore]) -> None:
    url, store = server
    async with open_websocket_url(url + "/") as ws:
        [cookie] = set_cookie(ws.handshake_headers)
        assert await ws.get_message() == "visits=1"
        assert await ws.get_message() == "regenerate refused after accept"
    value = cookie.split(";")[0]
    sid = SessionId.parse(value.removeprefix("sid="))
    assert await store.get(sid, "visits") is not None
    async with open_websocket_url(url + "/", extra_headers=[(b"cookie", value.encode())]) as ws:
        assert await ws.get_message() == "visits=2"
        assert set_cookie(ws.handshake_headers)[0].split(";")[0] == value


async def test_reading_only_sends_no_cookie(server: tuple[str, MemoryStore]) -> None:
    url, store = server
    s = Session(store, cookie=COOKIE)
    await s.update("user", "carol")
    value = f"sid={s.id}".encode()
    async with open_websocket_url(
        url + "/manual", extra_headers=[(b"cookie", b"x=1"), (b"cookie", value)]
    ) as ws:
        assert set_cookie(ws.handshake_headers) == []
        assert await ws.get_message() == "user=carol"


async def test_forged_cookie_is_no_session(server: tuple[str, MemoryStore]) -> None:
    url, _ = server
    async with open_websocket_url(url + "/manual", extra_headers=[(b"cookie", b"sid=x")]) as ws:
        assert await ws.get_message() == "user=None"


async def test_run_watched_closes_with_1008_when_the_session_ends(
    server: tuple[str, MemoryStore],
) -> None:
    url, store = server
    s = Session(store, cookie=COOKIE)
    await s.update("user", "carol")
    assert s.id is not None
    cookie = f"sid={s.id}".encode()
    async with open_websocket_url(url + "/watched", extra_headers=[(b"cookie", cookie)]) as ws:
        await ws.send_message("hi")
        assert await ws.get_message() == "echo:hi"
        assert await Session(store, s.id, cookie=COOKIE).delete()
        with trio.fail_after(1), pytest.raises(ConnectionClosed) as info:  # noqa: PT012
            while True:
                await ws.get_message()
        await trio.aclose_forcefully(ws._stream)  # trio-websocket leaves it open
    assert info.value.reason.code == CLOSE_CODE
    assert info.value.reason.reason == "session deleted"
