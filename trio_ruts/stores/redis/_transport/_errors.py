"""The one place where what goes wrong below the store becomes what its callers see.

Inside the transport, failures travel as the driver raised them (``OSError``, trio's stream
errors, ``hiredis.ProtocolError``, ...) or as the few internal exceptions below. The pool, the
boundary every command crosses, hands them to :func:`reraise`, which looks them up in
:func:`native_table` and raises :class:`~trio_ruts.StoreError` or :class:`~trio_ruts.StoreTimeout`
chained to the driver's error (as httpcore's ``map_exceptions`` does). The redis-py bridge
has a table of its own for redis-py's exceptions and uses the same :func:`reraise`.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from functools import cache
from typing import NoReturn

import trio

from ...._errors import StoreError, StoreTimeout

Table = Sequence[
    tuple[type[BaseException] | tuple[type[BaseException], ...], type[StoreError], str]
]


class Deadline(Exception):
    """The server did not answer in time; the message says which deadline."""


class SetupRefused(Exception):
    """The server refused ``AUTH`` or ``SELECT``: its reply, which never holds the password."""


class Lost(Exception):
    """A connection failed under a caller.

    One per caller (a failure is shared by every caller of the connection, and one exception
    object must not be raised in several tasks).

    Attributes:
        cause: why the connection failed (the driver's error, or a :class:`Deadline`).
        sent: whether the caller's command may have reached the server; if not, sending it
            again on another connection is safe.
    """

    def __init__(self, cause: BaseException, *, sent: bool = True) -> None:
        super().__init__(repr(cause))
        self.cause = cause
        self.sent = sent

    def retryable(self, idempotent: bool) -> bool:
        """Whether the command may go once more to a fresh connection. Never after a
        deadline: that would double the wait on a server that is not answering."""
        return not isinstance(self.cause, Deadline) and (idempotent or not self.sent)


@cache
def native_table() -> Table:
    """The native transport's table: the first row whose type matches wins. Built on first use,
    so that the redis-py bridge and ``import RedisStore`` need no hiredis."""
    import hiredis

    return (
        (Deadline, StoreTimeout, "{where} did not answer within {exc}"),
        (SetupRefused, StoreError, "{where} refused the connection setup: {exc}"),
        (hiredis.ProtocolError, StoreError, "{where} broke the RESP protocol ({exc})"),
        (ssl.SSLError, StoreError, "{where}: TLS failed ({exc})"),
        (trio.BrokenResourceError, StoreError, "{where}: the connection broke ({exc})"),
        (trio.ClosedResourceError, StoreError, "{where}: the connection was closed ({exc})"),
        (OSError, StoreError, "{where} is unreachable: {exc}"),
    )


def reraise(exc: BaseException, where: object, table: Table | None = None) -> NoReturn:
    """Raise what callers see for ``exc``, chained to the driver's error, after ``table``
    (default: :func:`native_table`).

    An exception no row matches propagates unchanged (it is a bug, not a server's failure),
    unless it broke a connection under a caller (:class:`Lost`): that caller still gets a
    :class:`StoreError`, whatever the cause.
    """
    cause = exc.cause if isinstance(exc, Lost) else exc
    for kind, error, message in native_table() if table is None else table:
        if isinstance(cause, kind):
            raise error(message.format(where=where, exc=_describe(cause))) from cause
    if isinstance(exc, Lost):
        raise StoreError(f"{where}: the connection failed ({cause!r})") from cause
    raise exc


def _describe(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, trio.BrokenResourceError) and exc.__cause__ is not None:
        text = f"{text}: {exc.__cause__}" if text else str(exc.__cause__)
    return text or type(exc).__name__
