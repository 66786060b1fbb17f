"""The Quart extension through Quart's test client: the many small cookie rules."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
from quart import Quart
from quart_trio import QuartTrio
from quart_trio.testing import TrioClient

from tests.integration.apps import CountingStore, make_app
from trio_ruts import CookieOptions, MemoryStore, SessionId, SessionStateError
from trio_ruts.quart import Sessions, session

COOKIE = CookieOptions(
    name="sid", secure=False, max_age=300, path="/", domain="example.test", same_site="strict"
)


def cookie_of(set_cookie: str) -> str:
    return set_cookie.split(";")[0]


@pytest.fixture
async def app_store() -> AsyncIterator[tuple[QuartTrio, CountingStore]]:
    store = CountingStore()
    app = make_app(COOKIE, store)
    async with app.test_app():
        yield app, store


@pytest.fixture
def client(app_store: tuple[QuartTrio, CountingStore]) -> TrioClient:
    return app_store[0].test_client(use_cookies=False)  # type: ignore[return-value]


@pytest.fixture
def store(app_store: tuple[QuartTrio, CountingStore]) -> CountingStore:
    return app_store[1]


async def test_write_sets_cookie_and_reads_do_not(client: TrioClient) -> None:
    first = await client.get("/count")
    assert await first.get_data(as_text=True) == "1"
    [set_cookie] = first.headers.getlist("Set-Cookie")
    assert set_cookie.startswith("sid=")
    assert "Max-Age=300;" in set_cookie
    jar = {"Cookie": cookie_of(set_cookie)}
    second = await client.get("/count", headers=jar)
    assert await second.get_data(as_text=True) == "2"
    assert cookie_of(second.headers["Set-Cookie"]) == cookie_of(set_cookie)
    peek = await client.get("/peek", headers=jar)
    assert await peek.get_data(as_text=True) == "2"
    assert "Set-Cookie" not in peek.headers


async def test_untouched_session_costs_nothing(client: TrioClient, store: CountingStore) -> None:
    response = await client.get("/untouched", headers={"Cookie": f"sid={SessionId.generate()}"})
    assert response.status_code == 200
    assert store.total == 0
    assert "Set-Cookie" not in response.headers


async def test_remove_missing_field_sends_no_cookie(client: TrioClient) -> None:
    jar = {"Cookie": cookie_of((await client.get("/count")).headers["Set-Cookie"])}
    response = await client.get("/remove-missing", headers=jar)
    assert await response.get_data(as_text=True) == "False"
    assert "Set-Cookie" not in response.headers


async def test_logout_clears_cookie_with_same_scope(client: TrioClient) -> None:
    jar = {"Cookie": cookie_of((await client.get("/count")).headers["Set-Cookie"])}
    response = await client.get("/logout", headers=jar)
    assert await response.get_data(as_text=True) == "True"
    removal = response.headers["Set-Cookie"]
    assert removal == (
        "sid=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/; "
        "Domain=example.test; HttpOnly; SameSite=Strict"
    )
    after = await client.get("/peek", headers=jar)
    assert await after.get_data(as_text=True) == "None"


@pytest.mark.parametrize(
    "value",
    ["garbage", "", "A" * 22 + "=", "%00%01", "A" * 5000, 'x"y', "AAAAAAAAAAAAAAAAAAAAAB"],
)
async def test_malformed_cookie_is_no_session(
    client: TrioClient, store: CountingStore, value: str
) -> None:
    response = await client.get("/peek", headers={"Cookie": f"sid={value}"})
    assert response.status_code == 200
    assert await response.get_data(as_text=True) == "None"
    assert store.total == 0  # no store round trip for a malformed value
    assert "Set-Cookie" not in response.headers


async def test_unknown_id_is_not_adopted(client: TrioClient, store: CountingStore) -> None:
    planted = SessionId.generate()
    response = await client.get("/count", headers={"Cookie": f"sid={planted}"})
    assert await response.get_data(as_text=True) == "1"
    issued = cookie_of(response.headers["Set-Cookie"]).removeprefix("sid=")
    assert issued != str(planted)
    assert await store.get_all(planted) is None


async def test_login_regenerates_the_id(client: TrioClient, store: CountingStore) -> None:
    old = cookie_of((await client.get("/count")).headers["Set-Cookie"])
    response = await client.get("/login", headers={"Cookie": old})
    new = cookie_of(response.headers["Set-Cookie"])
    assert new != old
    assert store.calls["write"] == 2
    assert store.calls["rename"] == 0
    assert await store.get_all(SessionId.parse(old.removeprefix("sid="))) is None
    me = await client.get("/peek", headers={"Cookie": new})
    assert await me.get_data(as_text=True) == "1"  # the data moved with the session


async def test_expire_sets_max_age(client: TrioClient) -> None:
    jar = {"Cookie": cookie_of((await client.get("/count")).headers["Set-Cookie"])}
    assert "Max-Age=42;" in (await client.get("/expire/42", headers=jar)).headers["Set-Cookie"]
    gone = await client.get("/expire/0", headers=jar)
    assert "Max-Age=0;" in gone.headers["Set-Cookie"]


async def test_failed_handler_gets_no_cookie(client: TrioClient) -> None:
    response = await client.get("/boom")
    assert response.status_code == 500
    assert "Set-Cookie" not in response.headers
    # A non-5xx response from a handler that did not raise gets its cookie as usual.
    teapot = await client.get("/teapot")
    assert teapot.status_code == 418
    assert "Set-Cookie" in teapot.headers


async def test_store_opened_and_closed_with_the_app() -> None:
    store = MemoryStore()
    app = make_app(COOKIE, store)
    assert not store.is_open
    async with app.test_app():
        assert store.is_open
    assert not store.is_open
    with pytest.raises(trio.ClosedResourceError):
        await store.get(SessionId.generate(), "x")


async def test_open_store_is_left_open() -> None:
    async with MemoryStore() as store:
        app = make_app(COOKIE, store)
        async with app.test_app():
            response = await app.test_client().get("/count")
            assert response.status_code == 200
        assert store.is_open


async def test_misuse_errors() -> None:
    with pytest.raises(TypeError, match="QuartTrio"):
        Sessions(Quart("asyncio-app"), MemoryStore())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="store"):
        Sessions(QuartTrio("no-store"))
    bare = QuartTrio("bare")
    async with bare.test_request_context("/"):
        with pytest.raises(SessionStateError, match="without Sessions"):
            await session.get("x")
    with pytest.raises(SessionStateError, match="no app context"):
        await session.get("x")
    app = make_app(COOKIE, MemoryStore())
    async with app.app_context():
        with pytest.raises(SessionStateError, match="outside a request or websocket"):
            await session.get("x")
