"""Sessions for plain trio-websocket servers.

Usage::

    from trio_websocket import serve_websocket
    from trio_ruts.websocket import accept, session_for

    async def handler(request):
        session = session_for(request, store, cookie=options)
        if await session.get("user") is None:
            await request.reject(401)
            return
        ws = await accept(request, session)   # Set-Cookie goes out with the handshake
        ...

Closing the connection when the session ends elsewhere (logout, revocation, expiry)::

        ws = await accept(request, session)
        reason = await run_watched(ws, session, partial(chat, ws))  # 1008 when it ends

Or, keeping full control of ``request.accept``::

    ws = await request.accept(extra_headers=handshake_headers(session))
    session.freeze_id("the handshake was answered")
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

import trio

from ._cookies import CookieOptions, CookieOptionsBuilder
from ._expiry import Expiry
from ._serializers import Serializer
from ._session import Session
from ._store import SessionStore

if TYPE_CHECKING:
    from trio_websocket import WebSocketConnection, WebSocketRequest

__all__ = ["CLOSE_CODE", "accept", "handshake_headers", "run_watched", "session_for"]

#: Policy violation (1008), the code that closes a connection whose session ended.
CLOSE_CODE: Final = 1008
#: Seconds the 1008 close handshake may take.
_CLOSE_TIMEOUT: Final = 2.0

_FROZEN_REASON: Final = "the websocket handshake was already answered"


def session_for(
    request: WebSocketRequest,
    store: SessionStore,
    *,
    cookie: CookieOptions | CookieOptionsBuilder | None = None,
    serializer: Serializer | None = None,
    expiry: Expiry | None = None,
    id_header: str | None = None,
) -> Session:
    """The :class:`~trio_ruts.Session` named by the handshake's ``Cookie`` header(s).

    No I/O happens here; a malformed or forged cookie gives a session without an id.
    ``expiry`` as for :class:`~trio_ruts.Session` (default ``Expiry(idle=cookie.max_age)``);
    a long connection that reads nothing keeps its session with ``await session.touch()``.
    ``id_header`` (e.g. ``"X-Session-Id"``, or ``"Authorization"`` for ``Bearer <id>``)
    reads the id from that handshake header instead of the cookie; :func:`handshake_headers`
    then returns the new id in the same header when it changed, and no cookie.
    """
    if id_header is not None:
        wanted = id_header.lower().encode("latin-1")
        found = [v.decode("latin-1") for k, v in request.headers if k.lower() == wanted]
        return Session.from_id_header(
            store,
            found,
            id_header=id_header,
            cookie=cookie,
            serializer=serializer,
            expiry=expiry,
        )
    values = [v.decode("latin-1") for k, v in request.headers if k.lower() == b"cookie"]
    return Session.from_cookie_header(
        store, "; ".join(values), cookie=cookie, serializer=serializer, expiry=expiry
    )


def handshake_headers(session: Session) -> list[tuple[bytes, bytes]]:
    """The headers to pass as ``request.accept(extra_headers=...)``: a ``Set-Cookie`` when the
    session changed during the handshake (in header mode, the id header when the id
    changed), else nothing."""
    header = session.response_header()
    if header is None:
        return []
    name, value = header
    return [(name.lower().encode("latin-1"), value.encode("latin-1"))]


async def accept(
    request: WebSocketRequest,
    session: Session,
    *,
    subprotocol: str | None = None,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> WebSocketConnection:
    """Accept the handshake with the session's ``Set-Cookie`` (if any) and freeze its id:
    afterwards, a change of id raises :class:`~trio_ruts.SessionStateError` instead of being
    lost.

    Returns:
        The connection, as :meth:`trio_websocket.WebSocketRequest.accept` does.
    """
    headers = [*(extra_headers or []), *handshake_headers(session)]
    session.freeze_id(_FROZEN_REASON)
    return await request.accept(subprotocol=subprotocol, extra_headers=headers)


async def run_watched(
    ws: WebSocketConnection, session: Session, handler: Callable[[], Awaitable[object]]
) -> str | None:
    """Run ``handler()`` under the session's watch (:meth:`~trio_ruts.Session.watch`): when
    the session ends elsewhere (deleted, revoked, renamed by another request, expired) the
    handler is cancelled and the connection closed with code 1008 and the reason.

    A connection that reads nothing keeps its session alive with ``await session.touch()``
    (at most once per :attr:`Expiry.interval <trio_ruts.Expiry.interval>` is enough).

    Returns:
        Why the session ended, or ``None`` when the handler returned first (the connection
        is then left as the handler left it).

    Raises:
        SessionStateError: there is no session to watch.
    """
    async with session.watch() as watch:
        await handler()
    if watch.reason is not None:
        with trio.move_on_after(_CLOSE_TIMEOUT, shield=True):
            await ws.aclose(code=CLOSE_CODE, reason=f"session {watch.reason}")
    return watch.reason
