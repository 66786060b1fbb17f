"""One connection to one Redis server, shared by every task: automatic pipelining.

Each command is written as soon as its caller asks, without waiting for earlier replies, and
replies are handed back in the order the commands were written. A caller that finds the
connection idle writes and reads for itself, so a lone caller costs what a plain request and
response does; callers that arrive meanwhile queue their commands for the writer task and wait,
and the replies still due when the lone caller has its own are read by the reader task. Both
tasks run in the store's nursery.

Cancellation never leaves the stream in an unknown state:

* a caller checks for cancellation before anything is written: a cancelled call sends nothing;
* queued commands are written by the writer task, which no caller can cancel, and a lone
  caller's command in one ``send`` (only a command larger than the socket's buffer could be cut
  short by a cancellation, and then the connection is dropped);
* a caller cancelled while it waits for its reply leaves that reply to be read and dropped by
  whoever reads next, and the connection stays in service.

A connection is dropped only when its state is unknown or its server is not answering: an I/O
or protocol error, a command cut short, or a reply overdue by more than the operation deadline
(the watchdog task). Its waiting callers fail, and the pool opens a fresh connection for the
next command.

Connections are trio streams: a ``SocketStream`` (TCP, unix sockets), whose sends and receives
lose nothing when cancelled, or an ``SSLStream`` (TLS), which a cancelled send or receive may
leave broken, so that on TLS only the reader and writer tasks touch the stream. This is the only
module that knows about sockets.
"""

from __future__ import annotations

import select
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any, Final

import hiredis
import outcome
import trio
from trio.lowlevel import Abort, RaiseCancelT, Task

from ._base import Arg, ReplyError
from ._endpoint import Endpoint
from ._errors import Deadline, Lost, SetupRefused
from ._resp import pack

_MORE: Final = object()  # hiredis: "not enough data yet"
_RECEIVE: Final = 65536
_IDLE_CHECK: Final = 1.0  # seconds unused after which a connection is checked before use


class _Call:
    """A caller waiting for ``count`` replies since ``since``; ``task`` is ``None`` once it gave
    up. An ``inline`` caller reads for itself: its reply is left in ``result``."""

    __slots__ = ("count", "inline", "replies", "result", "since", "task")

    def __init__(self, task: Task, count: int, since: float) -> None:
        self.task: Task | None = task
        self.count = count
        self.since = since
        self.replies: list[Any] = []
        self.inline = False
        self.result: Any = _MORE


class Connection:
    """One connection to one server, shared by every task (see the module's docstring).

    :meth:`run`, which :meth:`open` starts in the store's nursery, reads what no caller reads,
    sends what callers queued and watches for overdue replies; it closes the stream when the
    connection fails or is closed.
    """

    __slots__ = (
        "_on_closed",
        "_out",
        "_overdue_after",
        "_parser",
        "_pending",
        "_reader",
        "_reading",
        "_scope",
        "_sending",
        "_socket",
        "_stream",
        "_used",
        "_writer",
        "endpoint",
        "error",
    )

    def __init__(
        self,
        endpoint: Endpoint,
        stream: trio.abc.Stream,
        overdue_after: float | None,
        on_closed: Callable[[Connection | None], None],
    ) -> None:
        self.endpoint = endpoint
        self._stream = stream
        # Set when callers may use the stream themselves (see the module's docstring).
        self._socket = stream.socket if isinstance(stream, trio.SocketStream) else None
        self._overdue_after = overdue_after  # the operation deadline, in seconds
        self._parser = hiredis.Reader(notEnoughData=_MORE, replyError=ReplyError)
        self._pending: deque[_Call] = deque()  # in the order their commands were queued
        self._out: list[bytes] = []  # queued commands, not yet handed to the stream
        self._reading = False  # a caller or the reader task is reading replies
        self._sending = False  # a caller or the writer task is inside stream.send_all
        self._used = trio.current_time()  # when a caller last asked
        self._reader: Task | None = None  # the reader task, while it waits for work
        self._writer: Task | None = None  # the writer task, while it waits for work
        self._scope = trio.CancelScope()  # the background tasks
        self._on_closed = on_closed
        self.error: BaseException | None = None  # why the connection is out of service

    @property
    def usable(self) -> bool:
        """Whether new commands may be sent on this connection."""
        return self.error is None

    @classmethod
    async def open(
        cls,
        endpoint: Endpoint,
        *,
        connect_timeout: float,
        overdue_after: float | None,
        nursery: trio.Nursery,
        on_closed: Callable[[Connection | None], None],
    ) -> Connection:
        """Connect, start :meth:`run` in ``nursery``, authenticate and select the database.
        ``on_closed`` is called exactly once, whatever happens: with the connection once its
        stream is closed, or with ``None`` if it never got that far.

        Raises:
            Deadline: not connected within ``connect_timeout`` seconds.
            SetupRefused: the server refused ``AUTH`` or ``SELECT``.
            OSError, trio.BrokenResourceError, Lost: the server is unreachable, TLS failed,
                or the connection broke during the setup.
        """
        conn: Connection | None = None
        try:
            with trio.fail_after(connect_timeout):
                stream = await _connect(endpoint)
                conn = cls(endpoint, stream, overdue_after, on_closed)
                try:
                    nursery.start_soon(conn.run)  # from here on, run() closes and reports
                except BaseException:  # the store is closing: its nursery takes no tasks
                    conn = None
                    await trio.aclose_forcefully(stream)
                    raise
                await conn._handshake()
        except BaseException as exc:
            if conn is None:
                on_closed(None)
            else:
                conn.close()
            if isinstance(exc, trio.TooSlowError):
                raise Deadline(f"{connect_timeout:g} s (connect timeout)") from None
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
                raise SetupRefused(str(reply))  # the server's words: never the password

    # -- callers -------------------------------------------------------------------------------

    async def request(self, packed: bytes, count: int = 1) -> Any:
        """Send ``packed`` (``count`` commands) and return the reply, or the list of ``count``
        replies. A checkpoint; under a cancelled scope nothing is sent.

        Raises:
            Lost: the connection failed before every reply came back.
        """
        # Nothing awaits between this check and the write: a cancelled call sends nothing.
        await trio.lowlevel.checkpoint_if_cancelled()
        if self.error is not None:
            raise Lost(self.error, sent=False)
        now = trio.current_time()
        call = _Call(trio.lowlevel.current_task(), count, now)
        idle = not (self._pending or self._reading or self._sending)
        if idle and self._socket is not None:
            if now - self._used > _IDLE_CHECK:
                self._check_idle()
            self._used = now
            self._pending.append(call)
            return await self._lone(call, packed)
        self._used = now
        self._pending.append(call)
        self._out.append(packed)
        self._wake_writer()
        if not self._reading:
            self._wake_reader()

        def abort(raise_cancel: RaiseCancelT) -> Abort:
            call.task = None  # whoever reads drops the reply when it comes
            return Abort.SUCCEEDED

        return await trio.lowlevel.wait_task_rescheduled(abort)

    def _check_idle(self) -> None:
        """An idle connection may have been closed by the server (its ``timeout``, a restart):
        then it is readable (end of stream), though no reply is due. Checked only after a
        while unused: the check is a system call."""
        assert self._socket is not None
        if not _readable(self._socket.fileno()):
            return  # alive, and nothing to read: the usual case
        cause = trio.BrokenResourceError("the server ended the connection while it was idle")
        self._fail(cause)
        raise Lost(cause, sent=False)

    async def _lone(self, call: _Call, packed: bytes) -> Any:
        """Write and read for oneself: no task switch, and on loopback the reply is usually in
        by the end of ``send_all``'s own schedule point, so that reading needs no wait."""
        call.inline = True
        self._reading = self._sending = True
        try:
            await self._stream.send_all(packed)
        except BaseException as exc:
            # Failed or cut short by a cancellation: how much was written is unknown.
            self._reading = False
            if not isinstance(exc, Exception):
                self._fail(trio.BrokenResourceError("a command was cut short by a cancellation"))
                raise
            self._fail(exc)
            assert self.error is not None  # exc, or what failed the connection meanwhile
            raise Lost(self.error) from None
        finally:
            self._sending = False
            if self._out:
                self._wake_writer()  # commands queued meanwhile go out behind this one
        return await self._read_inline(call)

    async def _read_inline(self, call: _Call) -> Any:
        """Read replies (delivering other callers' too) until ``call``'s is in."""
        try:
            while call.result is _MORE:
                if self.error is not None:  # failed meanwhile: the stream may be closing
                    break
                self._process(await self._receive())
            else:
                return call.result
        except Exception as exc:
            self._fail(exc)
            if call.result is not _MORE:
                return call.result  # ours came before the breakage
        except BaseException:  # cancelled: the reply is read and dropped when it comes
            call.task = None
            raise
        finally:
            self._reading = False
            if self._pending:
                self._wake_reader()  # replies still due: the reader task takes over
        assert self.error is not None
        raise Lost(self.error)

    def _wake_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            trio.lowlevel.reschedule(reader)

    def _wake_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            trio.lowlevel.reschedule(writer)

    def close(self) -> None:
        """Stop using the connection: waiting callers fail, the stream closes soon after."""
        self._fail(trio.ClosedResourceError("the store closed it"))

    def _fail(self, exc: BaseException) -> None:
        """Take the connection out of service because of ``exc`` (the first cause wins):
        waiting callers fail, and :meth:`run` ends and closes the stream."""
        if self.error is not None:
            return
        self.error = exc
        self._scope.cancel()
        if self._socket is not None:
            trio.lowlevel.notify_closing(self._socket)  # wakes a caller reading inline
        pending, self._pending = self._pending, deque()
        self._out.clear()
        for call in pending:
            if call.task is not None and not call.inline:
                trio.lowlevel.reschedule(call.task, outcome.Error(Lost(exc)))

    # -- reading -------------------------------------------------------------------------------

    async def _receive(self) -> bytes | bytearray:
        data = await self._stream.receive_some(_RECEIVE)
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
        """Read what no caller reads, send what callers queued, drop the connection when a
        reply is overdue; when the connection fails or is closed, close the stream."""
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._write_loop)
                    if self._overdue_after is not None:
                        nursery.start_soon(self._watch, self._overdue_after)
                    await self._read_loop()
        finally:
            self.close()  # fails whoever still waits
            try:
                await trio.aclose_forcefully(self._stream)  # at once, even when cancelled
            finally:
                self._on_closed(self)

    async def _read_loop(self) -> None:
        try:
            while True:
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
        stream, out = self._stream, self._out
        try:
            while True:
                if not out or self._sending:  # a lone caller's command is going out: after it
                    self._writer = trio.lowlevel.current_task()
                    await trio.lowlevel.wait_task_rescheduled(self._unpark_writer)
                    continue
                data = b"".join(out)
                out.clear()
                self._sending = True
                try:
                    await stream.send_all(data)
                finally:
                    self._sending = False
        except Exception as exc:  # broken, or a bug: fail the callers, never the store
            self._fail(exc)

    def _unpark_writer(self, raise_cancel: RaiseCancelT) -> Abort:
        self._writer = None
        return Abort.SUCCEEDED

    async def _watch(self, overdue_after: float) -> None:
        """Drop the connection once its oldest reply is more than ``overdue_after`` seconds
        due (a frozen or overloaded server): its callers then fail with ``StoreTimeout``.
        Checked every tenth of that (a call fails within 1.1 times it), which costs far less
        than a deadline of its own for every call."""
        tick = overdue_after / 10
        while True:
            await trio.sleep(tick)
            pending = self._pending
            if pending and trio.current_time() - pending[0].since > overdue_after:
                self._fail(Deadline(f"{overdue_after:g} s (the store's timeout)"))
                return


async def _connect(endpoint: Endpoint) -> trio.abc.Stream:
    """A ``SocketStream`` (TCP, unix socket), or an ``SSLStream`` that finished its handshake."""
    if endpoint.unix_path is not None:
        return await trio.open_unix_socket(endpoint.unix_path)
    if not endpoint.tls:
        return await trio.open_tcp_stream(endpoint.host, endpoint.port)  # sets TCP_NODELAY
    context = endpoint.ssl_context or ssl.create_default_context()
    stream = await trio.open_ssl_over_tcp_stream(endpoint.host, endpoint.port, ssl_context=context)
    try:
        await stream.do_handshake()  # here, under the connect timeout, not at first use
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return stream


def _readable(fd: int) -> bool:
    """Whether ``fd`` has data or an end of stream to read, without waiting."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])  # Windows: no poll(), and no fd limit
