"""The connections to one server, and the boundary where transport errors are translated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import trio

from ._connection import Connection
from ._endpoint import Endpoint
from ._errors import Lost, reraise


@dataclass(frozen=True)
class Options:
    """How native transports connect (see :meth:`~trio_ruts.stores.RedisStore.from_url`).

    Attributes:
        pool_size: most connections open to one server at once, closing ones included.
        connect_timeout: seconds to connect, set up TLS and authenticate.
        timeout: seconds a command may wait for its reply before the call raises
            ``StoreTimeout`` and its connection is dropped; ``None`` waits as long as the
            caller's own deadlines allow.
    """

    pool_size: int = 50
    connect_timeout: float = 5.0
    timeout: float | None = 5.0

    def __post_init__(self) -> None:
        if self.pool_size < 1:
            raise ValueError("the pool size must be at least 1")
        if self.connect_timeout <= 0:
            raise ValueError(
                f"connect_timeout is a number of seconds > 0, not {self.connect_timeout}"
            )
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError(f"timeout is a number of seconds > 0 or None, not {self.timeout}")


class Pool:
    """The connection to one server: one in service at a time (every task shares it, see
    ``_connection``), plus any still closing after a failure; at most ``pool_size`` open.

    :meth:`request` is the transport's boundary: what reaches its caller is a reply, a
    :class:`~trio_ruts.StoreError` (or ``StoreTimeout``), ``trio.Cancelled``, or
    ``trio.ClosedResourceError`` once the pool is closed.
    """

    def __init__(self, endpoint: Endpoint, options: Options, nursery: trio.Nursery) -> None:
        self.endpoint = endpoint
        self.options = options
        self.opened = 0  # connections opened so far, for diagnostics and tests
        self._nursery = nursery  # the store's: connection tasks run there
        self._current: Connection | None = None
        self._open_connections: set[Connection] = set()
        self._limit = trio.Semaphore(options.pool_size)
        self._connecting = trio.Lock()
        self._closed = False

    async def request(self, packed: bytes, count: int = 1, *, idempotent: bool) -> Any:
        """Run one request (see :meth:`Connection.request`): a checkpoint, and under a
        cancelled scope nothing is sent.

        Raises:
            StoreTimeout: connecting, or the reply, took longer than configured.
            StoreError: the server is unreachable, refused the setup, or the connection broke.
            trio.ClosedResourceError: the pool is closed.
        """
        for attempt in range(2):
            conn = self._current
            established = conn is not None and conn.usable
            try:
                if not established:
                    conn = await self._connect()
                assert conn is not None
                return await conn.request(packed, count)
            except Lost as exc:
                if attempt == 0 and established and exc.retryable(idempotent):
                    continue  # it broke while idle (say, the server restarted): once more
                reraise(exc, self.endpoint)
            except trio.ClosedResourceError:
                raise  # the pool is closed: trio's error for use after close
            except Exception as exc:  # connecting failed
                reraise(exc, self.endpoint)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _connect(self) -> Connection:
        async with self._connecting:
            conn = self._current
            if conn is not None and conn.usable:
                return conn  # another task connected while this one waited
            if self._closed:
                raise trio.ClosedResourceError("the Redis connection pool is closed")
            await self._limit.acquire()  # only if `pool_size` failed connections still close
            conn = await Connection.open(
                self.endpoint,
                connect_timeout=self.options.connect_timeout,
                overdue_after=self.options.timeout,
                nursery=self._nursery,
                on_closed=self._closed_one,
            )
            self.opened += 1
            self._open_connections.add(conn)
            self._current = conn
            return conn

    def _closed_one(self, conn: Connection | None) -> None:
        self._limit.release()
        if conn is not None:
            self._open_connections.discard(conn)

    def close(self) -> None:
        """Close every connection; callers still waiting fail with ``StoreError``."""
        self._closed = True
        for conn in list(self._open_connections):
            conn.close()

    async def aclose(self) -> None:
        """:meth:`close`, as an async resource does it."""
        self.close()
        await trio.lowlevel.checkpoint()
