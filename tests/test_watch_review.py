"""Adversarial reviews of live revocation (issue 18, SPEC section 10) and of the touching
read: a test per bug they found, each named after the behaviour that is now right; real
servers as the rest of the suite (tests/servers.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from tests import servers
from tests.conftest import KITS
from tests.contract.test_watch import a_session, new, watching
from trio_ruts import CookieOptions, SessionId
from trio_ruts._watch import Watch
from trio_ruts.stores import MemoryStore, PostgresStore, SessionStore, Touch

#: the kits these tests run on: the memory store (mock clock), one Redis, Postgres.
SOME_KITS = [
    pytest.param(k, id=k.id, marks=k.marks)
    for k in KITS
    if k.id in ("memory", "redis7.0", "postgres")
]
#: and for the notices of a shorter lifetime, which each store sends its own way: Redis with
#: and without HEXPIRE, a cluster (SPUBLISH), a layered store (the cold store's channel).
RECHECK_KITS = [
    pytest.param(k, id=k.id, marks=k.marks)
    for k in KITS
    if k.id in ("memory", "redis7.0", "redis7.4", "redis-cluster", "postgres")
    or k.id == "layered-redis-postgres"
]


# -- 1. a lifetime shortened elsewhere --


@pytest.mark.parametrize("kit", RECHECK_KITS, indirect=True)
async def test_expire_shortened_elsewhere_ends_the_watch_on_time(
    store: SessionStore, clock: Any
) -> None:
    """Another request shortens the session's lifetime (``expire(2)``): its "recheck"
    notice makes the watch read the new lifetime, and the watch ends with the session,
    2 s later, not at its old deadline (600 s)."""
    sid = await a_session(store)
    async with watching(new(store, sid)) as running:
        await trio.sleep(0.1)
        assert await new(store, sid).expire(2)
        await trio.sleep(3.5)
        assert await new(store, sid).get("user") is None  # the session has expired
        assert await running.ended(within=1.5) == "expired"


#: The lifetime of the field another request removes or rewrites: none of its own (the
#: first review), or one longer than the rest (the second review).
FIRST_TTL = pytest.mark.parametrize("first_ttl", [None, 300], ids=["lasting", "longest"])


@pytest.mark.parametrize("kit", RECHECK_KITS, indirect=True)
@FIRST_TTL
async def test_removing_the_longest_lived_field_elsewhere_ends_the_watch_on_time(
    store: SessionStore, clock: Any, first_ttl: int | None
) -> None:
    """A session of a field that outlives the rest (no lifetime of its own, or 300 s) and a
    2 s field: another request removes the first, so the session ends with the 2 s field,
    and so does the watch (the removal's "recheck" notice)."""
    s = new(store)
    await s.update("user", "ada", ttl=first_ttl)
    await s.update("flash", 1, ttl=2)
    assert s.id is not None
    async with watching(new(store, s.id)) as running:
        await trio.sleep(0.1)
        assert await new(store, s.id).remove("user")
        await trio.sleep(3.5)
        assert await new(store, s.id).get("flash") is None  # the session has ended
        assert await running.ended(within=1.5) == "expired"


@pytest.mark.parametrize("kit", RECHECK_KITS, indirect=True)
@FIRST_TTL
async def test_a_field_given_a_shorter_lifetime_elsewhere_ends_the_watch_on_time(
    store: SessionStore, clock: Any, first_ttl: int | None
) -> None:
    """Another request rewrites the session's only field (no lifetime of its own, or 300 s:
    the watch's deadline) with a lifetime of 2 s: the session ends with it, and so does the
    watch (the write's "recheck" notice)."""
    s = new(store)
    await s.update("user", "ada", ttl=first_ttl)
    assert s.id is not None
    async with watching(new(store, s.id)) as running:
        await trio.sleep(0.1)
        assert await new(store, s.id).update("user", "ada", ttl=2)
        await trio.sleep(3.5)
        assert await new(store, s.id).get("user") is None  # the session has ended
        assert await running.ended(within=1.5) == "expired"


@pytest.mark.parametrize("kit", SOME_KITS, indirect=True)
async def test_a_lifetime_made_longer_elsewhere_keeps_the_watch(
    store: SessionStore, clock: Any
) -> None:
    """No notice when nothing got shorter: a touch elsewhere (``expire(600)`` on a 2 s
    session) is found at the old deadline, and the watch goes on."""
    sid = await a_session(store)
    assert await new(store, sid).expire(2)
    async with watching(new(store, sid)) as running:
        assert await new(store, sid).expire(600)
        await trio.sleep(3.5)
        assert not running.done.is_set()
        assert running.watch is not None
        assert running.watch.reason is None


# -- 2. the Postgres listener's own timeouts make it reconnect --


@pytest.fixture(scope="module")
def own_pg() -> Iterator[servers.PostgresServer]:
    """A server of this module's own: a test freezes one of its backends."""
    with servers.postgres_server() as server:
        yield server


def listener_pids(server: servers.PostgresServer) -> list[int]:
    out = subprocess.run(
        [
            "psql",
            server.dsn,
            "-XAtc",
            "SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN%'",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return [int(p) for p in out.split()]


@pytest.mark.postgres
async def test_postgres_listener_ping_timeout_reconnects(
    own_pg: servers.PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The LISTEN connection's backend hangs (SIGSTOP): the listener's liveness ping times
    out (``trio.TooSlowError``), and the listener connects again (the store and its nursery
    live on): a deletion afterwards still ends the watch."""
    from trio_ruts.stores.postgres import _store as pg_module

    monkeypatch.setattr(pg_module, "_LISTEN_PING", 0.5)  # 5 s in the library: same path
    store = PostgresStore.from_dsn(own_pg.dsn, table="review_ping", sweep_interval=None)
    async with store:
        sid = await a_session(store)
        async with watching(new(store, sid)) as running:
            await trio.sleep(0.2)
            pids = listener_pids(own_pg)
            assert len(pids) == 1
            os.kill(pids[0], signal.SIGSTOP)
            try:
                await trio.sleep(2.0)  # the ping times out; the listener should reconnect
            finally:
                os.kill(pids[0], signal.SIGCONT)
            await trio.sleep(0.5)
            assert await new(store, sid).delete()
            assert await running.ended(within=2.0) == "deleted"


# -- 3. a rename elsewhere during the watching session's own rename --


class SlowRenames(MemoryStore):
    """The memory store with a round trip's delay before each rename (and login) reaches it
    (as over a network: the call is in flight while other requests run)."""

    async def rename(self, old: SessionId, new: SessionId) -> int | None:
        await trio.sleep(0.05)
        return await super().rename(old, new)

    async def login(
        self, old: SessionId, new: SessionId, user: str, label: str | None, idle: int
    ) -> int | None:
        await trio.sleep(0.05)
        return await super().login(old, new, user, label, idle)


async def test_rename_elsewhere_during_own_regenerate_ends_the_watch(
    mock_clock: MockClock,
) -> None:
    """While the watching session's own ``regenerate()`` is in flight, another request
    renames the session: its "renamed" notice is held until ours returns; ours found no
    session (it moved nothing), so the notice was not ours: the watch ends, "renamed"."""
    async with SlowRenames() as store:
        sid = await a_session(store)
        mine = new(store, sid)
        async with watching(mine) as running:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(mine.regenerate)
                await trio.sleep(0.01)  # our rename is in flight
                other = new(store, sid)
                other.prepare_regenerate()
                assert await other.update("user", "bob")  # another request renames it
            assert mine.id == sid  # our rename found nothing: we did not move
            assert await running.ended(within=1.0) == "renamed"


async def test_rename_elsewhere_during_own_login_ends_the_watch(mock_clock: MockClock) -> None:
    """The same during the watching session's own ``login()``: it finds no session and
    logs in a fresh one, which the watch does not follow: it ends, "renamed"."""
    async with SlowRenames() as store:
        sid = await a_session(store)
        mine = new(store, sid)
        async with watching(mine) as running:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(mine.login, "ada")
                await trio.sleep(0.01)  # our login's rename is in flight
                other = new(store, sid)
                other.prepare_regenerate()
                assert await other.update("user", "bob")
            assert mine.id not in (None, sid)  # logged in, as a fresh session
            assert await running.ended(within=1.0) == "renamed"


async def test_own_regenerate_and_login_move_the_watch(mock_clock: MockClock) -> None:
    """Our own renames, with their notices arriving while they are in flight: the watch
    follows the session through each (and ends with it)."""
    async with SlowRenames() as store:
        sid = await a_session(store)
        mine = new(store, sid)
        async with watching(mine) as running:
            await mine.regenerate()
            await mine.login("ada")
            mine.prepare_regenerate()
            assert await mine.update("seen", 1)
            await trio.sleep(1)
            assert not running.done.is_set()
            assert mine.id is not None
            assert await new(store, mine.id).delete()
            assert await running.ended(within=1.0) == "deleted"


@pytest.mark.parametrize("kit", [p for p in SOME_KITS if p.id != "memory"], indirect=True)
async def test_rename_elsewhere_racing_own_regenerate_ends_the_watch_on_real_servers(
    store: SessionStore,
) -> None:
    """The same on Redis and Postgres, without any delay: another request's rename and the
    watching session's own ``regenerate()`` sent together, many times. Whenever the other
    one wins (our rename finds no session), the watch ends with "renamed"; whenever ours
    wins, the watch follows and lives on."""
    theirs = ours = 0
    for _ in range(40):
        sid = await a_session(store)
        mine = new(store, sid)
        async with watching(mine) as running:
            other = new(store, sid)
            other.prepare_regenerate()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(other.update, "user", "bob")
                nursery.start_soon(mine.regenerate)
            if mine.id == sid:  # the other request's rename won
                assert await running.ended(within=1.0) == "renamed"
                theirs += 1
            else:
                await trio.sleep(0.05)
                assert not running.done.is_set()
                ours += 1
    if theirs < 5:
        pytest.skip(f"the other request's rename won only {theirs} of {theirs + ours} races")


# -- 4. the watch follows a rename of its own session while it starts --


async def test_own_regenerate_while_the_watch_starts_is_followed(
    mock_clock: MockClock,
) -> None:
    """A ``regenerate()`` of the same session while the watch starts (it waits for the
    store's subscription): the watch is one of the session's before its first await, and
    reads the id after it, so it follows the rename and lives on with the session."""
    async with MemoryStore() as store:
        sid = await a_session(store)
        mine = new(store, sid)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(mine.regenerate)  # e.g. a sibling task of the same connection
            async with mine.watch() as w:
                await trio.sleep(1)
            assert mine.id != sid
            assert await new(store, mine.id).get("user") == "ada"  # the session lives
            assert w.reason is None


@pytest.fixture
def mock_clock() -> MockClock:
    return MockClock(autojump_threshold=0)


# -- 5. Quart: a session that ends between the handler's check and accept(): 1008 --


def authed_app(store: SessionStore) -> Any:
    from quart import websocket
    from quart_trio import QuartTrio

    from trio_ruts.quart import Sessions, session

    app = QuartTrio(__name__)
    Sessions(app, store, cookie=CookieOptions(name="sid", secure=False, max_age=600))

    @app.get("/login")
    async def login() -> str:
        await session.update("user", "ada")
        return "logged in"

    @app.get("/logout")
    async def logout() -> str:
        return str(await session.delete())

    @app.websocket("/authed")
    async def authed() -> None:
        user = await session.get("user")  # the handler authenticates the connection ...
        if user is None:
            await websocket.close(1008, "log in first")
            return
        await trio.sleep(0.5)  # ... does other work (loads data, say) ...
        await websocket.accept()  # ... and accepts
        await websocket.send(f"hello {user}")
        while True:
            await websocket.send(f"echo:{await websocket.receive()!s}")

    return app


async def test_quart_session_ended_before_accept_closes_with_1008() -> None:
    """The handler reads the session (it lives: the user is "ada"), then the user logs out
    in another request before ``accept()``. The handler saw the session live, so its absence
    when the watch starts means it ended: the connection is closed with 1008 (a cookie that
    named no live session at all is still only an anonymous connection)."""
    import httpx
    from trio_websocket import ConnectionClosed, open_websocket_url

    from tests.integration.server import no_cookie_jar, served

    async with (
        MemoryStore() as store,
        served(authed_app(store)) as base,
        httpx.AsyncClient(base_url=base, cookies=no_cookie_jar()) as http,
    ):
        cookie = (await http.get("/login")).headers["set-cookie"].split(";")[0]
        ws_url = base.replace("http://", "ws://") + "/authed"
        async with trio.open_nursery() as nursery:

            async def logout_soon() -> None:
                await trio.sleep(0.2)  # while the handler is between its check and accept
                assert (await http.get("/logout", headers={"cookie": cookie})).text == "True"

            nursery.start_soon(logout_soon)
            headers = [(b"cookie", cookie.encode())]
            async with open_websocket_url(ws_url, extra_headers=headers) as ws:
                code = None
                with trio.move_on_after(1.5):
                    try:
                        while True:
                            assert await ws.get_message() != "hello ada"
                    except ConnectionClosed as exc:
                        code = None if exc.reason is None else exc.reason.code
                await trio.aclose_forcefully(ws._stream)
        assert code == 1008, "the websocket of a logged-out session is still open"


# -- 6. a write after the session ended starts a new session, which the watch does not follow --


@pytest.mark.parametrize(
    "kit", [p for p in SOME_KITS if p.id == "postgres"], indirect=True
)  # (on Redis the timer often fires right at the expiry, before a write finds it gone)
async def test_write_after_expiry_does_not_move_the_watch_to_a_new_session(
    store: SessionStore, clock: Any
) -> None:
    """The watched session expires; the body writes to it before the hub's next recheck.
    The write finds the id absent and starts a fresh session under a new id, which is not
    the watched session: the watch stays on the old one and ends, "expired"."""
    sid = await a_session(store)
    mine = new(store, sid)
    assert await mine.expire(2)
    with trio.move_on_after(6):
        async with mine.watch() as w:
            while True:  # a body that sets a field if missing (it never is while it lives)
                await mine.insert("user", "eve")
                await trio.sleep(0.01)
    assert w.reason == "expired", f"watch followed a new session: {mine.id != sid}"


class LateNotices(MemoryStore):
    """The memory store whose notices arrive 0.1 s after the step that sent them (as over
    a network)."""

    def _watch_notify(self, id: SessionId, reason: str) -> None:
        async def later() -> None:
            await trio.sleep(0.1)
            MemoryStore._watch_notify(self, id, reason)

        if self._nursery is not None:
            self._nursery.start_soon(later)


async def test_own_delete_then_a_write_ends_the_watch(mock_clock: MockClock) -> None:
    """The body deletes its own session and then writes (a new session): the watch does not
    move to the new session, and the deletion's notice ends it, "deleted"."""
    async with LateNotices() as store:
        sid = await a_session(store)
        mine = new(store, sid)
        with trio.move_on_after(10):
            async with mine.watch() as w:
                assert await mine.delete()
                assert await mine.update("user", "eve")  # a new session
                await trio.sleep(3600)
        assert mine.id not in (None, sid)
        assert w.reason == "deleted"


# -- 7. a reconnect's recheck redoes a check already in flight --


class LossyChannel(MemoryStore):
    """The memory store as a store whose notification channel can drop (as a Redis or
    Postgres subscription does while it reconnects) and whose reads take a round trip:
    the read sees the store when it is sent, the answer arrives 0.5 s later."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.hub: Any = None

    async def _watch_listen(self, hub: Any) -> None:
        self.hub = hub
        hub.connected()

    def _watch_notify(self, id: SessionId, reason: str) -> None:
        if not self.down:
            super()._watch_notify(id, reason)

    async def get_all(self, id: SessionId) -> Any:
        found = await super().get_all(id)
        await trio.sleep(0.5)
        return found


async def test_reconnect_recheck_redoes_a_check_in_flight(mock_clock: MockClock) -> None:
    """A watch's expiry recheck is in flight (its read saw the session alive: a touch
    elsewhere extended it). The subscription drops, the session is deleted (the notice is
    lost), the subscription comes back: ``connected()`` asks every watch to recheck, and
    the check in flight, which began before, is done again when it returns: the deletion
    is found at once, not at the session's new deadline (600 s)."""
    async with LossyChannel() as store:
        sid = await a_session(store)
        assert await new(store, sid).expire(2)
        async with watching(new(store, sid)) as running:
            await trio.sleep(1.0)
            assert await new(store, sid).expire(600)  # a touch elsewhere
            await trio.sleep(1.1)  # the recheck at 2 s is in flight (it read "alive")
            store.down = True  # the subscription drops ...
            assert await new(store, sid).delete()  # ... and this notice is lost
            store.down = False
            store.hub.connected()  # ... it is back: every watch should recheck
            assert await running.ended(within=2.0) == "deleted"


# -- 8. a body that ends after its session ended keeps the reason --


async def test_body_ending_after_the_session_ended_keeps_the_reason(mock_clock: MockClock) -> None:
    """The session ends while the body is in a shielded step (a last send, say); the body
    then returns normally. The session ended first: ``w.reason`` says so (``run_watched``
    then closes the connection with 1008)."""
    async with MemoryStore() as store:
        sid = await a_session(store)
        async with new(store, sid).watch() as w:
            with trio.CancelScope(shield=True):
                assert await new(store, sid).delete()  # another request logs out
                await trio.sleep(0.1)
        assert w.reason == "deleted"


# -- 9. Quart: a session that ends while the watch starts: closed with 1008 --


class SlowReads(MemoryStore):
    """The memory store with a round trip's delay before each whole-session read."""

    async def get_all(self, id: SessionId) -> Any:
        await trio.sleep(0.3)
        return await super().get_all(id)


async def test_quart_session_ending_while_the_watch_starts_closes_with_1008() -> None:
    """The session ends while the watch's first check (``get_all``) is in flight, after it
    subscribed: the notice ends the watch and cancels the handler, and with it the watch's
    start; ``_LiveWebsocket`` kept the watch from the start, so the connection is closed
    with 1008 and the reason."""
    import httpx
    from trio_websocket import ConnectionClosed, open_websocket_url

    from tests.integration.server import no_cookie_jar, served
    from tests.integration.watch_app import make_watch_app

    async with (
        served(make_watch_app(SlowReads())) as base,
        httpx.AsyncClient(base_url=base, cookies=no_cookie_jar()) as http,
    ):
        cookie = (await http.get("/login")).headers["set-cookie"].split(";")[0]
        ws_url = base.replace("http://", "ws://") + "/feed"
        async with open_websocket_url(ws_url, extra_headers=[(b"cookie", cookie.encode())]) as ws:
            # The handshake is answered; the watch's first check is in flight.
            assert (await http.get("/logout", headers={"cookie": cookie})).text == "True"
            with trio.fail_after(2), pytest.raises(ConnectionClosed) as info:  # noqa: PT012
                while True:
                    await ws.get_message()
            await trio.aclose_forcefully(ws._stream)
        assert info.value.reason is not None
        assert (info.value.reason.code, info.value.reason.reason) == (1008, "session deleted")


# -- S1. Quart: a websocket's touch on a store closed at shutdown --


async def test_quart_touch_on_a_closed_store_ends_quietly(mock_clock: MockClock) -> None:
    """The app shuts down (its store closes) while a websocket is open and active: the
    task that touches the session on traffic (in the app's nursery) finds the store closed
    and ends, instead of raising ``trio.ClosedResourceError`` into the app's nursery."""
    from types import SimpleNamespace

    from trio_ruts.quart import _LiveWebsocket

    async with MemoryStore() as store:
        sid = await a_session(store)
    async with trio.open_nursery() as nursery:  # the app's nursery
        live = _LiveWebsocket(SimpleNamespace(nursery=nursery))  # type: ignore[arg-type]
        nursery.start_soon(live._touch_on_traffic, new(store, sid), 1.0)
        for _ in range(3):
            live.noted()  # traffic
            await trio.sleep(1.5)
        live.stop()


# -- second review: the touching read never shortens; a start with if_held during the
# -- session's own rename --


@pytest.mark.parametrize(
    "kit",
    [
        pytest.param(k, id=k.id, marks=k.marks)
        for k in KITS
        if k.id in ("memory", "redis7.4", "postgres")
    ],
    indirect=True,
)
async def test_touching_read_never_shortens_a_session(store: SessionStore) -> None:
    """A ``Touch`` whose threshold is above its idle (``Touch`` is public store API;
    ``Expiry`` never makes one): the touching read extends only a lifetime below idle, so
    a 600 s session keeps its 600 s (Postgres version 11's fast path used to set it to
    idle, 10 s)."""
    sid = await a_session(store)
    before = await store.get_all(sid)
    assert before is not None
    assert before.ttl > 500
    await store.touch_get(sid, "user", Touch(10, 1000.0))
    after = await store.get_all(sid)
    assert after is not None
    assert after.ttl > 500, after.ttl


async def test_start_if_held_during_own_regenerate_follows_the_session(
    autojump_clock: Any,
) -> None:
    """``start(if_held=True)`` (Quart, for a session whose cookie is not verified yet) runs
    while the same session's ``regenerate()`` is in flight (the store applied the rename,
    its reply is on its way). The start's check finds the old id gone; that end is held
    until the rename returns, which moved the watched id: the watch follows the new id
    (it used to stop and report the session as not held)."""
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
