"""One dedicated pub/sub connection: a pattern subscription, re-established after failures.

A subscribed connection can run no other command, so it is not one of the pool's: the store
runs :func:`subscribe` as one task in its nursery, shared by all of its watches.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

import hiredis
import trio

from ._base import Arg, ReplyError
from ._connection import _connect
from ._endpoint import Endpoint
from ._resp import pack

_log = logging.getLogger("trio_ruts.redis")

#: Longest wait between reconnection attempts (seconds); the first retry is at once.
MAX_BACKOFF: Final = 0.5
#: Seconds between PINGs on an idle subscription; a connection silent for twice as long is
#: taken as lost (a server that vanished without closing it).
PING_INTERVAL: Final = 5.0


class _Refused(Exception):
    """The server refused the subscription's setup (AUTH, SELECT, PSUBSCRIBE, SSUBSCRIBE)."""


#: What ends a subscription connection: it is logged (:func:`log_lost`) and made again.
LOST: Final = (
    OSError,
    trio.BrokenResourceError,
    trio.TooSlowError,
    _Refused,
    hiredis.ProtocolError,
)


def log_lost(where: object, exc: BaseException) -> None:
    """Log why the subscription connection to ``where`` ended (one of :data:`LOST`)."""
    if isinstance(exc, hiredis.ProtocolError):
        _log.warning("session notifications from %s: protocol error %s", where, exc)
    else:
        _log.warning("session notifications from %s interrupted: %s", where, exc)


def next_delay(delay: float) -> float:
    """The wait before the next reconnection attempt, after waiting ``delay``."""
    return min(MAX_BACKOFF, max(0.05, delay * 2))


def auth_command(endpoint: Endpoint) -> tuple[Arg, ...] | None:
    """The ``AUTH`` a new connection to ``endpoint`` sends first (``None``: no password)."""
    if endpoint.password is None:
        return None
    if endpoint.username:
        return ("AUTH", endpoint.username, endpoint.password)
    return ("AUTH", endpoint.password)


async def subscribe(
    endpoint: Endpoint,
    pattern: bytes,
    on_message: Callable[[bytes, bytes], None],
    on_subscribed: Callable[[], None],
    *,
    connect_timeout: float,
) -> None:
    """Subscribe to ``pattern`` on ``endpoint`` until cancelled: ``on_message(channel,
    payload)`` for each message, ``on_subscribed()`` each time the subscription is (re-)
    established. Failures are logged and retried with a short backoff."""
    delay = 0.0
    while True:
        try:
            await _session(endpoint, pattern, on_message, on_subscribed, connect_timeout)
        except LOST as exc:
            log_lost(endpoint, exc)
        await trio.sleep(delay)
        delay = next_delay(delay)


async def _session(
    endpoint: Endpoint,
    pattern: bytes,
    on_message: Callable[[bytes, bytes], None],
    on_subscribed: Callable[[], None],
    connect_timeout: float,
) -> None:
    with trio.fail_after(connect_timeout):
        stream = await _connect(endpoint)
    async with stream:
        auth = auth_command(endpoint)
        setup: list[tuple[Arg, ...]] = [] if auth is None else [auth]
        setup.append(("PSUBSCRIBE", pattern))
        await stream.send_all(b"".join(pack(c) for c in setup))
        reader = hiredis.Reader(replyError=ReplyError)
        pending_setup = len(setup) - 1  # AUTH replies before the subscription's
        last_heard = trio.current_time()
        while True:
            with trio.move_on_after(PING_INTERVAL) as idle:
                data = await stream.receive_some(65536)
            if idle.cancelled_caught:
                if trio.current_time() - last_heard > 2 * PING_INTERVAL:
                    raise trio.TooSlowError("the subscription went silent")
                await stream.send_all(pack(("PING",)))
                continue
            if not data:
                raise trio.BrokenResourceError("the server closed the connection")
            last_heard = trio.current_time()
            reader.feed(bytes(data))
            while (reply := reader.gets()) is not False:
                if pending_setup:
                    pending_setup -= 1
                    if isinstance(reply, ReplyError):
                        raise _Refused(str(reply))  # the server's words: never the password
                    continue
                _dispatch(reply, on_message, on_subscribed)


def _dispatch(
    reply: Any, on_message: Callable[[bytes, bytes], None], on_subscribed: Callable[[], None]
) -> None:
    if isinstance(reply, ReplyError):
        raise _Refused(str(reply))
    if not isinstance(reply, list) or not reply:
        return
    kind = reply[0]
    if kind == b"pmessage" and len(reply) == 4:
        on_message(reply[2], reply[3])
    elif kind == b"psubscribe":
        on_subscribed()
