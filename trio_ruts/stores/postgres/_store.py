"""PostgresStore: asyncpg through trio-asyncio, one prepared statement per operation."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

import asyncpg
import trio

from ..._errors import SessionIdCollision, StoreError, StoreTimeout
from ..._ids import SessionId
from ..._store import FieldRecord, Removal, SessionRecord, SessionStore, Write, WriteResult
from .._asyncio import bridge, current_loop_or_fail, open_private_loop
from ._schema import COLLISION_STATE, LATEST, Names, Queries, check_identifier

_log = logging.getLogger("trio_ruts.postgres")
T = TypeVar("T")
_UNIQUE_VIOLATION: Final = "23505"
_UNAVAILABLE_CLASSES: Final = ("08", "57")  # connection exceptions, operator intervention


def _describe(dsn: str | None) -> str:
    if not dsn:
        return "postgres"
    parts = urlsplit(dsn)
    host = parts.hostname or "localhost"
    where = f"{host}:{parts.port}" if parts.port else host
    return f"postgres at {where}{parts.path or ''}"


async def _keep_session_state(conn: Any) -> None:
    """The pool's reset hook for the store's own pool: nothing to do.

    asyncpg's default reset runs ``RESET ALL; CLOSE ALL; UNLISTEN *;`` and unlocks advisory
    locks on every release, a second round trip per operation. The store's statements change
    none of that session state (its one lock is transaction-scoped), and asyncpg still rolls
    back an open transaction before calling this hook.
    """


class PostgresStore(SessionStore):
    """Sessions in PostgreSQL: a row per session and a row per field, each with its expiry.

    Use :meth:`from_dsn` or :meth:`from_pool`. The store runs asyncpg in a trio-asyncio loop
    that it owns inside its nursery (with :meth:`from_dsn`), creates its tables through
    versioned migrations, and deletes expired rows in a background task. Expired data is
    invisible to reads before the sweep; the database's ``now()`` decides expiry.
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
    ) -> None:
        check_identifier(table, "table name")
        if schema is not None:
            check_identifier(schema, "schema")
        if sweep_interval is not None and not sweep_interval > 0:
            raise ValueError("sweep_interval must be positive, or None for no background sweep")
        self._dsn = dsn
        self._pool: Any = pool
        self._owns_pool = pool is None
        self._names = Names(schema, table)
        self._queries = Queries(self._names)
        self._create_table = create_table
        self._min_size, self._max_size = min_size, max_size
        self._sweep_interval = sweep_interval
        self._connect_timeout = connect_timeout
        self._where = _describe(dsn)
        self._loop: Any = None

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
    ) -> PostgresStore:
        """A store on an existing ``asyncpg.Pool``. The pool belongs to a trio-asyncio loop
        that the caller keeps running (``async with trio_asyncio.open_loop():``) around the
        store's whole life; the store neither opens a loop nor closes the pool."""
        return cls(
            dsn=None,
            pool=pool,
            schema=schema,
            table=table,
            create_table=create_table,
            sweep_interval=sweep_interval,
        )

    def __repr__(self) -> str:
        return f"PostgresStore({self._where}, table={self._names.table!r})"

    # -- plumbing ------------------------------------------------------------------------------

    async def _aio(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run an asyncio coroutine function in the store's loop, translating errors."""
        try:
            return await bridge(self._loop, fn)(*args)  # type: ignore[no-any-return]
        except asyncpg.PostgresError as exc:
            state = getattr(exc, "sqlstate", "") or ""
            if state == COLLISION_STATE or (
                state == _UNIQUE_VIOLATION
                and getattr(exc, "constraint_name", "") == self._names.table + "_pkey"
            ):
                raise SessionIdCollision(
                    "the new session id is already in use; nothing was changed"
                ) from exc
            if state[:2] in _UNAVAILABLE_CLASSES:
                await self._replace_connections()
                raise StoreError(f"{self._where} is unavailable: {exc}") from exc
            raise StoreError(f"{self._where} refused the statement: {exc}") from exc
        except TimeoutError as exc:
            raise StoreTimeout(f"{self._where} did not answer in time") from exc
        except (OSError, asyncpg.InterfaceError, asyncpg.exceptions.InternalClientError) as exc:
            await self._replace_connections()
            raise StoreError(f"{self._where} is unreachable: {exc}") from exc

    async def _replace_connections(self) -> None:
        # After the server went away, pooled connections may be dead or half-way through a
        # protocol exchange: have asyncpg replace every one of them on its next use.
        if self._pool is not None:
            with trio.move_on_after(5, shield=True):
                await bridge(self._loop, self._pool.expire_connections)()

    async def _fetchrow(self, query: str, *args: Any) -> Any:
        self._check_open()
        return await self._aio(self._pool.fetchrow, query, *args)

    async def _fetchval(self, query: str, *args: Any) -> Any:
        self._check_open()
        return await self._aio(self._pool.fetchval, query, *args)

    # -- lifecycle -----------------------------------------------------------------------------

    async def _open(self, nursery: trio.Nursery) -> None:
        if self._owns_pool:
            self._loop = await open_private_loop(self._exit_stack)
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
        await self._aio(self._migrate)
        if self._sweep_interval is not None:
            nursery.start_soon(self._sweeper, self._sweep_interval)

    async def _close(self) -> None:
        if self._owns_pool and self._pool is not None:
            pool, self._pool = self._pool, None
            await self._aio(pool.close)

    async def _migrate(self) -> None:
        """Create or upgrade the schema (runs in asyncio), serialized by an advisory lock."""
        q = self._queries
        lock = int.from_bytes(
            hashlib.sha256(f"trio-ruts:{self._names.q()}".encode()).digest()[:8], "big", signed=True
        )
        async with self._pool.acquire() as conn, conn.transaction():
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
                schema = check_identifier(self._names.schema, "schema")
                await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            await conn.execute(q.version_table)
            version = await conn.fetchval(q.current_version)
            for step in range(version + 1, LATEST + 1):
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
        """Delete expired fields and sessions now; returns how many sessions were deleted."""
        return int(await self._fetchval(self._queries.delete_expired))

    # -- operations ----------------------------------------------------------------------------

    async def get(self, id: SessionId, field: str) -> bytes | None:
        return await self._fetchval(self._queries.get, id.bytes, field)  # type: ignore[no-any-return]

    async def get_all(self, id: SessionId) -> SessionRecord | None:
        self._check_open()
        rows = await self._aio(self._pool.fetch, self._queries.get_all, id.bytes)
        if not rows:
            return None
        fields = {row[1]: FieldRecord(row[2], row[3], row[4]) for row in rows}
        return SessionRecord(rows[0][0], fields)

    async def write(self, write: Write) -> WriteResult:
        row = await self._fetchrow(
            self._queries.write,
            None if write.id is None else write.id.bytes,
            write.fresh_id.bytes,
            write.field,
            write.value,
            write.only_if_absent,
            write.field_ttl,
            write.key_ttl,
            write.rename,
            write.hot_ttl,
        )
        written, moved, ttl = row
        target = write.fresh_id if moved or write.id is None else write.id
        return WriteResult(bool(written), target, int(ttl))

    async def remove(self, id: SessionId, field: str) -> Removal:
        removed, ttl = await self._fetchrow(self._queries.remove, id.bytes, field)
        return Removal(bool(removed), ttl)

    async def delete(self, id: SessionId) -> bool:
        return bool(await self._fetchval(self._queries.delete, id.bytes))

    async def expire(self, id: SessionId, seconds: int) -> bool:
        return bool(await self._fetchval(self._queries.expire, id.bytes, seconds))

    async def rename(self, old: SessionId, new: SessionId) -> int | None:
        ttl = await self._fetchval(self._queries.rename, old.bytes, new.bytes)
        return None if ttl is None else int(ttl)
