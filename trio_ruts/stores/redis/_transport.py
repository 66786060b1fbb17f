"""Redis connections on trio streams, with hiredis doing the RESP protocol, and a bounded pool.

Only this module and ``_cluster`` know about sockets. A connection that was cancelled
mid-command, or saw an I/O or protocol error, is closed and never reused.
"""

from __future__ import annotations

import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, Final, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis
import trio

from ..._errors import StoreError, StoreTimeout

_MORE: Final = object()  # hiredis: "not enough data yet"
_RECEIVE: Final = 65536
_CLOSE_TIMEOUT: Final = 1.0

Arg = bytes | str | int | float


def pack(args: Sequence[Arg]) -> bytes:
    """Encode one command in RESP (hiredis does the work)."""
    packed: bytes = hiredis.pack_command(tuple(args))  # type: ignore[arg-type]  # stub: 1-tuples
    return packed


class ReplyError(Exception):
    """An error reply from the server (``-ERR ...``), returned as a value, never raised by the
    transport: the caller decides what it means (e.g. ``NOSCRIPT``, ``MOVED``)."""


class Transport(Protocol):
    """What the store needs from a way of talking to Redis (one server, a cluster, redis-py)."""

    async def open(self, stack: AsyncExitStack) -> None:
        """Connect; contexts that must live as long as the store go on ``stack``."""
        ...

    async def aclose(self) -> None: ...

    async def execute(self, key: bytes | None, args: Sequence[Arg], *, idempotent: bool) -> Any:
        """Send one command (routed by ``key`` in a cluster) and return its reply; an error
        reply comes back as a :class:`ReplyError` value. ``idempotent`` commands are retried
        once on a fresh connection if a pooled connection turns out to be broken."""
        ...


@dataclass(frozen=True)
class Endpoint:
    """Where and how to connect. ``str()`` names the server without credentials."""

    host: str = "127.0.0.1"
    port: int = 6379
    unix_path: str | None = None
    tls: bool = False
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    db: int = 0

    def __str__(self) -> str:
        if self.unix_path is not None:
            return f"redis at unix:{self.unix_path}"
        scheme = "rediss" if self.tls else "redis"
        return f"redis at {scheme}://{self.host}:{self.port}"

    def moved_to(self, host: str, port: int) -> Endpoint:
        """The same credentials and TLS settings, for another node of a cluster."""
        return Endpoint(host, port, None, self.tls, self.ssl_context, self.username, self.password)


def parse_url(url: str, ssl_context: ssl.SSLContext | None = None) -> Endpoint:
    """Parse ``redis://``, ``rediss://`` and ``unix://`` URLs (user, password, db)."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    if "password" in query:
        password = query["password"][0]
    db_text = query.get("db", [parts.path.lstrip("/") if parts.scheme != "unix" else ""])[0]
    try:
        db = int(db_text or 0)
    except ValueError:
        raise ValueError(f"the database in a Redis URL is a number, not {db_text!r}") from None
    if parts.scheme == "unix":
        return Endpoint(unix_path=parts.path, username=username, password=password, db=db)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(
            f"Redis URLs start with redis://, rediss:// or unix://, not {parts.scheme}://"
        )
    return Endpoint(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 6379,
        tls=parts.scheme == "rediss",
        ssl_context=ssl_context,
        username=username,
        password=password,
        db=db,
    )


class Connection:
    """One socket to one server. Not shared: a pool hands it to one task at a time."""

    __slots__ = ("_reader", "_receive", "_send", "_stream", "endpoint", "usable")

    def __init__(self, stream: trio.abc.Stream, endpoint: Endpoint) -> None:
        self._stream = stream
        self._reader = hiredis.Reader(notEnoughData=_MORE, replyError=ReplyError)
        self.endpoint = endpoint
        self.usable = True
        self._send: Callable[[bytes], Awaitable[None]]
        self._receive: Callable[[int], Awaitable[bytes | bytearray]]
        if isinstance(stream, trio.SocketStream):
            # Plain TCP and unix sockets: the trio socket's own (cancellation-safe) calls,
            # without the stream's wrappers, which cost as much as the syscalls here.
            self._send = self._socket_send_all
            self._receive = stream.socket.recv
        else:
            self._send = stream.send_all
            self._receive = stream.receive_some

    async def _socket_send_all(self, data: bytes) -> None:
        sock = self._stream.socket  # type: ignore[attr-defined]
        sent = await sock.send(data)
        while sent < len(data):
            data = data[sent:]
            sent = await sock.send(data)

    @classmethod
    async def open(cls, endpoint: Endpoint, connect_timeout: float) -> Connection:
        """Connect, authenticate and select the database.

        Raises:
            StoreTimeout: not connected within ``connect_timeout`` seconds.
            StoreError: refused, unreachable, or authentication failed.
        """
        try:
            with trio.fail_after(connect_timeout):
                stream = await _connect(endpoint)
                conn = cls(stream, endpoint)
                try:
                    await conn._handshake()
                except BaseException:
                    await conn.aclose()
                    raise
        except trio.TooSlowError:
            raise StoreTimeout(
                f"{endpoint} did not answer within {connect_timeout} s (connect timeout)"
            ) from None
        except (OSError, trio.BrokenResourceError, ssl.SSLError) as exc:
            raise StoreError(f"{endpoint} is unreachable: {exc}") from exc
        return conn

    async def _handshake(self) -> None:
        setup: list[tuple[Arg, ...]] = []
        if self.endpoint.password is not None:
            if self.endpoint.username is not None:
                setup.append(("AUTH", self.endpoint.username, self.endpoint.password))
            else:
                setup.append(("AUTH", self.endpoint.password))
        if self.endpoint.db:
            setup.append(("SELECT", self.endpoint.db))
        if not setup:
            return
        replies = await self.request(b"".join(pack(c) for c in setup), len(setup))
        for reply in replies if len(setup) > 1 else [replies]:
            if isinstance(reply, ReplyError):
                # The server's message, which never contains the password we sent.
                raise StoreError(f"{self.endpoint} refused the connection setup: {reply}")

    async def request(self, packed: bytes, count: int = 1) -> Any:
        """Send ``packed`` (``count`` commands) and return the reply, or the list of ``count``
        replies. Until every reply is read the connection is marked unusable, so a cancelled
        or failed request leaves it to be discarded."""
        self.usable = False
        await self._send(packed)
        if count == 1:
            reply = self._reader.gets()  # inlined _read(): this is the hot path
            while reply is _MORE:
                data = await self._receive(_RECEIVE)
                if not data:
                    raise trio.BrokenResourceError("the server closed the connection")
                self._reader.feed(data)  # type: ignore[arg-type]  # bytes or bytearray
                reply = self._reader.gets()
        else:
            reply = [await self._read() for _ in range(count)]
        self.usable = True
        return reply

    async def _read(self) -> Any:
        reply = self._reader.gets()
        while reply is _MORE:
            data = await self._receive(_RECEIVE)
            if not data:
                raise trio.BrokenResourceError("the server closed the connection")
            self._reader.feed(data)  # type: ignore[arg-type]  # bytes or bytearray
            reply = self._reader.gets()
        return reply

    async def aclose(self) -> None:
        self.usable = False
        with trio.move_on_after(_CLOSE_TIMEOUT, shield=True):
            await self._stream.aclose()


async def _connect(endpoint: Endpoint) -> trio.abc.Stream:
    if endpoint.unix_path is not None:
        return await trio.open_unix_socket(endpoint.unix_path)
    if endpoint.tls:
        context = endpoint.ssl_context or ssl.create_default_context()
        return await trio.open_ssl_over_tcp_stream(
            endpoint.host, endpoint.port, ssl_context=context
        )
    stream = await trio.open_tcp_stream(endpoint.host, endpoint.port)
    return stream


_BROKEN: Final = (
    OSError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    hiredis.ProtocolError,
    ssl.SSLError,
)


class Pool:
    """At most ``size`` connections to one server, reused LIFO."""

    def __init__(self, endpoint: Endpoint, size: int, connect_timeout: float) -> None:
        if size < 1:
            raise ValueError("the pool size must be at least 1")
        self.endpoint = endpoint
        self.size = size
        self._limit = trio.Semaphore(size)
        self._idle: deque[Connection] = deque()
        self.connect_timeout = connect_timeout
        self._closed = False

    async def request(self, packed: bytes, count: int = 1, *, idempotent: bool) -> Any:
        """Run one request on a pooled connection (see :meth:`Connection.request`).

        Raises:
            StoreError: the server is unreachable or the connection broke.
            StoreTimeout: connecting took longer than the connect timeout.
        """
        # The I/O below checkpoints anyway; waiting on the limit only when it is exhausted
        # saves a scheduler round trip per command (the bulk of a pool's overhead).
        try:
            self._limit.acquire_nowait()
        except trio.WouldBlock:
            await self._limit.acquire()
        try:
            for attempt in range(2):
                if self._closed:
                    raise trio.ClosedResourceError("the Redis connection pool is closed")
                reused = bool(self._idle)
                conn = self._idle.pop() if reused else await self._open()
                try:
                    reply = await conn.request(packed, count)
                except _BROKEN as exc:
                    await conn.aclose()
                    await self._drop_idle()  # after one broken socket, the others likely are
                    if attempt == 0 and reused and idempotent:
                        continue
                    raise StoreError(f"{self.endpoint}: the connection broke ({exc!r})") from exc
                finally:
                    if not conn.usable:
                        await conn.aclose()  # cancelled or failed mid-command
                self._idle.append(conn)
                return reply
            raise AssertionError("unreachable")  # pragma: no cover
        finally:
            self._limit.release()

    async def _open(self) -> Connection:
        return await Connection.open(self.endpoint, self.connect_timeout)

    async def _drop_idle(self) -> None:
        while self._idle:
            await self._idle.pop().aclose()

    async def aclose(self) -> None:
        self._closed = True
        await self._drop_idle()


class SingleNode:
    """A :class:`Transport` to one Redis server."""

    def __init__(self, endpoint: Endpoint, pool_size: int, connect_timeout: float) -> None:
        self.pool = Pool(endpoint, pool_size, connect_timeout)

    def __str__(self) -> str:
        return str(self.pool.endpoint)

    async def open(self, stack: AsyncExitStack) -> None:
        # Connect once now, so that a wrong address fails at start-up, not at first use.
        await self.pool.request(pack(("PING",)), idempotent=True)

    async def aclose(self) -> None:
        await self.pool.aclose()

    def execute(
        self, key: bytes | None, args: Sequence[Arg], *, idempotent: bool
    ) -> Coroutine[Any, Any, Any]:
        # Not a coroutine itself: returning the pool's saves one frame on every command.
        return self.pool.request(pack(args), idempotent=idempotent)
