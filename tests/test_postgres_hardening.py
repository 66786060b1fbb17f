"""PostgresStore under a hung server, cancellation, races and edge-of-range input (issue 14).

Real servers only: the module starts a private PostgreSQL cluster of its own, because some
tests freeze it (SIGSTOP on the postmaster and every backend, always undone in a finally).
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import threading
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager, suppress
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import trio
import trio.testing
import trio_asyncio

from tests import servers
from trio_ruts import (
    CookieOptions,
    InvalidField,
    Session,
    SessionId,
    SessionIdCollision,
    StoreError,
    StoreTimeout,
)
from trio_ruts._ids import id_digest
from trio_ruts._limits import MAX_TTL
from trio_ruts.stores import PostgresStore, Write
from trio_ruts.stores.postgres._schema import (
    MAX_NAME,
    PG_MAX_IDENTIFIER,
    SUFFIXES,
    Names,
    Queries,
    names_map,
)

pytestmark = pytest.mark.postgres
COOKIE = CookieOptions(max_age=600)


@pytest.fixture(scope="module")
def pg() -> Iterator[servers.PostgresServer]:
    """This module's own server: tests freeze it and turn on statement logging."""
    with servers.postgres_server() as server:
        yield server


def unique(prefix: str = "h") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def psql(server: servers.PostgresServer, sql: str) -> str:
    return subprocess.run(
        ["psql", server.dsn, "-XAtc", sql], check=True, capture_output=True, text=True, timeout=60
    ).stdout.strip()


def write(id: SessionId | None, fresh: SessionId, value: bytes, **kw: Any) -> Write:
    args: dict[str, Any] = {
        "field": "f",
        "only_if_absent": False,
        "field_ttl": None,
        "key_ttl": 600,
    }
    args.update(kw)
    return Write(id=id, fresh_id=fresh, value=value, **args)


# -- a frozen server ------------------------------------------------------------------------------


def cluster_pids(server: servers.PostgresServer) -> list[int]:
    """The postmaster and all its children (backends, background workers)."""
    postmaster = int(Path(server.datadir, "postmaster.pid").read_text().split()[0])
    pids = [postmaster]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
            pids.append(int(entry))
    return pids


@contextmanager
def frozen(server: servers.PostgresServer, at_most: float = 8.0) -> Iterator[None]:
    """The whole cluster stopped (SIGSTOP) inside, for at most ``at_most`` seconds.

    The limit is kept by a thread, whatever trio does: against a store that cancellation does
    not reach, a call would otherwise hang until the server came back (the kernel's TCP
    timeout, minutes), where the test should fail its timing assertions instead.
    """
    pids = cluster_pids(server)  # the postmaster first: it forks nothing once stopped

    def send(sig: int) -> None:
        for pid in pids:
            with suppress(ProcessLookupError):  # a backend that was exiting anyway
                os.kill(pid, sig)

    watchdog = threading.Timer(at_most, send, [signal.SIGCONT])
    try:
        send(signal.SIGSTOP)
        watchdog.start()
        yield
    finally:
        watchdog.cancel()
        send(signal.SIGCONT)


def store_backends(server: servers.PostgresServer) -> set[int]:
    """Backend pids of the store's connections (psql's own sessions excluded)."""
    out = psql(
        server,
        "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' "
        "AND application_name <> 'psql'",
    )
    return {int(p) for p in out.split()}


async def wait_gone(server: servers.PostgresServer, pids: set[int]) -> set[int]:
    """Wait up to 10 s for ``pids`` to disconnect; returns those still there."""
    for _ in range(100):
        left = pids & store_backends(server)
        if not left:
            return left
        await trio.sleep(0.1)
    return left


async def test_caller_deadline_reaches_a_frozen_server(pg: servers.PostgresServer) -> None:
    """A trio deadline ends a call to a hung server promptly (not after the kernel's TCP
    timeout), through trio-asyncio; the connection involved is closed, and the store serves
    again once the server is back."""
    async with PostgresStore.from_dsn(
        pg.dsn, table=unique(), min_size=1, max_size=1, timeout=None
    ) as store:
        s = Session(store, cookie=COOKIE)
        await s.update("a", 1)
        before = store_backends(pg)
        assert len(before) == 1
        elapsed: list[float] = []
        with frozen(pg):
            for call in (
                lambda: Session(store, s.id).get("a"),
                lambda: Session(store, s.id).update("b", 2),
            ):
                started = time.monotonic()
                with pytest.raises(trio.TooSlowError), trio.fail_after(1):
                    await call()
                elapsed.append(time.monotonic() - started)
        assert max(elapsed) < 3, elapsed
        assert not await wait_gone(pg, before), "the cancelled call's connection was reused"
        assert await Session(store, s.id).get("a") == 1
        assert await Session(store, s.id).get("b") in (None, 2)  # it may have committed


async def test_store_timeout_on_a_frozen_server(pg: servers.PostgresServer) -> None:
    """Past the configured deadline a call raises StoreTimeout (not trio's TooSlowError),
    and its connection is closed."""
    async with PostgresStore.from_dsn(
        pg.dsn, table=unique(), min_size=1, max_size=1, timeout=0.5
    ) as store:
        sid = SessionId.generate()
        await store.write(write(None, sid, b"v"))
        before = store_backends(pg)
        with frozen(pg):
            for call in (lambda: store.get(sid, "f"), lambda: store.delete(sid)):
                started = time.monotonic()
                with pytest.raises(StoreTimeout) as info:
                    await call()
                assert time.monotonic() - started < 2.5  # timeout + CANCEL_GRACE, and slack
                assert "timeout=" in str(info.value)
        assert not await wait_gone(pg, before), "the timed-out call's connection was reused"
        assert await store.get(sid, "f") in (None, b"v")  # the delete may have committed


async def test_closing_with_a_frozen_server_is_bounded(pg: servers.PostgresServer) -> None:
    store = PostgresStore.from_dsn(pg.dsn, table=unique(), timeout=0.5)
    with ExitStack() as server_frozen:
        async with store:
            await Session(store, cookie=COOKIE).update("a", 1)
            server_frozen.enter_context(frozen(pg))  # until after the store closed
            with pytest.raises(StoreTimeout):
                await store.get(SessionId.generate(), "a")
            started = time.monotonic()
        assert time.monotonic() - started < 6  # CLOSE_TIMEOUT is 5 s
    with pytest.raises(trio.ClosedResourceError):
        await store.get(SessionId.generate(), "a")


async def test_a_cancelled_statement_is_over_when_the_call_returns(
    pg: servers.PostgresServer,
) -> None:
    """On a live server a cancelled call returns once the server cancelled its statement: a
    write waiting for a row lock never lands later (after the caller went on), and its
    connection stays in service."""
    table = unique()
    async with (
        PostgresStore.from_dsn(pg.dsn, table=table, min_size=1, max_size=1) as store,
        raw_connection(pg) as conn,
    ):
        sid = SessionId.generate()
        await store.write(write(None, sid, b"v"))
        before = store_backends(pg)
        await sql(conn, "BEGIN")
        await sql(conn, f'SELECT 1 FROM "{table}" WHERE id = $1 FOR UPDATE', id_digest(sid))
        started = time.monotonic()
        with trio.move_on_after(0.5) as scope:
            await store.write(write(sid, sid.regenerate(), b"late", field="g"))
        assert scope.cancelled_caught
        assert time.monotonic() - started < 2
        waiting = await sql(conn, "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
        await sql(conn, "COMMIT")
        assert not waiting, "the cancelled statement still runs on the server"
        await trio.sleep(0.2)
        assert await store.get(sid, "g") is None
        assert store_backends(pg) == before  # the same connection, still in service


@pytest.mark.parametrize("bad", [0, -1, math.nan, "5", True])
def test_timeout_is_validated(bad: Any) -> None:
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        PostgresStore.from_dsn("postgresql://localhost/db", timeout=bad)
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        PostgresStore.from_pool(object(), timeout=bad)


def test_timeout_accepts_numbers_and_none() -> None:
    for good in (None, 0.25, 3, math.inf):
        PostgresStore.from_dsn("postgresql://localhost/db", timeout=good)
        PostgresStore.from_pool(object(), timeout=good)


# -- cancellation before sending ------------------------------------------------------------------


def operations(store: PostgresStore, sid: SessionId) -> dict[str, Callable[[], Awaitable[Any]]]:
    """Every public async operation of the store, aimed at ``sid``."""
    return {
        "get": lambda: store.get(sid, "a"),
        "get_all": lambda: store.get_all(sid),
        "write": lambda: store.write(write(sid, sid.regenerate(), b"x")),
        "remove": lambda: store.remove(sid, "a"),
        "delete": lambda: store.delete(sid),
        "expire": lambda: store.expire(sid, 0),
        "rename": lambda: store.rename(sid, sid.regenerate()),
        "delete_expired": store.delete_expired,
    }


@asynccontextmanager
async def statement_log(server: servers.PostgresServer) -> AsyncIterator[Callable[[], str]]:
    """Log every statement with its parameters while inside; yields a reader of the log."""
    log = Path(server.datadir, "server.log")
    psql(server, "ALTER SYSTEM SET log_statement = 'all'")
    psql(server, "SELECT pg_reload_conf()")
    await trio.sleep(0.5)  # backends apply the reload before their next statement
    start = len(log.read_bytes())  # noqa: ASYNC240 - a small local file, in a test
    try:
        yield lambda: log.read_bytes()[start:].decode(errors="replace")
    finally:
        psql(server, "ALTER SYSTEM RESET log_statement")
        psql(server, "SELECT pg_reload_conf()")


async def test_cancelled_calls_send_nothing(pg: servers.PostgresServer) -> None:
    """A call in an already-cancelled scope raises Cancelled and sends no statement."""
    async with PostgresStore.from_dsn(pg.dsn, table=unique(), max_size=2) as store:
        s = Session(store, cookie=COOKIE)
        await s.update("a", 1)
        assert s.id is not None
        async with statement_log(pg) as logged:
            probe = SessionId.generate()
            await store.get(probe, "a")
            assert id_digest(probe).hex() in logged()  # the log shows parameters: the check sees
            mark = len(logged())
            for _ in range(20):
                for name, call in operations(store, s.id).items():
                    reached = False
                    with trio.CancelScope() as scope:
                        scope.cancel()
                        await call()
                        reached = True
                    assert scope.cancelled_caught, name
                    assert not reached, name
            await trio.sleep(0.2)
            sent = logged()[mark:]
        assert "execute" not in sent, sent
        assert "statement:" not in sent, sent
        assert await Session(store, s.id).get_all() == {"a": 1}


async def test_every_public_operation_is_a_checkpoint(pg: servers.PostgresServer) -> None:
    async with PostgresStore.from_dsn(pg.dsn, table=unique()) as store:
        s = Session(store, cookie=COOKIE)
        await s.update("a", 1)
        assert s.id is not None
        for call in operations(store, SessionId.generate()).values():  # fast, empty answers
            with trio.testing.assert_checkpoints():
                await call()
        for call in operations(store, s.id).values():
            with trio.testing.assert_checkpoints():
                await call()


# -- no session id in any error chain -------------------------------------------------------------


@asynccontextmanager
async def raw_connection(server: servers.PostgresServer) -> AsyncIterator[Any]:
    """A plain asyncpg connection, for holding a transaction open across store calls."""
    async with trio_asyncio.open_loop():
        conn = await trio_asyncio.aio_as_trio(asyncpg.connect)(server.dsn)
        try:
            yield conn
        finally:
            await trio_asyncio.aio_as_trio(conn.close)()


async def sql(conn: Any, query: str, *args: Any) -> Any:
    return await trio_asyncio.aio_as_trio(conn.fetch)(query, *args)


async def wait_for_lock_waiter(conn: Any, done: trio.Event | None = None) -> None:
    """Until some backend waits for a row lock (or ``done`` is set), at most 10 s."""
    for _ in range(200):
        if done is not None and done.is_set():
            return
        rows = await sql(conn, "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
        if rows:
            return
        await trio.sleep(0.05)
    raise AssertionError("no statement ever waited for the held lock")


def assert_no_id(exc: BaseException, *ids: SessionId) -> None:
    """Neither the exception nor anything chained to it shows any of ``ids``."""
    text = "".join(traceback.format_exception(exc))
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    text += "".join(f"{e!s}{e!r}{getattr(e, 'detail', '')}" for e in chain)
    for sid in ids:
        for form in (str(sid), sid.bytes.hex(), sid.bytes.hex().upper(), repr(sid.bytes)):
            assert form not in text, f"the error chain shows a session id:\n{text}"


async def test_collisions_carry_no_session_id(pg: servers.PostgresServer) -> None:
    """A collision found by the unique index (a session committed at the new id while the
    call waited) holds the id in asyncpg's DETAIL; it must not reach the raised error."""
    table = unique()
    async with (
        PostgresStore.from_dsn(pg.dsn, table=table) as store,
        raw_connection(pg) as conn,
    ):
        writer = (
            f'SELECT written, moved, ttl FROM "{table}_write"'
            f"($1, $2, $3, $4, false, NULL, 600, false, NULL)"
        )
        old = SessionId.generate()
        await store.write(write(None, old, b"old"))

        async def contend(attempt: str, target: SessionId, errors: list[BaseException]) -> None:
            try:
                if attempt == "create":
                    await store.write(write(None, target, b"ours"))
                else:
                    await store.rename(old, target)
            except SessionIdCollision as exc:
                errors.append(exc)

        for attempt in ("create", "rename"):
            target = SessionId.generate()
            await sql(conn, "BEGIN")
            await sql(conn, writer, None, id_digest(target), "f", b"theirs")
            errors: list[BaseException] = []
            async with trio.open_nursery() as nursery:
                nursery.start_soon(contend, attempt, target, errors)
                await wait_for_lock_waiter(conn)
                await sql(conn, "COMMIT")
            assert len(errors) == 1, attempt
            assert_no_id(errors[0], target, old)
            assert await store.get(target, "f") == b"theirs"
        assert await store.get(old, "f") == b"old"


async def test_refusals_carry_no_session_id(pg: servers.PostgresServer) -> None:
    """Other errors the server reports (here a failing row, which PostgreSQL's DETAIL quotes
    with its session id) are StoreErrors that neither say nor chain the id."""
    async with PostgresStore.from_dsn(pg.dsn, table=unique()) as store:
        sid = SessionId.generate()
        with pytest.raises(StoreError) as info:
            await store.write(write(None, sid, None))  # type: ignore[arg-type]
        assert "23502" in str(info.value)  # not-null violation, named by its SQLSTATE
        assert_no_id(info.value, sid)
        with pytest.raises(StoreError, match="could not encode") as info:
            await store.write(write(None, sid, "not bytes"))  # type: ignore[arg-type]
        assert "not bytes" not in str(info.value)  # a value may be a secret, too
        assert_no_id(info.value, sid)
        # The connections are fine afterwards.
        await store.write(write(None, sid, b"v"))
        assert await store.get(sid, "f") == b"v"


# -- races at one id ------------------------------------------------------------------------------


async def test_concurrent_creates_at_one_id_have_one_winner(pg: servers.PostgresServer) -> None:
    async with PostgresStore.from_dsn(pg.dsn, table=unique(), max_size=4) as store:
        lost = []
        for round in range(150):
            fresh = SessionId.generate()
            outcomes: dict[bytes, str] = {}

            async def create(value: bytes, fresh: SessionId = fresh, out: Any = outcomes) -> None:
                try:
                    result = await store.write(write(None, fresh, value))
                    assert result.id == fresh
                    assert result.written
                    out[value] = "won"
                except SessionIdCollision:
                    out[value] = "collision"

            async with trio.open_nursery() as nursery:
                for w in range(4):
                    nursery.start_soon(create, b"w%d" % w)
            winners = [v for v, o in outcomes.items() if o == "won"]
            stored = await store.get(fresh, "f")
            if len(winners) != 1 or stored != winners[0]:
                lost.append((round, sorted(outcomes.items()), stored))
        assert not lost, f"rounds with other than one winner, or the loser's value: {lost[:5]}"


async def test_creates_racing_a_rename_to_one_id_have_one_winner(
    pg: servers.PostgresServer,
) -> None:
    """Creates at an id race a rename to it: exactly one of them wins, and the others change
    nothing (versions 1-2 of the schema let the rename delete a session created meanwhile)."""
    async with PostgresStore.from_dsn(pg.dsn, table=unique(), max_size=4) as store:
        wrong = []
        for round in range(300):
            target, old = SessionId.generate(), SessionId.generate()
            await store.write(write(None, old, b"moved"))
            won: dict[str, bool] = {}

            async def create(
                value: bytes, target: SessionId = target, won: dict[str, bool] = won
            ) -> None:
                try:
                    await store.write(write(None, target, value))
                    won[value.decode()] = True
                except SessionIdCollision:
                    won[value.decode()] = False

            async def rename(
                target: SessionId = target, old: SessionId = old, won: dict[str, bool] = won
            ) -> None:
                try:
                    won["moved"] = await store.rename(old, target) is not None
                except SessionIdCollision:
                    won["moved"] = False

            async with trio.open_nursery() as nursery:
                nursery.start_soon(create, b"c1")
                nursery.start_soon(rename)
                nursery.start_soon(create, b"c2")
            winners = [name for name, ok in won.items() if ok]
            found = (await store.get(target, "f"), await store.get(old, "f"))
            expected = {
                "moved": (b"moved", None),
                "c1": (b"c1", b"moved"),
                "c2": (b"c2", b"moved"),
            }
            if len(winners) != 1 or found != expected[winners[0]]:
                wrong.append((round, won, found))
        assert not wrong, wrong[:5]


async def test_deletes_racing_a_create_answer_what_they_did(
    pg: servers.PostgresServer,
) -> None:
    """Deletes racing a create at one id: the new session is deleted by exactly one delete
    that answers ``True``, or stays; never deleted by one that answers there was none."""
    async with PostgresStore.from_dsn(pg.dsn, table=unique(), max_size=4) as store:
        wrong = []
        for round in range(300):
            victim = SessionId.generate()
            deleted: list[bool] = []

            async def create(victim: SessionId = victim) -> None:
                await store.write(write(None, victim, b"v"))

            async def delete(victim: SessionId = victim, deleted: list[bool] = deleted) -> None:
                deleted.append(await store.delete(victim))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(delete)
                nursery.start_soon(create)
                nursery.start_soon(delete)
                nursery.start_soon(delete)
            there = await store.get(victim, "f")
            if sum(deleted) != (there is None):
                wrong.append((round, deleted, there))
        assert not wrong, wrong[:5]


async def test_sweep_never_deletes_a_session_written_meanwhile(
    pg: servers.PostgresServer,
) -> None:
    """A sweep that meets a session whose last field just expired, while a write holding the
    session's lock adds a field, leaves the session alone."""
    table = unique()
    async with (
        PostgresStore.from_dsn(pg.dsn, table=table, sweep_interval=None) as store,
        raw_connection(pg) as conn,
    ):
        sid = SessionId.generate()
        await store.write(write(None, sid, b"brief", field_ttl=1, key_ttl=1))
        writer = (
            f'SELECT written, moved, ttl FROM "{table}_write"'
            f"($1, $2, $3, $4, false, NULL, 600, false, NULL)"
        )
        await sql(conn, "BEGIN")
        key = id_digest(sid)
        written, moved, _ = (await sql(conn, writer, key, key, "g", b"new"))[0]
        assert written
        assert not moved  # the session was live: the write joined it
        await trio.sleep(1.5)  # the first field expires; the write is not committed yet
        swept = trio.Event()

        async def sweep() -> None:
            await store.delete_expired()
            swept.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sweep)
            await wait_for_lock_waiter(conn, swept)
            await sql(conn, "COMMIT")
        assert await store.get(sid, "g") == b"new"
        assert await store.get(sid, "f") is None
        await store.delete_expired()  # the next sweep removes only the expired field
        assert await store.get(sid, "g") == b"new"


# -- lifetimes up to MAX_TTL ----------------------------------------------------------------------


async def test_lifetimes_up_to_max_ttl(pg: servers.PostgresServer) -> None:
    async with PostgresStore.from_dsn(pg.dsn, table=unique()) as store:
        s = Session(store, cookie=COOKIE)
        assert await s.update("long", 1, ttl=MAX_TTL)
        assert await s.insert("also", 2, ttl=MAX_TTL)
        record = await store.get_all(s.id)  # type: ignore[arg-type]
        assert record is not None
        assert MAX_TTL - 60 < record.ttl <= MAX_TTL
        assert MAX_TTL - 60 < (record.fields["long"].ttl or 0) <= MAX_TTL
        assert await s.expire(MAX_TTL)
        assert await Session(store, s.id).get_all() == {"long": 1, "also": 2}

        # Beyond it, Session refuses before any store call...
        with pytest.raises(InvalidField, match=str(MAX_TTL)):
            await s.update("longer", 1, ttl=MAX_TTL + 1)
        with pytest.raises(InvalidField, match=str(MAX_TTL)):
            await s.expire(MAX_TTL + 1)
        assert await Session(store, s.id).get("longer") is None

        # ...while a longer default lifetime (cookie max_age) or a store-level write is kept
        # as MAX_TTL rather than failing on PostgreSQL's integer range.
        huge = Session(store, cookie=CookieOptions(max_age=2**40))
        assert await huge.update("a", 1)
        record = await store.get_all(huge.id)  # type: ignore[arg-type]
        assert record is not None
        assert MAX_TTL - 60 < record.ttl <= MAX_TTL
        sid = SessionId.generate()
        await store.write(write(None, sid, b"x", field_ttl=2**40, key_ttl=2**40, hot_ttl=2**40))
        record = await store.get_all(sid)
        assert record is not None
        assert record.fields["f"].hot_ttl == MAX_TTL
        assert MAX_TTL - 60 < (record.fields["f"].ttl or 0) <= MAX_TTL
        assert await store.expire(sid, 2**40)


# -- names up to the documented length ------------------------------------------------------------


def name_of(length: int, prefix: str = "t") -> str:
    return (prefix + uuid.uuid4().hex * 2)[:length]


@pytest.mark.parametrize("length", [1, 21, 22, 30, MAX_NAME])
async def test_table_names_up_to_the_documented_length(
    pg: servers.PostgresServer, length: int
) -> None:
    table = name_of(length) if length > 1 else "t"
    for schema in (None, name_of(MAX_NAME, "s")):
        async with PostgresStore.from_dsn(pg.dsn, schema=schema, table=table) as store:
            s = Session(store, cookie=CookieOptions(max_age=1))
            await s.update("a", 1)
            await s.update("b", 2, ttl=-1)
            assert await Session(store, s.id).get_all() == {"a": 1, "b": 2}
            gone = Session(store, cookie=CookieOptions(max_age=1))
            await gone.update("c", 3)
            await trio.sleep(1.3)
            assert await store.delete_expired() == 1
            assert await Session(store, s.id).get("b") == 2
        where = f"= '{schema}'" if schema else "= 'public'"
        objects = psql(
            pg,
            f"SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            f"WHERE n.nspname {where} AND relname LIKE '{table}%'",
        ).split()
        assert f"{table}_fields_session_fkey" not in objects  # a constraint, not a relation
        assert {f"{table}", f"{table}_fields", f"{table}_fields_expires_idx"} <= set(objects)
        fkeys = psql(pg, f"SELECT conname FROM pg_constraint WHERE conname LIKE '{table}%'")
        assert f"{table}_fields_session_fkey" in fkeys.split()


def test_derived_names_fit_and_stay_as_released() -> None:
    longest = "x" * MAX_NAME
    for name in names_map(Names("s" * MAX_NAME, longest)).values():
        for part in name.split("."):
            assert len(part.strip('"').encode()) <= PG_MAX_IDENTIFIER, name
    assert MAX_NAME + max(map(len, SUFFIXES)) <= PG_MAX_IDENTIFIER
    # Existing stores' objects keep exactly the names earlier releases gave them.
    assert names_map(Names(None, "sessions")) == {
        "sessions": '"sessions"',
        "fields": '"sessions_fields"',
        "version": '"sessions_schema_version"',
        "live": '"sessions_live"',
        "ttl": '"sessions_ttl"',
        "write": '"sessions_write"',
        "remove": '"sessions_remove"',
        "delete": '"sessions_delete"',
        "expire": '"sessions_expire"',
        "rename": '"sessions_rename"',
        "delete_expired": '"sessions_delete_expired"',
        "int_decode": '"sessions_int_decode"',
        "int_encode": '"sessions_int_encode"',
        "seq": '"sessions_seq"',
        "touch": '"sessions_touch"',
        "login": '"sessions_login"',
        "watch_notify": '"sessions_watch_notify"',
        "watch_recheck": '"sessions_watch_recheck"',
        "sessions_pkey": '"sessions_pkey"',
        "sessions_expires_idx": '"sessions_expires_idx"',
        "fields_pkey": '"sessions_fields_pkey"',
        "fields_session_fkey": '"sessions_fields_session_fkey"',
        "fields_expires_idx": '"sessions_fields_expires_idx"',
        "sessions_user_idx": '"sessions_user_idx"',
        "watch_trigger": '"sessions_watch_trigger"',
        "watch_shorter_trigger": '"sessions_watch_shorter"',
        "fields_watch_trigger": '"sessions_fields_watch"',
        "collision": "TR001",
        "not_int": "TR002",
        "overflow": "TR003",
        "watch_channel": "sessions_watch",
    }
    assert Queries(Names("auth", "s")).get.count('"auth"."s_fields"') == 1


@pytest.mark.parametrize("bad", ["x" * (MAX_NAME + 1), "1abc", "a-b"])
def test_invalid_names_are_named_as_given(bad: str) -> None:
    for kw in ({"table": bad}, {"schema": bad}):
        with pytest.raises(ValueError, match="letters, digits") as info:
            PostgresStore.from_dsn("postgresql://localhost/db", **kw)
        message = str(info.value)
        assert repr(bad) in message
        assert "_fields" not in message
        assert ("table name" if "table" in kw else "schema") in message
