"""Redis connections with automatic pipelining, hiredis doing the RESP protocol.

One connection per server is shared by every task. Each command is written as soon as its
caller asks, without waiting for earlier replies, and replies are handed back in the order the
commands were written. A caller that finds nobody reading reads for itself (so a lone caller
costs what a plain request/response does); callers that arrive meanwhile wait, and whatever
replies are still due when it has its own are read by a reader task in the store's nursery.
Waiting for a reply is the only blocking step of a caller, so a caller cancelled while waiting
leaves the stream in a known state: its reply is read and dropped. That connection still takes
no new commands (it is retired and closed once drained), and one that saw an I/O or protocol
error fails its waiting callers and is closed; the next command opens a fresh connection.

Plain TCP and unix sockets are driven directly (stdlib socket calls plus trio's
``wait_readable``/``wait_writable``); TLS goes through a trio ``SSLStream``, read only by the
reader task. Only this module and ``_cluster`` know about sockets.
"""

from __future__ import annotations

import socket
import ssl
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, Final, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis
import outcome
import trio
from trio.lowlevel import Abort, RaiseCancelT, Task

from ..._errors import StoreError, StoreTimeout

_MORE: Final = object()  # hiredis: "not enough data yet"
_RECEIVE: Final = 65536
_IDLE_CHECK: Final = 1.0  # seconds unused after which a connection is checked before use

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

    async def open(self, stack: AsyncExitStack, nursery: trio.Nursery) -> None:
        """Connect; contexts that must live as long as the store go on ``stack``, and
        background tasks (the connections' readers) run in the store's ``nursery``."""
        ...

    async def aclose(self) -> None: ...

    async def execute(self, key: bytes | None, args: Sequence[Arg], *, idempotent: bool) -> Any:
        """Send one command (routed by ``key`` in a cluster) and return its reply; an error
        reply comes back as a :class:`ReplyError` value. ``idempotent`` commands are retried
        once on a fresh connection if an established connection turns out to be broken."""
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


class _Call:
    """A caller waiting for ``count`` replies; ``task`` is ``None`` once it gave up. An
    ``inline`` caller reads for itself: its reply is left in ``result``."""

    __slots__ = ("count", "inline", "replies", "result", "task")

    def __init__(self, task: Task, count: int) -> None:
        self.task: Task | None = task
        self.count = count
        self.replies: list[Any] = []
        self.inline = False
        self.result: Any = _MORE


class _Unsent(trio.BrokenResourceError):
    """The connection was found dead before the command was written: safe to retry."""


class Connection:
    """One connection to one server, shared by every task (see the module's docstring).

    :meth:`run`, which the pool starts in the store's nursery, reads what no caller reads
    and sends what could not be sent at once; it closes the socket when it ends.
    """

    __slots__ = (
        "_on_closed",
        "_out",
        "_parser",
        "_pending",
        "_reader",
        "_reading",
        "_scope",
        "_sock",
        "_stream",
        "_used",
        "_writer",
        "endpoint",
        "error",
        "retiring",
    )

    def __init__(
        self,
        endpoint: Endpoint,
        sock: socket.socket | None,
        stream: trio.abc.Stream | None,
        on_closed: Callable[[Connection | None], None],
    ) -> None:
        self.endpoint = endpoint
        self._sock = sock  # plain TCP or unix: a non-blocking stdlib socket
        self._stream = stream  # TLS
        self._parser = hiredis.Reader(notEnoughData=_MORE, replyError=ReplyError)
        self._pending: deque[_Call] = deque()  # in the order their commands were written
        self._reading = False  # a caller or the reader task is reading replies
        self._used = trio.current_time()  # when a caller last found the connection idle
        self._out: list[bytes] = []  # written, not yet sent: the writer task sends it
        self._reader: Task | None = None  # the reader task, while it waits for work
        self._writer: Task | None = None  # the writer task, while it waits for work
        self._scope = trio.CancelScope()  # the reader and writer tasks
        self._on_closed = on_closed
        self.error: BaseException | None = None  # why the connection is unusable
        self.retiring = False  # a caller gave up: no new commands, close when drained

    @property
    def usable(self) -> bool:
        """Whether new commands may be sent on this connection."""
        return self.error is None and not self.retiring

    @classmethod
    async def open(
        cls,
        endpoint: Endpoint,
        connect_timeout: float,
        nursery: trio.Nursery,
        on_closed: Callable[[Connection | None], None],
    ) -> Connection:
        """Connect, start :meth:`run` in ``nursery``, authenticate and select the database.
        ``on_closed`` is called exactly once, whatever happens: with the connection once its
        socket is closed, or with ``None`` if it never got that far.

        Raises:
            StoreTimeout: not connected within ``connect_timeout`` seconds.
            StoreError: refused, unreachable, or authentication failed.
        """
        conn: Connection | None = None
        try:
            with trio.fail_after(connect_timeout):
                sock, stream = await _connect(endpoint)
                conn = cls(endpoint, sock, stream, on_closed)
                try:
                    nursery.start_soon(conn.run)  # from here on, run() closes and reports
                except BaseException:  # the store is closing: its nursery takes no tasks
                    conn = None
                    if sock is not None:
                        sock.close()
                    elif stream is not None:
                        await trio.aclose_forcefully(stream)
                    raise
                try:
                    await conn._handshake()
                except BaseException:
                    conn.close()
                    raise
        except BaseException as exc:
            if conn is None:
                on_closed(None)
            if isinstance(exc, trio.TooSlowError):
                raise StoreTimeout(
                    f"{endpoint} did not answer within {connect_timeout} s (connect timeout)"
                ) from None
            if isinstance(exc, _BROKEN):
                raise StoreError(f"{endpoint} is unreachable: {exc}") from exc
            raise
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

    # -- callers -------------------------------------------------------------------------------

    async def request(self, packed: bytes, count: int = 1) -> Any:
        """Send ``packed`` (``count`` commands) and return the reply, or the list of ``count``
        replies.

        Raises:
            trio.BrokenResourceError: the connection broke before every reply came back
                (:class:`_Unsent` if that was found out before anything was written).
        """
        if self.error is not None:
            raise self._broken(self.error)
        sock = self._sock
        lone = sock is not None and not self._reading
        if lone and not self._pending:
            now = trio.current_time()
            if now - self._used > _IDLE_CHECK:
                self._check_idle(sock)  # type: ignore[arg-type]  # not None when lone
            self._used = now
        self._write(packed)  # never blocks, so nothing can come between it and the append
        call = _Call(trio.lowlevel.current_task(), count)
        self._pending.append(call)
        if lone:
            return await self._read_inline(call)
        if sock is None:
            self._wake_reader()

        def abort(raise_cancel: RaiseCancelT) -> Abort:
            call.task = None  # whoever reads drops the reply when it comes
            self.retiring = True
            return Abort.SUCCEEDED

        return await trio.lowlevel.wait_task_rescheduled(abort)

    def _check_idle(self, sock: socket.socket) -> None:
        """An idle connection may have been closed by the server (its ``timeout``, a restart).
        Checked when it has not been used for a while: the check is a system call."""
        cause: Exception
        try:
            data = sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return  # alive, and nothing to read: the usual case
        except OSError as exc:
            cause = exc
        else:
            if data:
                cause = hiredis.ProtocolError("data from the server that no command asked for")
            else:
                cause = trio.BrokenResourceError("the server closed the connection")
        self._fail(cause)
        raise self._broken(cause, _Unsent)

    async def _read_inline(self, call: _Call) -> Any:
        """Read replies (delivering other callers' too) until ``call``'s is in."""
        call.inline = True
        self._reading = True
        try:
            # One scheduling round first: on loopback the reply is often there by then, and
            # a read that needs no wait skips registering the socket with epoll.
            await trio.lowlevel.cancel_shielded_checkpoint()
            while call.result is _MORE:
                if self.error is not None:  # failed meanwhile: the socket may be closing
                    raise self._broken(self.error)
                self._process(await self._receive())
            return call.result
        except Exception as exc:
            self._fail(exc)
            if call.result is not _MORE:
                return call.result  # ours came before the breakage
            raise self._broken(exc) from exc
        except BaseException:  # cancelled: the reply is dropped when it comes
            call.task = None
            self.retiring = True
            raise
        finally:
            self._reading = False
            if self._pending:
                self._wake_reader()  # replies still due: the reader task takes over
            elif self.retiring:
                self.close()

    def _write(self, data: bytes) -> None:
        if self._out or self._sock is None:
            self._out.append(data)  # behind what is already queued: order is everything
            self._wake_writer()
            return
        try:
            sent = self._sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._fail(exc)
            raise self._broken(exc) from exc
        if sent < len(data):
            self._out.append(data[sent:])
            self._wake_writer()

    def _wake_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            trio.lowlevel.reschedule(reader)

    def _wake_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            trio.lowlevel.reschedule(writer)

    def close(self) -> None:
        """Stop using the connection: waiting callers fail, the socket closes soon after."""
        self._fail(trio.ClosedResourceError(f"{self.endpoint}: the connection was closed"))

    def _broken(
        self, cause: BaseException, kind: type[trio.BrokenResourceError] = trio.BrokenResourceError
    ) -> trio.BrokenResourceError:
        """What a caller sees when this connection broke because of ``cause``."""
        error = kind(f"{self.endpoint}: {cause!r}")
        error.__cause__ = cause
        return error

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self._scope.cancel()
        if self._sock is not None:
            trio.lowlevel.notify_closing(self._sock)  # wakes an inline reader too
        pending, self._pending = self._pending, deque()
        for call in pending:
            if call.task is not None and not call.inline:
                trio.lowlevel.reschedule(call.task, outcome.Error(self._broken(exc)))

    # -- reading -------------------------------------------------------------------------------

    async def _receive(self) -> bytes | bytearray:
        sock = self._sock
        if sock is None:
            assert self._stream is not None
            data = await self._stream.receive_some(_RECEIVE)
        else:
            while True:
                try:
                    data = sock.recv(_RECEIVE)
                    break
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(sock)
        if not data:
            raise trio.BrokenResourceError("the server closed the connection")
        return data

    def _process(self, data: bytes | bytearray) -> None:
        parser = self._parser
        parser.feed(data)  # type: ignore[arg-type]  # bytes or bytearray
        reply = parser.gets()
        while reply is not _MORE:
            if not self._pending:
                raise hiredis.ProtocolError("a reply that no command asked for")
            call = self._pending[0]
            if call.count > 1:
                call.replies.append(reply)
                if len(call.replies) < call.count:
                    reply = parser.gets()
                    continue
                reply = call.replies
            self._pending.popleft()
            if call.task is None:
                pass  # its caller gave up
            elif call.inline:
                call.result = reply
            else:
                trio.lowlevel.reschedule(call.task, outcome.Value(reply))
            reply = parser.gets()

    # -- background ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Read what no caller reads, send what could not be sent at once, until the
        connection breaks, is closed, or is retired and drained; then close the socket."""
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._write_loop)
                    await self._read_loop()
                    nursery.cancel_scope.cancel()
        finally:
            self.close()  # fails whoever still waits
            if self._sock is not None:
                self._sock.close()  # _fail() told trio it is closing
            elif self._stream is not None:
                with trio.CancelScope(shield=True):
                    await trio.aclose_forcefully(self._stream)
            self._on_closed(self)

    async def _read_loop(self) -> None:
        try:
            while not (self.retiring and not self._pending):
                if self._reading or not self._pending:
                    self._reader = trio.lowlevel.current_task()
                    await trio.lowlevel.wait_task_rescheduled(self._unpark_reader)
                    continue
                self._reading = True
                try:
                    while self._pending:
                        self._process(await self._receive())
                finally:
                    self._reading = False
        except Exception as exc:  # broken, or a bug: fail the callers, never the store
            self._fail(exc)

    def _unpark_reader(self, raise_cancel: RaiseCancelT) -> Abort:
        self._reader = None
        return Abort.SUCCEEDED

    async def _write_loop(self) -> None:
        sock, stream, out = self._sock, self._stream, self._out
        try:
            while True:
                if not out:
                    self._writer = trio.lowlevel.current_task()
                    await trio.lowlevel.wait_task_rescheduled(self._unpark_writer)
                    continue
                data = b"".join(out)
                out.clear()
                if stream is not None:
                    await stream.send_all(data)
                    continue
                assert sock is not None
                try:
                    sent = sock.send(data)
                except BlockingIOError:
                    sent = 0
                if sent < len(data):
                    # Put back before awaiting: callers must keep queueing behind it.
                    out.insert(0, data[sent:])
                    await trio.lowlevel.wait_writable(sock)
        except Exception as exc:  # broken, or a bug: fail the callers, never the store
            self._fail(exc)

    def _unpark_writer(self, raise_cancel: RaiseCancelT) -> Abort:
        self._writer = None
        return Abort.SUCCEEDED


async def _connect(endpoint: Endpoint) -> tuple[socket.socket | None, trio.abc.Stream | None]:
    """A non-blocking stdlib socket (TCP, unix), or a trio stream (TLS)."""
    if endpoint.tls:
        context = endpoint.ssl_context or ssl.create_default_context()
        stream = await trio.open_ssl_over_tcp_stream(
            endpoint.host, endpoint.port, ssl_context=context
        )
        return None, stream
    if endpoint.unix_path is not None:
        plain = await trio.open_unix_socket(endpoint.unix_path)
    else:
        plain = await trio.open_tcp_stream(endpoint.host, endpoint.port)  # sets TCP_NODELAY
    trio_sock = plain.socket
    family, kind, proto = trio_sock.family, trio_sock.type, trio_sock.proto
    sock = socket.socket(family, kind, proto, fileno=trio_sock.detach())
    sock.setblocking(False)
    return sock, None


_BROKEN: Final = (
    OSError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    hiredis.ProtocolError,
    ssl.SSLError,
)


class Pool:
    """The connection to one server (see the module's docstring): one in use at a time, plus
    any being drained after a cancellation; at most ``size`` open at once."""

    def __init__(self, endpoint: Endpoint, size: int, connect_timeout: float) -> None:
        if size < 1:
            raise ValueError("the pool size must be at least 1")
        self.endpoint = endpoint
        self.size = size
        self.connect_timeout = connect_timeout
        self.nursery: trio.Nursery | None = None  # the store's, set when the transport opens
        self._current: Connection | None = None
        self._open_connections: set[Connection] = set()
        self._limit = trio.Semaphore(size)
        self._connecting = trio.Lock()
        self._closed = False

    async def request(self, packed: bytes, count: int = 1, *, idempotent: bool) -> Any:
        """Run one request (see :meth:`Connection.request`).

        Raises:
            StoreError: the server is unreachable or the connection broke.
            StoreTimeout: connecting took longer than the connect timeout.
        """
        for attempt in range(2):
            conn = self._current
            established = conn is not None and conn.usable
            if not established:
                conn = await self._connect()
            assert conn is not None
            try:
                return await conn.request(packed, count)
            except _BROKEN as exc:
                if attempt == 0 and established and (idempotent or isinstance(exc, _Unsent)):
                    continue  # it broke while idle (say, the server restarted): once more
                raise StoreError(f"{self.endpoint}: the connection broke ({exc!r})") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _connect(self) -> Connection:
        async with self._connecting:
            conn = self._current
            if conn is not None and conn.usable:
                return conn  # another task connected while this one waited
            if self._closed or self.nursery is None:
                raise trio.ClosedResourceError("the Redis connection pool is closed")
            await self._limit.acquire()  # only if `size` retired connections still drain
            conn = await Connection.open(
                self.endpoint, self.connect_timeout, self.nursery, self._closed_one
            )
            self._open_connections.add(conn)
            self._current = conn
            return conn

    def _closed_one(self, conn: Connection | None) -> None:
        self._limit.release()
        if conn is not None:
            self._open_connections.discard(conn)

    async def aclose(self) -> None:
        self._closed = True
        for conn in list(self._open_connections):
            conn.close()
        await trio.lowlevel.checkpoint()


class SingleNode:
    """A :class:`Transport` to one Redis server."""

    def __init__(self, endpoint: Endpoint, pool_size: int, connect_timeout: float) -> None:
        self.pool = Pool(endpoint, pool_size, connect_timeout)

    def __str__(self) -> str:
        return str(self.pool.endpoint)

    async def open(self, stack: AsyncExitStack, nursery: trio.Nursery) -> None:
        # Connect once now, so that a wrong address fails at start-up, not at first use.
        self.pool.nursery = nursery
        await self.pool.request(pack(("PING",)), idempotent=True)

    async def aclose(self) -> None:
        await self.pool.aclose()

    def execute(
        self, key: bytes | None, args: Sequence[Arg], *, idempotent: bool
    ) -> Coroutine[Any, Any, Any]:
        # Not a coroutine itself: returning the pool's saves one frame on every command.
        return self.pool.request(pack(args), idempotent=idempotent)
