"""PostgresStore: asyncpg through trio-asyncio, one prepared statement per operation."""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Awaitable, Callable
from contextlib import suppress
from functools import partial
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import urlsplit

import trio

from ..._errors import SessionError, SessionIdCollision, StoreError, StoreTimeout
from ..._ids import SessionId, SessionRef, id_digest
from ..._ints import not_an_integer, out_of_range
from ..._limits import MAX_TTL
from ..._store import (
    FieldRecord,
    Read,
    Removal,
    SessionRecord,
    SessionStore,
    Touch,
    Write,
    WriteResult,
)
from ..._users import UserEntry, last_seen, user_hash
from ..._watch import WatchHub
from .._asyncio import bridge, current_loop_or_fail, open_private_loop
from .._extras import require
from ._schema import (
    BARE,
    COLLISION_STATE,
    LATEST,
    MIGRATIONS,
    NOT_INT_STATE,
    OVERFLOW_STATE,
    Names,
    Queries,
)

_log = logging.getLogger("trio_ruts.postgres")
T = TypeVar("T")
_UNIQUE_VIOLATION: Final = "23505"
_UNAVAILABLE_CLASSES: Final = ("08", "57")  # connection exceptions, operator intervention
#: Seconds a store operation may take before it raises ``StoreTimeout`` (``timeout=``).
DEFAULT_TIMEOUT: Final = 5.0
#: How long a cancelled statement's connection waits for the server to confirm the cancel
#: before it is closed instead (seconds): a bound on how late a cancellation takes effect.
CANCEL_GRACE: Final = 0.5
#: How long a cancelled or failed call may spend asking the pool to replace its connections.
_REPLACE_TIMEOUT: Final = 5.0
#: Longest wait between attempts to listen again (seconds); the first retry is at once.
_LISTEN_BACKOFF: Final = 0.5
#: Seconds between checks that the listening connection still answers.
_LISTEN_PING: Final = 5.0


if TYPE_CHECKING:
    import asyncio

    import asyncpg

    # One of the errors asyncpg raises itself for an argument it cannot encode (the statement
    # does not run); the other is an ``asyncpg.DataError`` (a PostgresError) without a severity.
    from asyncpg.exceptions._base import DataError as ArgumentError


def _import_driver() -> None:
    """Bind ``asyncpg``, ``asyncio`` and ``ArgumentError`` in this module when the first store
    is built: importing :class:`PostgresStore` loads no driver (SPEC section 1), and only code
    that runs for a built store uses these names."""
    if "asyncpg" in globals():
        return
    driver, _ = require("PostgresStore", "postgres", "asyncpg", "trio_asyncio")
    import asyncio as aio

    from asyncpg.exceptions._base import DataError

    globals().update(asyncio=aio, ArgumentError=DataError, asyncpg=driver)


def _describe(dsn: str | None) -> str:
    if not dsn:
        return "postgres"
    parts = urlsplit(dsn)
    host = parts.hostname or "localhost"
    where = f"{host}:{parts.port}" if parts.port else host
    return f"postgres at {where}{parts.path or ''}"


def _check_timeout(timeout: float | None) -> float:
    """Validate ``timeout=`` and return the deadline in seconds (``inf`` for none)."""
    if timeout is None:
        return math.inf
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ValueError(
            f"timeout must be a positive number of seconds (how long a store operation may "
            f"take), or None for no deadline of the store's own; got {timeout!r}"
        )
    return float(timeout)


def _clamp(seconds: int | None) -> int | None:
    """A lifetime as the schema keeps it: anything longer than ``MAX_TTL`` is ``MAX_TTL``."""
    return MAX_TTL if seconds is not None and seconds > MAX_TTL else seconds


def _touch_args(touch: Touch) -> tuple[int, float, int | None]:
    return touch.idle, touch.below, touch.absolute


async def _keep_session_state(conn: Any) -> None:
    """The pool's reset hook for the store's own pool: nothing to do.

    asyncpg's default reset runs ``RESET ALL; CLOSE ALL; UNLISTEN *;`` and unlocks advisory
    locks on every release, a second round trip per operation. The store's statements change
    none of that session state (its one lock is transaction-scoped), and asyncpg still rolls
    back an open transaction before calling this hook.
    """


async def _on_connection(pool: Any, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run ``fn(connection, *args)`` on a connection of ``pool`` (asyncio side).

    A statement interrupted by a cancellation (a trio deadline or cancel scope, which
    trio-asyncio turns into an asyncio cancellation) makes asyncpg send the server a cancel
    request. The connection goes back to the pool once the server confirms that the statement
    is over, so it cannot commit after the caller went on; a server that does not confirm
    within ``CANCEL_GRACE`` (0.5) seconds (hung, or unreachable) gets the connection closed
    instead, where asyncpg alone would wait for it without limit. A connection broken by an
    I/O error is closed at once. After an error the server reported, an argument asyncpg
    could not encode, or one of ours, the connection is in a known state and is reused.
    """
    conn = await pool.acquire()
    release_timeout = None  # the pool's own
    try:
        return await fn(conn, *args)
    except (asyncio.CancelledError, TimeoutError):
        release_timeout = CANCEL_GRACE
        raise
    except (asyncpg.PostgresError, ArgumentError, SessionError):
        raise
    except BaseException:
        conn.terminate()
        raise
    finally:
        # A failed release (the grace period passed, a reset failed) closes the connection;
        # the statement's own outcome is what the caller gets.
        with suppress(Exception):
            await pool.release(conn, timeout=release_timeout)


async def _statement(conn: Any, method: str, query: str, args: tuple[Any, ...]) -> Any:
    return await getattr(conn, method)(query, *args)


class PostgresStore(SessionStore):
    """Sessions in PostgreSQL: a row per session and a row per field, each with its expiry.

    Use :meth:`from_dsn` or :meth:`from_pool`. The store runs asyncpg in a trio-asyncio loop
    that it owns inside its nursery (with :meth:`from_dsn`), creates its tables through
    versioned migrations, and deletes expired rows in a background task. Expired data is
    invisible to reads before the sweep; the database's ``now()`` decides expiry.

    Every operation is one statement in one transaction. Cancellation: a call cancelled
    before it starts sends nothing; one cancelled (or past ``timeout``) while its statement
    is in flight has the server cancel the statement, and returns once the server confirmed
    that the statement is over (it committed entirely or not at all), or after at most
    ``CANCEL_GRACE`` (0.5) seconds with its connection closed (a hung server, which may still
    complete a statement it had begun when it resumes).
    """

    def __init__(
        self,
        *,
        dsn: str | None,
        pool: Any = None,
        schema: str | None = None,
        table: str = "sessions",
        create_table: bool = True,
        min_size: int = 1,
        max_size: int = 10,
        sweep_interval: float | None = 300.0,
        connect_timeout: float = 10.0,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        _import_driver()
        self._names = Names(schema, table)  # validates both, naming what the caller gave
        if sweep_interval is not None and not sweep_interval > 0:
            raise ValueError("sweep_interval must be positive, or None for no background sweep")
        self._timeout = _check_timeout(timeout)
        self._dsn = dsn
        self._pool: Any = pool
        self._owns_pool = pool is None
        self._queries = Queries(self._names)
        self._create_table = create_table
        self._min_size, self._max_size = min_size, max_size
        self._sweep_interval = sweep_interval
        self._connect_timeout = connect_timeout
        self._where = _describe(dsn)
        self._loop: Any = None
        self._run: Callable[..., Awaitable[Any]] | None = None

    @classmethod
    def from_dsn(
        cls,
        dsn: str,
        schema: str | None = None,
        table: str = "sessions",
        create_table: bool = True,
        *,
        min_size: int = 1,
        max_size: int = 10,
        sweep_interval: float | None = 300.0,
        connect_timeout: float = 10.0,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> PostgresStore:
        """A store on ``dsn`` (``postgresql://user:password@host:port/db``).

        Args:
            schema: schema for the tables (created if missing); ``None``: the search path.
            table: base name of the store's tables, functions and indexes.
            create_table: create or migrate the schema when opening; if ``False`` the schema
                must already be at this release's version.
            min_size, max_size: the asyncpg pool's bounds.
            sweep_interval: seconds between deletions of expired rows; ``None`` disables the
                background sweep (call :meth:`delete_expired` yourself).
            connect_timeout: seconds before opening raises ``StoreTimeout``.
            timeout: seconds an operation may take, waiting for a pooled connection
                included, before it raises ``StoreTimeout`` and closes its connection;
                ``None``: only the caller's own deadlines apply.

        Raises:
            ValueError: an invalid schema or table name, ``sweep_interval`` or ``timeout``.
        """
        return cls(
            dsn=dsn,
            schema=schema,
            table=table,
            create_table=create_table,
            min_size=min_size,
            max_size=max_size,
            sweep_interval=sweep_interval,
            connect_timeout=connect_timeout,
            timeout=timeout,
        )

    @classmethod
    def from_pool(
        cls,
        pool: Any,
        schema: str | None = None,
        table: str = "sessions",
        create_table: bool = True,
        *,
        sweep_interval: float | None = 300.0,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> PostgresStore:
        """A store on an existing ``asyncpg.Pool``.

        The pool belongs to a trio-asyncio loop that the caller keeps running (``async with
        trio_asyncio.open_loop():``) around the store's whole life; the store neither opens a
        loop nor closes the pool. It does close a connection of the pool whose statement was
        cancelled or timed out. The other arguments are those of :meth:`from_dsn`.
        """
        return cls(
            dsn=None,
            pool=pool,
            schema=schema,
            table=table,
            create_table=create_table,
            sweep_interval=sweep_interval,
            timeout=timeout,
        )

    def __repr__(self) -> str:
        return f"PostgresStore({self._where}, table={self._names.table!r})"

    # -- plumbing ------------------------------------------------------------------------------

    async def _call(
        self, method: str, query: str, *args: Any, bounded: bool = True, field: str | None = None
    ) -> Any:
        """Run one statement (``method`` of an asyncpg connection) within the store's
        deadline, translating errors into the ``trio_ruts`` tree (``field``: the field the
        statement writes, named by errors about its value)."""
        self._check_open()
        assert self._run is not None
        await trio.lowlevel.checkpoint_if_cancelled()  # a cancelled call sends nothing
        with trio.move_on_after(self._timeout if bounded else math.inf) as deadline:
            try:
                return await self._run(self._pool, _statement, method, query, args)
            except (asyncpg.PostgresError, ArgumentError) as exc:
                refused = await self._refusal(exc, field)
            except TimeoutError as exc:  # asyncpg's own timeouts, on a caller's pool
                raise StoreTimeout(f"{self._where} did not answer in time") from exc
            except (OSError, asyncpg.InterfaceError, asyncpg.InternalClientError) as exc:
                await self._replace_connections()
                raise StoreError(f"{self._where} is unreachable: {exc}") from exc
        if deadline.cancelled_caught:
            raise StoreTimeout(
                f"{self._where} did not complete the operation within {self._timeout:g} s "
                f"(the store's timeout=), so it was cancelled. If the server is merely slow, "
                f"raise timeout= (or max_size, if calls wait for a free connection)"
            )
        # Raised outside the handler on purpose: the driver's error carries the statement's
        # DETAIL (a unique violation's key, a failing row: session ids, values), so it must
        # ride along neither as __cause__ nor as __context__.
        raise refused

    async def _refusal(
        self, exc: asyncpg.PostgresError | ArgumentError, field: str | None = None
    ) -> SessionError:
        """The error to raise for one that asyncpg or the server reported, built from the
        SQLSTATE and primary message only: never the DETAIL (which may quote a session id) nor
        an argument's value."""
        if isinstance(exc, ArgumentError) or exc.severity is None:  # asyncpg's, not the server's
            reason = exc.__cause__ or "invalid input"
            return StoreError(
                f"asyncpg could not encode an argument for {self._where} ({reason}); the "
                f"statement did not run"
            )
        state = exc.sqlstate or ""
        if state == COLLISION_STATE or (
            state == _UNIQUE_VIOLATION
            and exc.constraint_name == self._names.table + BARE["sessions_pkey"]
        ):
            return SessionIdCollision("the new session id is already in use; nothing was changed")
        if state == NOT_INT_STATE and field is not None:
            return not_an_integer(field)
        if state == OVERFLOW_STATE and field is not None:
            return out_of_range(field)
        message = exc.args[0] if exc.args else type(exc).__name__
        if state[:2] in _UNAVAILABLE_CLASSES:
            await self._replace_connections()
            return StoreError(f"{self._where} is unavailable (SQLSTATE {state}: {message})")
        return StoreError(f"{self._where} refused the statement (SQLSTATE {state}: {message})")

    def _loop_error(self, loop: Any, context: dict[str, Any]) -> None:
        """The private loop's exception handler. asyncpg's background tasks may fail when a
        connection is closed or the server goes away (a pool refilling itself to ``min_size``
        leaves a failed future nobody awaits when the closing store aborts it): log it, where
        trio-asyncio's default handler would raise it in the store's nursery.
        """
        _log.log(
            logging.DEBUG if self._closed else logging.WARNING,
            "asyncpg background error: %s",
            context.get("message"),
            exc_info=context.get("exception"),
        )

    async def _aio(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run an asyncio coroutine function (opening, closing) in the store's loop."""
        try:
            return await bridge(self._loop, fn)(*args)  # type: ignore[no-any-return]
        except asyncpg.PostgresError as exc:
            raise await self._refusal(exc) from exc  # no session id in these statements
        except TimeoutError as exc:
            raise StoreTimeout(f"{self._where} did not answer in time") from exc
        except (OSError, asyncpg.InterfaceError, asyncpg.InternalClientError) as exc:
            await self._replace_connections()
            raise StoreError(f"{self._where} is unreachable: {exc}") from exc

    async def _replace_connections(self) -> None:
        # After the server went away, pooled connections may be dead or half-way through a
        # protocol exchange: have asyncpg replace every one of them on its next use.
        if self._pool is not None:
            with trio.move_on_after(_REPLACE_TIMEOUT, shield=True):
                await bridge(self._loop, self._pool.expire_connections)()

    # -- lifecycle -----------------------------------------------------------------------------

    async def _open(self, nursery: trio.Nursery) -> None:
        if self._owns_pool:
            self._loop = await open_private_loop(self._exit_stack)
            self._loop.set_exception_handler(self._loop_error)
            try:
                with trio.fail_after(self._connect_timeout):
                    self._pool = await self._aio(
                        partial(
                            asyncpg.create_pool,
                            self._dsn,
                            min_size=self._min_size,
                            max_size=self._max_size,
                            reset=_keep_session_state,
                        )
                    )
            except trio.TooSlowError:
                raise StoreTimeout(
                    f"{self._where} did not accept connections within "
                    f"{self._connect_timeout} s (connect timeout)"
                ) from None
        else:
            self._loop = current_loop_or_fail("an asyncpg pool")
        self._run = bridge(self._loop, _on_connection)
        await self._aio(_on_connection, self._pool, self._migrate)
        if self._sweep_interval is not None:
            nursery.start_soon(self._sweeper, self._sweep_interval)

    async def _close(self) -> None:
        if self._owns_pool and self._pool is not None:
            pool, self._pool = self._pool, None
            await self._aio(pool.close)  # cancelled (past CLOSE_TIMEOUT): asyncpg terminates

    async def _migrate(self, conn: Any) -> None:
        """Create or upgrade the schema (runs in asyncio), serialized by an advisory lock."""
        q = self._queries
        lock = int.from_bytes(
            hashlib.sha256(f"trio-ruts:{self._names.q()}".encode()).digest()[:8], "big", signed=True
        )
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", lock)
            if not self._create_table:
                try:
                    version = await conn.fetchval(q.current_version)
                except asyncpg.UndefinedTableError:
                    version = 0
                if version != LATEST:
                    raise StoreError(
                        f"the session tables of {self._names.q()} are at schema version "
                        f"{version}, this release needs {LATEST}: open the store once with "
                        f"create_table=True to create or migrate them"
                    )
                return
            if self._names.schema is not None:
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self._names.schema}"')
            await conn.execute(q.version_table)
            version = await conn.fetchval(q.current_version)
            for step in sorted(v for v in MIGRATIONS if v > version):
                for statement in Queries.migration(self._names, step):
                    await conn.execute(statement)
                await conn.execute(q.record_version, step)

    async def _sweeper(self, interval: float) -> None:
        while True:
            await trio.sleep(interval)
            try:
                await self.delete_expired()
            except StoreError as exc:  # the next sweep retries; reads already hide expired data
                _log.warning("expired-session sweep failed: %s", exc)

    async def delete_expired(self) -> int:
        """Delete expired fields and sessions now; returns how many sessions were deleted.

        Its cost grows with the expired data, so the store's ``timeout`` does not apply (the
        caller's deadlines do). A session being written at the moment is left to the next
        sweep. Cancellation: the sweep is committed entirely or not at all.
        """
        return int(await self._call("fetchval", self._queries.delete_expired, bounded=False))

    # -- operations ----------------------------------------------------------------------------

    async def get(self, id: SessionId, field: str) -> bytes | None:
        return await self._call("fetchval", self._queries.get, id_digest(id), field)  # type: ignore[no-any-return]

    async def get_all(self, id: SessionId) -> SessionRecord | None:
        rows = await self._call("fetch", self._queries.get_all, id_digest(id))
        if not rows:
            return None
        fields = {row[1]: FieldRecord(row[2], row[3], row[4]) for row in rows}
        return SessionRecord(rows[0][0], fields)

    async def touch_get(self, id: SessionId, field: str, touch: Touch) -> Read:
        value, ttl = await self._call(
            "fetchrow", self._queries.touch_get, id_digest(id), field, *_touch_args(touch)
        )
        return Read(value, ttl)

    async def touch_get_all(self, id: SessionId, touch: Touch) -> SessionRecord | None:
        query = self._queries.touch_get_all
        rows = await self._call("fetch", query, id_digest(id), *_touch_args(touch))
        if not rows:
            return None
        fields = {row[1]: FieldRecord(row[2], row[3], row[4]) for row in rows}
        return SessionRecord(rows[0][0], fields, rows[0][5])

    async def touch(self, id: SessionId, touch: Touch) -> int | None:
        query = self._queries.touch
        return await self._call("fetchval", query, id_digest(id), *_touch_args(touch))  # type: ignore[no-any-return]

    async def expire_capped(self, id: SessionId, seconds: int, absolute: int) -> int | None:
        query = self._queries.expire_capped
        return await self._call("fetchval", query, id_digest(id), _clamp(seconds), absolute)  # type: ignore[no-any-return]

    async def write(self, write: Write) -> WriteResult:
        written, moved, ttl, value, version = await self._call(
            "fetchrow",
            self._queries.write,
            None if write.id is None else id_digest(write.id),
            id_digest(write.fresh_id),
            write.field,
            write.value,
            write.only_if_absent,
            _clamp(write.field_ttl),
            _clamp(write.key_ttl),
            write.rename,
            _clamp(write.hot_ttl),
            write.expected,
            write.incr,
            write.int_format,
            write.absolute,
            field=write.field,
        )
        if ttl is None:
            assert write.id is not None
            return WriteResult(False, write.id, 0, absent=True, version=version)
        target = write.fresh_id if moved or write.id is None else write.id
        return WriteResult(bool(written), target, int(ttl), value=value, version=version)

    async def remove(self, id: SessionId, field: str) -> Removal:
        removed, ttl, value, version = await self._call(
            "fetchrow", self._queries.remove, id_digest(id), field
        )
        return Removal(bool(removed), ttl, value, version)

    async def delete(self, id: SessionId) -> bool:
        return bool(await self._call("fetchval", self._queries.delete, id_digest(id)))

    async def _end_session(self, id: SessionId, reason: str = "deleted") -> bool:
        if reason == "deleted":
            return await self.delete(id)
        return bool(await self._call("fetchval", self._queries.end_session, id_digest(id), reason))

    # -- live revocation (see trio_ruts._watch) -----------------------------------------------

    @property
    def watch_channel(self) -> str:
        """The ``LISTEN`` channel of session ends: ``<table>_watch`` (payload: a digest of
        the id and the reason, never the id)."""
        return self._names.table + "_watch"

    async def _watch_listen(self, hub: WatchHub) -> None:
        """One dedicated connection (not the pool's) listens, re-established after failures."""
        delay = 0.0
        while True:
            subscribed = hub.subscriptions
            try:
                await self._listen_once(hub)
            except (SessionError, OSError, trio.TooSlowError) as exc:
                # TooSlowError: the connect, or the liveness ping of a backend that hangs.
                _log.warning("session notifications interrupted: %s", exc or type(exc).__name__)
            if hub.subscriptions != subscribed:
                delay = 0.0  # it was listening: a fresh failure, retried at once
            await trio.sleep(delay)
            delay = min(_LISTEN_BACKOFF, max(0.05, delay * 2))

    async def _listen_once(self, hub: WatchHub) -> None:
        lost = trio.Event()

        def on_notify(conn: Any, pid: int, channel: str, payload: str) -> None:
            digest, _, reason = payload.partition(" ")
            hub.notify(digest, reason)

        def on_lost(conn: Any) -> None:
            lost.set()

        own = self._dsn is not None
        if own:
            with trio.fail_after(self._connect_timeout):
                conn = await self._aio(asyncpg.connect, self._dsn)
        else:
            conn = await self._aio(self._pool.acquire)
        try:
            conn.add_termination_listener(on_lost)
            await self._aio(conn.add_listener, self.watch_channel, on_notify)
            hub.connected()
            while not lost.is_set():
                with trio.move_on_after(_LISTEN_PING):
                    await lost.wait()
                if not lost.is_set():  # a server that vanished without closing the socket
                    with trio.fail_after(_LISTEN_PING):
                        await self._aio(conn.execute, "SELECT 1")
        finally:
            if own:
                conn.terminate()  # synchronous: also when the loop is about to close
            else:
                with (
                    trio.move_on_after(CANCEL_GRACE, shield=True),
                    suppress(Exception, asyncio.CancelledError),
                ):
                    await self._aio(self._pool.release, conn)

    async def expire(self, id: SessionId, seconds: int) -> bool:
        query = self._queries.expire
        return bool(await self._call("fetchval", query, id_digest(id), _clamp(seconds)))

    async def rename(self, old: SessionId, new: SessionId) -> int | None:
        ttl = await self._call("fetchval", self._queries.rename, id_digest(old), id_digest(new))
        return None if ttl is None else int(ttl)

    # -- users (SPEC section 9; the index is the sessions table, see _schema._USERS_V9) --------

    async def login(
        self, old: SessionId, new: SessionId, user: str, label: str | None, idle: int
    ) -> int | None:
        args = (id_digest(old), id_digest(new), user_hash(user), user, label, _clamp(idle), new.tag)
        ttl = await self._call("fetchval", self._queries.login, *args)
        return None if ttl is None else int(ttl)

    async def session_user(self, id: SessionId) -> str | None:
        return await self._call("fetchval", self._queries.session_user, id_digest(id))  # type: ignore[no-any-return]

    async def logout(self, id: SessionId) -> bool:
        return await self.delete(id)  # the row is the index entry

    async def _user_rows(self, user: str) -> list[Any]:
        return await self._call("fetch", self._queries.user_sessions, user_hash(user))  # type: ignore[no-any-return]

    async def _user_entries(self, user: str, current: SessionId | None) -> list[UserEntry]:
        mine = None if current is None else id_digest(current)
        found = []
        for key, created, label, idle, remaining, now in await self._user_rows(user):
            left = None if remaining is None else float(remaining)
            seen = last_seen(now, created, left, idle)
            found.append(UserEntry(bytes(key), created, seen, label, key == mine))
        return found

    async def _end_user_sessions(
        self, user: str, *, only: list[Any] | None = None, keep: SessionId | None = None
    ) -> list[Any]:
        spare = None if keep is None else id_digest(keep)
        query = self._queries.end_user_sessions
        rows = await self._call("fetch", query, user_hash(user), only, spare)
        # The tag too: with the digest, it addresses the session in a RedisStore hot layer.
        return [SessionRef(row[1] or "", bytes(row[0])) for row in rows]

    def _session_ref_of(self, ref: Any) -> SessionRef | None:
        return ref if isinstance(ref, SessionRef) and ref.tag else None

    async def _raw_key_columns(self) -> list[bytes]:
        """Every session id and user hash in the table (tests check what it holds)."""
        table = self._names.q()
        rows = await self._call("fetch", f"SELECT id, user_hash FROM {table}")
        return [bytes(v) for row in rows for v in row if v is not None]
