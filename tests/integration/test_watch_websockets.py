"""Live revocation end to end (SPEC section 10): Quart websocket routes under a real Hypercorn,
a real websocket client and real Redis servers; a second app process for revocations that
come from another instance."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from tests import servers
from tests.integration.server import no_cookie_jar, served
from tests.integration.watch_app import make_watch_app
from trio_ruts import Expiry, SessionId
from trio_ruts.quart import CLOSE_CODE
from trio_ruts.stores import RedisStore

pytestmark = pytest.mark.redis

#: SPEC: the websocket is closed within a second of the session's end.
WITHIN = 1.0


@pytest.fixture
def redis() -> Iterator[servers.RedisServer]:
    """A Redis of this test's own (tests below kill and restart it)."""
    with servers.redis_server(servers.system_redis_binary()) as server:
        yield server


@asynccontextmanager
async def app_and_client(
    url: str, prefix: str, **options: object
) -> AsyncIterator[tuple[str, httpx.AsyncClient, str]]:
    """An app over Redis, served; a client logged in. Yields (base URL, client, cookie)."""
    app = make_watch_app(RedisStore.from_url(url, prefix=prefix), **options)  # type: ignore[arg-type]
    async with (
        served(app) as base,
        httpx.AsyncClient(base_url=base, cookies=no_cookie_jar()) as http,
    ):
        response = await http.get("/login")
        cookie = response.headers["set-cookie"].split(";")[0]
        yield base, http, cookie


@asynccontextmanager
async def feed(base: str, cookie: str) -> AsyncIterator[WebSocketConnection]:
    ws_url = base.replace("http://", "ws://") + "/feed"
    async with open_websocket_url(ws_url, extra_headers=[(b"cookie", cookie.encode())]) as ws:
        await ws.send_message("hello")
        assert await ws.get_message() == "echo:hello"
        yield ws


async def closed_within(ws: WebSocketConnection, seconds: float = WITHIN) -> tuple[int, str]:
    """Wait (at most ``seconds``) for the server to close ``ws``; its code and reason."""
    with trio.fail_after(seconds), pytest.raises(ConnectionClosed) as info:  # noqa: PT012
        while True:
            await ws.get_message()
    # trio-websocket leaves the client's socket open when the server closes (seen with any
    # Quart route that closes): close it, or the test run reports an unclosed socket.
    await trio.aclose_forcefully(ws._stream)
    reason = info.value.reason
    return reason.code, reason.reason or ""


async def test_logout_in_another_request_closes_the_websocket(
    redis: servers.RedisServer,
) -> None:
    async with app_and_client(redis.url, "w1:") as (base, http, cookie), feed(base, cookie) as ws:
        assert (await http.get("/logout", headers={"cookie": cookie})).text == "True"
        assert await closed_within(ws) == (CLOSE_CODE, "session deleted")


async def test_revocation_from_another_app_process_closes_the_websocket(
    redis: servers.RedisServer,
) -> None:
    prefix = f"w{uuid.uuid4().hex[:6]}:"
    other = await trio.lowlevel.open_process(
        [sys.executable, "-m", "tests.integration.watch_app", redis.url, prefix],
        stdout=subprocess.PIPE,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
    )
    assert other.stdout is not None
    try:
        line = b""
        with trio.fail_after(30):
            while not line.endswith(b"\n"):
                line += await other.stdout.receive_some()
        other_url = line.decode().strip()
        assert other_url.startswith("http://")
        async with app_and_client(redis.url, prefix) as (base, _, cookie), feed(base, cookie) as ws:
            async with httpx.AsyncClient(base_url=other_url, cookies=no_cookie_jar()) as http:
                assert (await http.get("/alive", headers={"cookie": cookie})).text == "True"
                assert (await http.get("/revoke", headers={"cookie": cookie})).text == "True"
            assert await closed_within(ws) == (CLOSE_CODE, "session revoked")
    finally:
        other.terminate()
        with trio.move_on_after(10):
            await other.wait()
        await other.stdout.aclose()


async def test_expiry_closes_the_websocket(redis: servers.RedisServer) -> None:
    async with app_and_client(redis.url, "w3:") as (base, http, cookie):
        assert (await http.get("/expire/2", headers={"cookie": cookie})).text == "True"
        async with feed(base, cookie) as ws:
            code, reason = await closed_within(ws, 2.0 + WITHIN)
            assert (code, reason) == (CLOSE_CODE, "session expired")


async def test_the_websocket_survives_a_redis_restart_and_still_closes(
    redis: servers.RedisServer,
) -> None:
    async with app_and_client(redis.url, "w4:") as (base, http, cookie):
        async with feed(base, cookie) as ws:
            redis.stop()
            await trio.sleep(0.3)
            redis.start()  # empty: the session is gone, and the rechecks find out
            assert await closed_within(ws, 2.0) == (CLOSE_CODE, "session deleted")
        # The subscription is back: a new session's logout reaches its websocket.
        cookie = (await http.get("/login")).headers["set-cookie"].split(";")[0]
        async with feed(base, cookie) as ws:
            assert (await http.get("/logout", headers={"cookie": cookie})).text == "True"
            assert await closed_within(ws) == (CLOSE_CODE, "session deleted")


async def test_a_websocket_stays_open_while_its_session_lives(
    redis: servers.RedisServer,
) -> None:
    async with app_and_client(redis.url, "w5:") as (base, http, cookie), feed(base, cookie) as ws:
        other = (await http.get("/login")).headers["set-cookie"].split(";")[0]
        assert (await http.get("/logout", headers={"cookie": other})).text == "True"
        await trio.sleep(1.5)
        await ws.send_message("still there?")
        assert await ws.get_message() == "echo:still there?"


async def test_websocket_traffic_keeps_the_session_alive(redis: servers.RedisServer) -> None:
    expiry = Expiry(idle=3, touch_interval=1)
    async with app_and_client(redis.url, "w6:", expiry=expiry) as (base, _, cookie):
        async with feed(base, cookie) as ws:
            for i in range(10):  # 5 s of traffic, well past the 3 s idle timeout
                await trio.sleep(0.5)
                await ws.send_message(str(i))
                assert await ws.get_message() == f"echo:{i}"
            sid = SessionId.parse(cookie.split("=", 1)[1])
            key = RedisStore.from_url(redis.url, prefix="w6:").key(sid).decode()
            ttl = int(redis.cli("TTL", key).strip())
            assert ttl >= 1
        # Without traffic it ends: the touches were the websocket's doing.
        async with feed(base, cookie) as ws:
            # (its hello touches once more: up to 1 + 3 s)
            assert await closed_within(ws, 4.0 + WITHIN) == (CLOSE_CODE, "session expired")


async def test_watch_websockets_false_opts_out(redis: servers.RedisServer) -> None:
    async with (
        app_and_client(redis.url, "w7:", watch_websockets=False) as (base, http, cookie),
        feed(base, cookie) as ws,
    ):
        assert (await http.get("/logout", headers={"cookie": cookie})).text == "True"
        await trio.sleep(WITHIN)
        await ws.send_message("open")
        assert await ws.get_message() == "echo:open"
