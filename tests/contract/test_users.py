"""The store contract for users (SPEC section 9): login into a per-user index, a user's
sessions, logout, revoking. Every store passes these, through the Session API and the store
interface; a few look at the stores' raw data (keys, rows) to check what they hold.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
import trio
import trio.lowlevel

from tests.conftest import pass_time
from trio_ruts import (
    CookieChange,
    CookieOptions,
    Expiry,
    InvalidField,
    Session,
    SessionId,
    UserSession,
)
from trio_ruts._ids import id_digest
from trio_ruts.stores import LayeredStore, MemoryStore, PostgresStore, SessionStore

COOKIE = CookieOptions(max_age=600)
SECRET_USER = "alice.secret@example.org"


def new(store: SessionStore, id: SessionId | None = None, **kw: Any) -> Session:
    return Session(store, id, cookie=kw.pop("cookie", COOKIE), **kw)


async def logged_in(store: SessionStore, user: str, label: str | None = None, **kw: Any) -> Session:
    s = new(store, **kw)
    await s.update("data", 1)
    await s.login(user, label=label)
    return s


async def alive(store: SessionStore, sid: SessionId | None) -> bool:
    assert sid is not None
    return await store.get_all(sid) is not None


def cold(store: SessionStore) -> SessionStore:
    return store.cold if isinstance(store, LayeredStore) else store


# -- login ------------------------------------------------------------------------------------


async def test_login_regenerates_and_records_the_user(store: SessionStore, clock: Any) -> None:
    s = new(store)
    await s.update("cart", [1, 2])
    old = s.id
    assert old is not None
    returned = await s.login("alice", label="Firefox")
    assert returned == s.id
    assert returned != old
    assert not await alive(store, old)  # fixation defence: the old id is gone
    assert await s.get("cart") == [1, 2]
    assert await s.user() == "alice"
    assert s.cookie_change is CookieChange.SET
    header = s.cookie_header()
    assert header is not None
    assert str(returned) in header
    # Another request with the new id sees the login.
    assert await new(store, returned).user() == "alice"
    assert await new(store, old).user() is None


async def test_login_without_a_session_starts_one(store: SessionStore, clock: Any) -> None:
    s = new(store)
    sid = await s.login("alice")
    assert s.id == sid
    assert await s.user() == "alice"
    assert await s.get("user") == "alice"  # a session exists while it holds a field
    assert [us.current for us in await s.user_sessions()] == [True]


async def test_login_with_an_unknown_id_never_adopts_it(store: SessionStore, clock: Any) -> None:
    claimed = SessionId.generate()
    s = new(store, claimed)
    sid = await s.login("alice")
    assert sid != claimed
    assert sid.tag != claimed.tag  # no bit of the client's id reaches a real one
    assert not await alive(store, claimed)
    assert await new(store, sid).user() == "alice"


async def test_not_logged_in(store: SessionStore, clock: Any) -> None:
    s = new(store)
    assert await s.user() is None
    assert await s.user_sessions() == []
    assert await s.revoke_others() == 0
    assert not await s.logout()
    await s.update("a", 1)
    assert await s.user() is None
    assert await s.user_sessions() == []
    assert await store.user_sessions("nobody") == []
    assert await store.revoke_user("nobody") == 0


async def test_login_as_another_user_moves_the_session(store: SessionStore, clock: Any) -> None:
    s = await logged_in(store, "alice")
    await s.login("bob")
    assert await s.user() == "bob"
    assert await store.user_sessions("alice") == []
    assert len(await store.user_sessions("bob")) == 1
    assert await store.revoke_user("alice") == 0
    assert await alive(store, s.id)


async def test_bad_users_and_labels_are_refused_without_echo(
    store: SessionStore, clock: Any
) -> None:
    s = new(store)
    await s.update("a", 1)
    sid = s.id
    long_user = SECRET_USER * 100
    for user in ("", long_user, 42, None, "a\0b", "\udc80"):
        with pytest.raises(InvalidField) as info:
            await s.login(user)  # type: ignore[arg-type]
        assert SECRET_USER not in str(info.value)
    with pytest.raises(InvalidField) as info:
        await s.login("alice", label="x" * 5000)
    assert "xxxx" not in str(info.value)
    with pytest.raises(InvalidField):
        await store.user_sessions(long_user)
    with pytest.raises(InvalidField):
        await store.revoke_user("")
    with pytest.raises(TypeError):
        await store.revoke_user("alice", keep=str(sid))  # type: ignore[arg-type]
    assert s.id == sid
    assert await s.user() is None
    assert await s.get("a") == 1


# -- listing --------------------------------------------------------------------------------


async def test_user_sessions_lists_every_live_session(store: SessionStore, clock: Any) -> None:
    before = datetime.now(UTC) - timedelta(seconds=2)
    phone = await logged_in(store, "alice", "Phone")
    laptop = await logged_in(store, "alice", "Laptop")
    tablet = await logged_in(store, "alice")
    bob = await logged_in(store, "bob", "Bob's")
    listed = await laptop.user_sessions()
    assert sorted(str(us.label) for us in listed) == ["Laptop", "None", "Phone"]
    assert [us.label for us in listed if us.current] == ["Laptop"]
    for us in listed:
        assert isinstance(us, UserSession)
        assert us.created_at.tzinfo is not None
        assert us.last_seen.tzinfo is not None
        assert us.created_at <= us.last_seen <= datetime.now(UTC) + timedelta(seconds=2)
    assert listed == sorted(listed, key=lambda us: us.created_at)
    # The store-level listing marks nothing current.
    assert not any(us.current for us in await store.user_sessions("alice"))
    assert [us.label for us in await bob.user_sessions()] == ["Bob's"]
    assert len(await phone.user_sessions()) == len(await tablet.user_sessions()) == 3
    if not isinstance(store, MemoryStore | LayeredStore):  # real clocks (memory: trio's)
        assert all(us.created_at >= before for us in listed)


async def test_reprs_and_listings_never_show_ids_or_users(store: SessionStore, clock: Any) -> None:
    s = await logged_in(store, SECRET_USER, "Firefox")
    assert s.id is not None
    (us,) = await s.user_sessions()
    text = repr(us) + str(us) + repr(s) + repr(await s.user_sessions())
    assert str(s.id) not in text
    assert repr(s.id.bytes) not in text
    assert s.id.bytes.hex() not in text
    assert str(s.id)[4:] not in text  # (a Redis key splits the id around its hash tag)
    assert SECRET_USER not in text
    assert "Firefox" in text
    assert "current=True" in text
    assert not hasattr(us, "id")
    assert not hasattr(us, "session_id")


async def test_last_seen_follows_touches(store: SessionStore, clock: Any) -> None:
    s = await logged_in(store, "alice", expiry=Expiry(idle=60))
    (first,) = await s.user_sessions()
    assert abs((first.last_seen - first.created_at).total_seconds()) < 2
    await pass_time(3)
    (unused,) = await s.user_sessions()
    assert unused.last_seen == first.last_seen or (
        abs((unused.last_seen - first.last_seen).total_seconds()) < 1.5
    )
    assert await s.touch()  # what a request's read does once the touch interval passed
    (touched,) = await s.user_sessions()
    assert (touched.last_seen - first.last_seen).total_seconds() >= 2
    assert touched.created_at == first.created_at or (
        abs((touched.created_at - first.created_at).total_seconds()) < 0.01
    )


# -- ending sessions --------------------------------------------------------------------------


async def test_logout_ends_the_session_and_leaves_the_index_clean(
    store: SessionStore, clock: Any
) -> None:
    s = await logged_in(store, "alice")
    other = await logged_in(store, "alice")
    sid = s.id
    assert await s.logout()
    assert s.id is None
    assert s.cookie_change is CookieChange.CLEAR
    assert not await alive(store, sid)
    assert len(await store.user_sessions("alice")) == 1
    assert await other.logout()
    assert await store.user_sessions("alice") == []
    assert await index_size(store, "alice") == 0
    assert not await s.logout()


async def test_revoke_others_keeps_only_the_current_session(
    store: SessionStore, clock: Any
) -> None:
    mine = await logged_in(store, "alice")
    others = [await logged_in(store, "alice") for _ in range(3)]
    bob = await logged_in(store, "bob")
    for other in others:  # (a layered store now holds hot copies: revoking ends them too)
        assert await other.get("data") == 1
    assert await mine.revoke_others() == 3
    for other in others:
        assert not await alive(store, other.id)
        assert await other.get("data") is None
    assert await alive(store, mine.id)
    assert await alive(store, bob.id)
    assert [us.current for us in await mine.user_sessions()] == [True]
    assert await mine.revoke_others() == 0


async def test_revoke_user_ends_every_session(store: SessionStore, clock: Any) -> None:
    sessions = [await logged_in(store, "alice") for _ in range(4)]
    bob = await logged_in(store, "bob")
    keep = sessions[2].id
    assert await store.revoke_user("alice", keep=keep) == 3
    assert [await alive(store, s.id) for s in sessions] == [False, False, True, False]
    assert await store.revoke_user("alice") == 1
    assert not await alive(store, keep)
    assert await store.user_sessions("alice") == []
    assert await index_size(store, "alice") == 0
    assert await alive(store, bob.id)


async def test_user_session_revoke(store: SessionStore, clock: Any) -> None:
    mine = await logged_in(store, "alice", "mine")
    other = await logged_in(store, "alice", "other")
    listed = await mine.user_sessions()
    (theirs,) = [us for us in listed if not us.current]
    assert await other.get("data") == 1
    assert await theirs.revoke()
    assert not await theirs.revoke()
    assert not await alive(store, other.id)
    assert await other.get("data") is None
    assert await alive(store, mine.id)
    assert [us.label for us in await mine.user_sessions()] == ["mine"]


async def test_renames_keep_a_session_in_its_index(store: SessionStore, clock: Any) -> None:
    s = await logged_in(store, "alice")
    for step in range(2):
        if step == 0:
            assert await s.regenerate() is not None
        else:
            s.prepare_regenerate()
            assert await s.update("more", 2)
        assert await s.user() == "alice"
        assert [us.current for us in await s.user_sessions()] == [True]
    assert await store.revoke_user("alice") == 1
    assert not await alive(store, s.id)


async def test_a_plain_delete_drops_out_of_the_listing(store: SessionStore, clock: Any) -> None:
    s = await logged_in(store, "alice")
    assert not await s.remove("user")  # login wrote no field to an existing session
    assert await s.delete()
    assert await store.user_sessions("alice") == []
    assert await store.revoke_user("alice") == 0


# -- expiry ----------------------------------------------------------------------------------


async def test_expired_sessions_leave_the_index(store: SessionStore, clock: Any) -> None:
    short = await logged_in(store, "alice", cookie=CookieOptions(max_age=1))
    long = await logged_in(store, "alice")
    assert len(await store.user_sessions("alice")) == 2
    await pass_time(1.5)
    assert not await alive(store, short.id)
    listed = await store.user_sessions("alice")
    assert len(listed) == 1
    assert await index_size(store, "alice") == 1  # the dead entry was pruned
    assert await store.revoke_user("alice") == 1
    assert not await alive(store, long.id)


async def test_a_touched_session_outlives_its_login_lifetime(
    store: SessionStore, clock: Any
) -> None:
    # Its index entry was scored with the lifetime it had at login; touches extended it.
    s = await logged_in(store, "alice", cookie=CookieOptions(max_age=2))
    for _ in range(3):
        await pass_time(1)
        assert await s.touch()
    other = await logged_in(store, "alice")  # a login prunes due entries: not this one
    assert len(await other.user_sessions()) == 2
    await pass_time(1)
    assert await s.touch()
    assert len(await store.user_sessions("alice")) == 2  # a listing prunes too
    assert await store.revoke_user("alice") == 2
    assert not await alive(store, s.id)


# -- concurrency and cancellation -----------------------------------------------------------


async def test_concurrent_logins_against_a_revoke(store: SessionStore, clock: Any) -> None:
    """50 logins of one user race a revoke_user: every login that returned before the revoke
    began is ended, and every survivor is listed."""
    sessions: list[Session] = []
    returned: list[tuple[float, Session]] = []
    revoke_began: list[float] = []

    async def one() -> None:
        s = new(store)
        await s.update("data", 1)
        sessions.append(s)
        await trio.sleep(random.random() * 0.05)
        await s.login("alice")
        returned.append((trio.current_time(), s))

    async def revoke() -> None:
        await trio.sleep(0.02)
        revoke_began.append(trio.current_time())
        await store.revoke_user("alice")

    async with trio.open_nursery() as nursery:
        for _ in range(50):
            nursery.start_soon(one)
        nursery.start_soon(revoke)
    (began,) = revoke_began
    before = [s for at, s in returned if at < began]
    for s in before:
        assert not await alive(store, s.id)
    survivors = [s for s in sessions if await alive(store, s.id)]
    assert len(await store.user_sessions("alice")) == len(survivors)
    assert await store.revoke_user("alice") == len(survivors)
    for s in survivors:
        assert not await alive(store, s.id)


async def test_cancelled_logins_never_escape_the_index(
    store: SessionStore, clock: Any, kit: Any
) -> None:
    """Logins cancelled at random points (after a random number of scheduling rounds, and on
    servers a random few milliseconds) never leave a logged-in session its index misses:
    through ``Session.login`` (which shields the store call once sent) and through the store
    call itself (unshielded: cancelled between its steps too)."""
    rng = random.Random(17)
    made: list[Session] = []
    moved: list[SessionId] = []
    cancelled = 0
    for i in range(80):
        s = new(store)
        await s.update("data", 1)
        made.append(s)
        rounds, wait = rng.randrange(6), rng.random() * rng.choice((0, 0.0003, 0.001))

        async def cancel_later(scope: trio.CancelScope, rounds: int, wait: float) -> None:
            for _ in range(rounds):
                await trio.lowlevel.checkpoint()
            if not kit.mock_clock:
                await trio.sleep(wait)
            scope.cancel()

        returned = False
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(cancel_later, scope, rounds, wait)
                if i % 2:
                    await s.login("alice")
                else:
                    assert s.id is not None
                    moved.append(s.id.regenerate())
                    await store.login(s.id, moved[-1], "alice", None, 600)
                returned = True
                await trio.sleep_forever()  # until cancelled
        cancelled += not returned
    assert cancelled > 5, f"only {cancelled} logins were cancelled before they returned"
    # Whatever was cancelled where: every live logged-in session is found by revoke_user.
    logged = 0
    candidates = {s.id for s in made} | {_settled_target(s) for s in made} | set(moved)
    for sid in candidates:
        if sid is not None and await new(store, sid).user() == "alice":
            logged += 1
    assert logged > 0
    assert len(await store.user_sessions("alice")) == logged
    assert await store.revoke_user("alice") == logged
    for sid in candidates:
        assert await new(store, sid).user() is None


def _settled_target(s: Session) -> SessionId | None:
    return s._unsettled


# -- raw data ---------------------------------------------------------------------------------


async def index_size(store: SessionStore, user: str) -> int:
    """How many index entries the store holds for ``user`` (raw, dead ones included)."""
    from trio_ruts._users import user_hash

    target = cold(store)
    if isinstance(target, MemoryStore):
        return len(target._users.get(user_hash(user), {}))
    from trio_ruts.stores import PostgresStore, RedisStore

    if isinstance(target, RedisStore):
        key = target._user_key(user)
        return int(await target._transport.execute(key, ("ZCARD", key), idempotent=True))
    assert isinstance(target, PostgresStore)
    return len(await target._user_rows(user))


def raw_keys(store: SessionStore, request: pytest.FixtureRequest) -> list[bytes]:
    """Every key (Redis) or key column value (Postgres: session ids, user hashes) the store
    holds, read straight from the server."""
    target = cold(store)
    if isinstance(target, MemoryStore):
        return list(target._sessions) + list(target._users)
    from trio_ruts.stores import PostgresStore, RedisStore

    if isinstance(target, RedisStore):
        import redis

        kit = request.getfixturevalue("kit").id
        if "cluster" in kit:
            servers = request.getfixturevalue("redis_cluster")
        else:
            servers = [request.getfixturevalue("redis74" if "7.4" in kit else "redis70")]
        keys: list[bytes] = []
        for server in servers:
            with redis.Redis(port=server.port) as client:
                keys += client.keys(target._prefix + b"*")
        return keys
    assert isinstance(target, PostgresStore)
    return []


async def test_user_ids_are_not_in_keys(
    store: SessionStore, clock: Any, request: pytest.FixtureRequest
) -> None:
    s = await logged_in(store, SECRET_USER, "label")
    target = cold(store)
    from trio_ruts.stores import PostgresStore

    if isinstance(target, PostgresStore):
        keys = await target._raw_key_columns()
    else:
        keys = raw_keys(store, request)
    assert keys, "the store holds something"
    for key in keys:
        assert SECRET_USER.encode() not in key
        assert b"alice" not in key
    assert await s.user() == SECRET_USER


# -- regressions from the review of the users index ----------------------------------------------


async def test_a_cancelled_layered_revocation_leaves_no_hot_copy_served(
    store: SessionStore, clock: Any, kit: Any
) -> None:
    # Cold ends the sessions, then the caller is cancelled before their hot copies are
    # dropped: running it again finds nothing to end, so the copies must never be served.
    if not isinstance(store, LayeredStore):
        pytest.skip("a layered store's hot copies")
    for attempt in range(40 if kit.mock_clock else 12):
        victim = await logged_in(store, "alice")
        assert victim.id is not None
        await victim.expire(-1)  # "remember me": the longest hot copy
        assert await new(store, victim.id).get("data") == 1  # the hot copy is there
        with trio.CancelScope() as scope:

            async def cancel(attempt: int = attempt) -> None:
                for _ in range(attempt % 8):
                    await trio.lowlevel.checkpoint()
                if not kit.mock_clock:
                    await trio.sleep(attempt % 5 / 1000)
                scope.cancel()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(cancel)
                await store.revoke_user("alice")
                await trio.sleep_forever()
        if await store.cold.get_all(victim.id) is None:  # cold revoked it
            assert await new(store, victim.id).get("data") is None, f"attempt {attempt}"
            await trio.sleep(1800 if kit.mock_clock else 0.5)
            assert await new(store, victim.id).get("data") is None, f"attempt {attempt}"
        await store.revoke_user("alice")


async def test_a_session_renamed_during_revoke_user_is_ended(
    store: SessionStore, clock: Any, kit: Any
) -> None:
    if "cluster" in kit.id:
        # Index and session live in different slots: a session renamed over and over while
        # the revocation runs may outrun its rounds (docs/users.md); it stays indexed.
        pytest.skip("a Redis Cluster revocation races renames in other slots (documented)")
    for trial in range(40):
        session = await logged_in(store, "alice")
        assert session.id is not None
        current = [session.id]
        done = trio.Event()

        async def spin(current: list[SessionId] = current, done: trio.Event = done) -> None:
            while not done.is_set():
                moved = current[0].regenerate()
                if await store.rename(current[0], moved) is None:
                    return
                current[0] = moved

        async with trio.open_nursery() as nursery:
            nursery.start_soon(spin)
            for _ in range(trial % 6):
                await trio.lowlevel.checkpoint()
            if not kit.mock_clock:
                await trio.sleep(trial % 4 / 1000)
            await store.revoke_user("alice")
            done.set()
        assert await store.get_all(current[0]) is None, f"trial {trial}: survived"


async def test_postgres_revocation_waiting_on_a_rename_ends_the_moved_session(
    postgres: Any,
) -> None:
    # The DELETE waits for the rename's row lock, then re-checks the moved row.
    name = f"t_{uuid.uuid4().hex[:10]}"
    async with PostgresStore.from_dsn(postgres.dsn, table=name) as store:
        session = Session(store, cookie=CookieOptions(max_age=600))
        await session.update("data", 1)
        await session.login("alice")
        assert session.id is not None
        old, moved = session.id, session.id.regenerate()
        sql = (
            f"BEGIN; SELECT {name}_rename('\\x{id_digest(old).hex()}'::bytea, "
            f"'\\x{id_digest(moved).hex()}'::bytea); SELECT pg_sleep(1.5); COMMIT;"
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(trio.run_process, ["psql", postgres.dsn, "-XAtqc", sql]))
            await trio.sleep(0.5)
            ended = await store.revoke_user("alice")
        assert ended == 1
        assert await store.get_all(moved) is None
