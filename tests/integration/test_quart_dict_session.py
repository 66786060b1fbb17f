"""ServerSessionInterface: Quart's own ``session`` dict on our stores, through Quart's test
client, over the memory store and a real Redis."""

from __future__ import annotations

import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import pytest
import trio
from quart import session, websocket
from quart.signals import got_request_exception
from quart_trio import QuartTrio
from quart_trio.testing import TrioClient

from tests.integration.apps import CountingStore
from trio_ruts import CookieOptions, Expiry, SessionId, StoreNotOpen
from trio_ruts.quart import ServerSessionInterface
from trio_ruts.stores import (
    Read,
    RedisStore,
    Removal,
    SessionRecord,
    SessionStore,
    Touch,
    Write,
    WriteResult,
)

COOKIE = CookieOptions(name="sid", secure=False, max_age=300, domain="example.test")


def make_app(store: SessionStore, **options: object) -> QuartTrio:
    app = QuartTrio("trio-ruts-dict-tests")
    app.config["PROPAGATE_EXCEPTIONS"] = False
    ServerSessionInterface(store, cookie=COOKIE, **options).init_app(app)  # type: ignore[arg-type]
    gate: dict[str, trio.Event] = {}

    @app.get("/set/<key>/<value>")
    async def set_key(key: str, value: str) -> str:
        session[key] = value
        return "ok"

    @app.get("/get/<key>")
    async def get_key(key: str) -> str:
        first = session.get(key)
        assert session.get(key) == first  # a second read costs nothing
        return repr(first)

    @app.get("/copy/<src>/<dst>")
    async def copy(src: str, dst: str) -> str:
        session[dst] = session[src]
        return "ok"

    @app.get("/peek-cart")
    async def peek_cart() -> str:
        return repr(session["cart"])  # a mutable value, read and left alone

    @app.get("/boom")
    async def boom() -> str:
        session["half"] = "done"
        raise RuntimeError("handler failed")

    @app.get("/all")
    async def everything() -> str:
        return repr(sorted(session.items()))

    @app.get("/untouched")
    async def untouched() -> str:
        return "no session here"

    @app.get("/slow-set/<key>/<value>")
    async def slow_set(key: str, value: str) -> str:
        # Load, wait until the other request loaded too, then change one key.
        seen = dict(session)
        gate.setdefault(key, trio.Event()).set()
        for other in ("a", "b"):
            await gate.setdefault(other, trio.Event()).wait()
        session[key] = value
        return repr(sorted(seen))

    @app.get("/append/<item>")
    async def append(item: str) -> str:
        session.setdefault("cart", [])
        session["cart"].append(item)  # changed in place: no `modified = True`
        return "ok"

    @app.get("/del/<key>")
    async def delete_key(key: str) -> str:
        del session[key]
        return "ok"

    @app.get("/pop/<key>")
    async def pop_key(key: str) -> str:
        return repr(session.pop(key, None))

    @app.get("/clear")
    async def clear() -> str:
        session.clear()
        return "ok"

    @app.get("/login/<user>")
    async def login(user: str) -> str:
        session.regenerate()  # type: ignore[attr-defined]
        session["user"] = user
        return "ok"

    @app.get("/regenerate")
    async def regenerate() -> str:
        session.regenerate()  # type: ignore[attr-defined]
        return "ok"

    @app.websocket("/ws")
    async def ws() -> None:
        await websocket.accept()
        await websocket.send(repr(session.get("user")))
        session["seen"] = "yes"  # saved when the route returns, if a session exists
        await websocket.receive()  # return while the client is still connected

    return app


class CountingRedis(RedisStore):
    """A real RedisStore that counts the session calls the dict session makes."""

    calls: Counter[str]

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    async def get_all(self, id: SessionId) -> SessionRecord | None:
        self.calls["get_all"] += 1
        return await super().get_all(id)

    async def touch_get_all(self, id: SessionId, touch: Touch) -> SessionRecord | None:
        self.calls["get_all"] += 1
        return await super().touch_get_all(id, touch)

    async def get(self, id: SessionId, field: str) -> bytes | None:
        self.calls["get"] += 1
        return await super().get(id, field)

    async def touch_get(self, id: SessionId, field: str, touch: Touch) -> Read:
        self.calls["get"] += 1
        return await super().touch_get(id, field, touch)

    async def write(self, write: Write) -> WriteResult:
        self.calls["write"] += 1
        return await super().write(write)

    async def remove(self, id: SessionId, field: str) -> Removal:
        self.calls["remove"] += 1
        return await super().remove(id, field)

    async def delete(self, id: SessionId) -> bool:
        self.calls["delete"] += 1
        return await super().delete(id)

    async def rename(self, old: SessionId, new: SessionId) -> int | None:
        self.calls["rename"] += 1
        return await super().rename(old, new)


def _redis_store(request: pytest.FixtureRequest) -> SessionStore:
    server = request.getfixturevalue("redis74")
    store = CountingRedis.from_url(server.url, prefix=f"t{uuid.uuid4().hex[:8]}:")
    store.calls = Counter()
    return store


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def store(request: pytest.FixtureRequest) -> SessionStore:
    if request.param == "memory":
        return CountingStore()
    return _redis_store(request)


@pytest.fixture
async def app(store: SessionStore) -> AsyncIterator[QuartTrio]:
    app = make_app(store)
    async with app.test_app():
        yield app


@pytest.fixture
def client(app: QuartTrio) -> TrioClient:
    return app.test_client(use_cookies=False)  # type: ignore[return-value]


def jar_of(response: object) -> dict[str, str]:
    return {"Cookie": response.headers["Set-Cookie"].split(";")[0]}  # type: ignore[attr-defined]


def id_of(response: object) -> SessionId:
    found = COOKIE.session_id_from_header(jar_of(response)["Cookie"])
    assert found is not None
    return found


async def text(response: object) -> str:
    return await response.get_data(as_text=True)  # type: ignore[attr-defined, no-any-return]


async def test_writes_set_cookie_and_reads_do_not(client: TrioClient) -> None:
    first = await client.get("/set/user/alice")
    assert "Max-Age=300;" in first.headers["Set-Cookie"]
    jar = jar_of(first)
    read = await client.get("/get/user", headers=jar)
    assert await text(read) == "'alice'"
    assert "Set-Cookie" not in read.headers
    assert read.headers["Vary"] == "Cookie"
    untouched = await client.get("/untouched", headers=jar)
    assert "Set-Cookie" not in untouched.headers
    assert "Vary" not in untouched.headers


async def test_lazy_load_is_one_get_all_and_none_when_untouched(
    client: TrioClient, store: CountingStore | CountingRedis
) -> None:
    jar = jar_of(await client.get("/set/user/alice"))
    assert store.calls["get_all"] == 0  # assigning a key loads nothing
    store.calls.clear()
    await client.get("/untouched", headers=jar)
    assert store.total == 0
    assert await text(await client.get("/get/user", headers=jar)) == "'alice'"
    assert store.calls == {"get_all": 1}
    store.calls.clear()
    # A key that did not change is not written back; the changed one is, once.
    await client.get("/copy/user/other", headers=jar)
    assert store.calls == {"get_all": 1, "write": 1}
    store.calls.clear()
    await client.get("/set/other/x", headers=jar)
    assert store.calls == {"write": 1}  # assigning needs no load
    await client.get("/append/book", headers=jar)
    store.calls.clear()
    assert await text(await client.get("/peek-cart", headers=jar)) == "['book']"
    assert store.calls == {"get_all": 1}  # read, unchanged: not written back


async def test_only_changed_keys_are_written(client: TrioClient, store: SessionStore) -> None:
    jar = jar_of(await client.get("/set/user/alice"))
    await client.get("/set/theme/dark", headers=jar)
    await client.get("/append/book", headers=jar)
    await client.get("/append/pen", headers=jar)  # in-place change of a list read back
    listing = await text(await client.get("/all", headers=jar))
    assert listing == "[('cart', ['book', 'pen']), ('theme', 'dark'), ('user', 'alice')]"


async def test_concurrent_requests_changing_different_keys_lose_nothing(
    client: TrioClient,
) -> None:
    jar = jar_of(await client.get("/set/user/alice"))
    seen: list[str] = []

    async def change(key: str) -> None:
        response = await client.get(f"/slow-set/{key}/{key}-value", headers=jar)
        seen.append(await text(response))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(change, "a")
        nursery.start_soon(change, "b")
    assert seen == ["['user']", "['user']"]  # both loaded before either wrote
    listing = await text(await client.get("/all", headers=jar))
    assert listing == "[('a', 'a-value'), ('b', 'b-value'), ('user', 'alice')]"


async def test_deleted_and_popped_keys_are_removed(client: TrioClient) -> None:
    jar = jar_of(await client.get("/set/user/alice"))
    await client.get("/set/theme/dark", headers=jar)
    await client.get("/set/flash/hi", headers=jar)
    assert (await client.get("/del/theme", headers=jar)).status_code == 200
    assert await text(await client.get("/pop/flash", headers=jar)) == "'hi'"
    assert await text(await client.get("/pop/flash", headers=jar)) == "None"
    assert await text(await client.get("/all", headers=jar)) == "[('user', 'alice')]"
    missing = await client.get("/del/never", headers=jar)
    assert missing.status_code == 500  # KeyError, as with a dict


async def test_clear_ends_the_session_with_a_removal_cookie(client: TrioClient) -> None:
    jar = jar_of(await client.get("/set/user/alice"))
    cleared = await client.get("/clear", headers=jar)
    assert cleared.headers["Set-Cookie"].startswith("sid=; Max-Age=0;")
    assert "Domain=example.test" in cleared.headers["Set-Cookie"]
    assert await text(await client.get("/all", headers=jar)) == "[]"
    # Removing the last key ends it too.
    jar = jar_of(await client.get("/set/user/bob"))
    last = await client.get("/del/user", headers=jar)
    assert last.headers["Set-Cookie"].startswith("sid=; Max-Age=0;")


async def test_a_failing_handler_saves_its_changes_as_quart_does(client: TrioClient) -> None:
    jar = jar_of(await client.get("/set/user/alice"))
    assert (await client.get("/boom", headers=jar)).status_code == 500
    assert await text(await client.get("/get/half", headers=jar)) == "'done'"


async def test_unknown_id_is_not_adopted(client: TrioClient) -> None:
    planted = SessionId.generate()
    response = await client.get("/set/user/mallory", headers={"Cookie": f"sid={planted}"})
    assert id_of(response) != planted
    assert await text(await client.get("/get/user", headers={"Cookie": f"sid={planted}"})) == (
        "None"
    )


async def test_regenerate_moves_the_session(client: TrioClient) -> None:
    jar = jar_of(await client.get("/set/cart/x"))
    old = id_of(await client.get("/set/theme/dark", headers=jar))
    logged_in = await client.get("/login/alice", headers=jar)
    new_jar = jar_of(logged_in)
    assert id_of(logged_in) != old
    assert await text(await client.get("/get/user", headers=new_jar)) == "'alice'"
    assert await text(await client.get("/get/cart", headers=new_jar)) == "'x'"
    assert await text(await client.get("/get/cart", headers=jar)) == "None"
    renamed = await client.get("/regenerate", headers=new_jar)  # no write: a plain rename
    assert id_of(renamed) != id_of(logged_in)


async def test_websocket_reads_the_dict(app: QuartTrio, client: TrioClient) -> None:
    jar = jar_of(await client.get("/set/user/alice"))
    async with client.websocket("/ws", headers=jar) as ws:
        assert await ws.receive() == "'alice'"
        await ws.send("bye")


async def test_websocket_changes_reach_an_existing_session_only(
    app: QuartTrio, client: TrioClient, caplog: pytest.LogCaptureFixture
) -> None:
    jar = jar_of(await client.get("/set/user/alice"))
    # The save runs after the route returns, and a client that disconnects first cancels
    # it: stay connected until it happened.
    async with client.websocket("/ws", headers=jar) as ws:
        assert await ws.receive() == "'alice'"
        await ws.send("bye")
        with trio.fail_after(10):
            while await text(await client.get("/get/seen", headers=jar)) != "'yes'":
                await trio.sleep(0.02)
    async with client.websocket("/ws") as ws:  # no session: a new one would need a cookie
        assert await ws.receive() == "None"
        await ws.send("bye")
        with trio.fail_after(10):
            while "changed in a websocket route" not in caplog.text:
                await trio.sleep(0.02)


async def test_plain_assignment_opens_and_closes_the_store() -> None:
    store = CountingStore()
    app = QuartTrio("trio-ruts-plain-assignment")
    app.session_interface = ServerSessionInterface(store, cookie=COOKIE)  # type: ignore[assignment]

    @app.get("/count")
    async def count() -> str:
        session["n"] = session.get("n", 0) + 1
        return str(session["n"])

    async with app.test_app():
        assert not store.is_open  # opened by the first request, in the app's nursery
        client = app.test_client(use_cookies=False)
        first = await client.get("/count")
        assert await text(first) == "1"
        assert store.is_open
        assert await text(await client.get("/count", headers=jar_of(first))) == "2"
    assert not store.is_open  # closed at shutdown
    with pytest.raises(trio.ClosedResourceError):
        await store.get_all(SessionId.generate())


async def test_touching_read_sends_a_rolling_cookie() -> None:
    store = CountingStore()
    app = make_app(store, expiry=Expiry(idle=300, touch_interval=30))
    async with app.test_app():
        client = app.test_client(use_cookies=False)
        first = await client.get("/set/user/alice")
        jar = jar_of(first)
        read = await client.get("/get/user", headers=jar)
        assert "Set-Cookie" not in read.headers  # fresh: nothing to extend
        assert await store.expire(id_of(first), 100)  # as if 200 s went by
        rolled = await client.get("/get/user", headers=jar)
        assert jar_of(rolled) == jar
        assert "Max-Age=300;" in rolled.headers["Set-Cookie"]


async def test_plain_test_client_says_to_use_test_app() -> None:
    app = make_app(CountingStore())
    raised: list[BaseException] = []

    async def record(sender: object, exception: BaseException, **extra: object) -> None:
        raised.append(exception)

    got_request_exception.connect(record, app)
    client = app.test_client()  # no `async with app.test_app()`: the app never served
    assert (await client.get("/untouched")).status_code == 200  # no session use: no error
    assert (await client.get("/set/user/alice")).status_code == 500
    [error] = raised
    assert isinstance(error, StoreNotOpen)
    assert "async with app.test_app()" in str(error)
    assert "use `async with store:` around its use" not in str(error)


def test_without_greenback_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "greenback", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"trio-ruts\[quart\]"):
        ServerSessionInterface(CountingStore())


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(TypeError, match="SessionStore"):
        ServerSessionInterface({})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reserved"):
        ServerSessionInterface(CountingStore(), id_header="Cookie")
