"""The Quart extension through a real Hypercorn server, a real HTTP client and a real
websocket client."""

from __future__ import annotations

import httpx
import trio
from trio_websocket import open_websocket_url

from tests.integration.apps import CountingStore, make_app
from tests.integration.server import no_cookie_jar, served
from trio_ruts import CookieOptions, MemoryStore, SessionId

COOKIE = CookieOptions(name="sid", secure=False, max_age=120)


def set_cookies(headers: httpx.Headers) -> list[str]:
    return headers.get_list("set-cookie")


async def test_counter_over_http() -> None:
    store = CountingStore()
    async with (
        served(make_app(COOKIE, store)) as url,
        httpx.AsyncClient(base_url=url, cookies=no_cookie_jar()) as http,
    ):
        first = await http.get("/count")
        assert first.text == "1"
        [cookie] = set_cookies(first.headers)
        assert "Max-Age=120;" in cookie
        assert "HttpOnly" in cookie
        assert "SameSite=Lax" in cookie
        value = cookie.split(";")[0]
        for expected in ("2", "3"):
            response = await http.get("/count", headers={"Cookie": value})
            assert response.text == expected
        peek = await http.get("/peek", headers={"Cookie": value})
        assert peek.text == "3"
        assert set_cookies(peek.headers) == []
        bad = await http.get("/peek", headers={"Cookie": "sid=%%%%; other=1"})
        assert bad.status_code == 200
        assert bad.text == "None"
        boom = await http.get("/boom", headers={"Cookie": value})
        assert boom.status_code == 500
        assert set_cookies(boom.headers) == []
        out = await http.get("/logout", headers={"Cookie": value})
        assert set_cookies(out.headers)[0].startswith("sid=; Max-Age=0;")


async def test_websocket_reads_handshake_cookie() -> None:
    store = CountingStore()
    async with (
        served(make_app(COOKIE, store)) as url,
        httpx.AsyncClient(base_url=url, cookies=no_cookie_jar()) as http,
    ):
        login = await http.get("/login")
        value = set_cookies(login.headers)[0].split(";")[0]
        ws_url = url.replace("http://", "ws://") + "/ws"
        async with open_websocket_url(ws_url, extra_headers=[(b"cookie", value.encode())]) as ws:
            assert [k for k, _ in ws.handshake_headers if k == b"set-cookie"] == []
            assert await ws.get_message() == "user=alice"
            refused = await ws.get_message()
            assert refused.startswith("refused: the session id cannot change now")
            assert await ws.get_message() == "seen=True"


async def test_websocket_id_change_before_accept_sets_cookie() -> None:
    store = CountingStore()
    async with served(make_app(COOKIE, store)) as url:
        ws_url = url.replace("http://", "ws://") + "/ws?login=bob"
        async with open_websocket_url(ws_url) as ws:
            cookies = [v.decode() for k, v in ws.handshake_headers if k == b"set-cookie"]
            assert len(cookies) == 1
            assert cookies[0].startswith("sid=")
            assert await ws.get_message() == "user=None"
        sid = SessionId.parse(cookies[0].split(";")[0].removeprefix("sid="))
        assert await store.get(sid, "user") is not None
        async with httpx.AsyncClient(base_url=url, cookies=no_cookie_jar()) as http:
            peek = await http.get("/peek", headers={"Cookie": cookies[0].split(";")[0]})
            assert peek.status_code == 200


async def test_websocket_implicit_accept_carries_cookie() -> None:
    async with served(make_app(COOKIE)) as url:
        ws_url = url.replace("http://", "ws://") + "/ws-implicit"
        async with open_websocket_url(ws_url) as ws:
            cookies = [v for k, v in ws.handshake_headers if k == b"set-cookie"]
            assert len(cookies) == 1
            assert await ws.get_message() == "implicitly accepted"


async def test_shutdown_by_cancellation_closes_the_store() -> None:
    store = MemoryStore()
    app = make_app(COOKIE, store)
    with trio.CancelScope() as scope:
        async with (
            served(app) as url,
            httpx.AsyncClient(base_url=url, cookies=no_cookie_jar()) as http,
        ):
            assert (await http.get("/count")).status_code == 200
            assert store.is_open
            scope.cancel()
    assert not store.is_open


async def test_concurrent_clients() -> None:
    requests = 50
    store = CountingStore()
    async with (
        served(make_app(COOKIE, store)) as url,
        httpx.AsyncClient(base_url=url, cookies=no_cookie_jar()) as http,
    ):
        value = set_cookies((await http.get("/count")).headers)[0].split(";")[0]

        async def hit() -> None:
            response = await http.get("/peek", headers={"Cookie": value})
            assert response.status_code == 200

        async with trio.open_nursery() as nursery:
            for _ in range(requests):
                nursery.start_soon(hit)
        assert store.calls["get"] >= requests
