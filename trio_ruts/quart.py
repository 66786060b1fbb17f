"""Quart-trio extension: a per-request :class:`~trio_ruts.Session` and its cookie.

Usage::

    from quart_trio import QuartTrio
    from trio_ruts import CookieOptions, MemoryStore
    from trio_ruts.quart import Sessions, session

    app = QuartTrio(__name__)
    Sessions(app, MemoryStore(), cookie=CookieOptions(max_age=3600))

    @app.route("/")
    async def index():
        count = await session.get("count", 0) + 1
        await session.update("count", count)
        return f"You've visited this page {count} times"

The store is opened when the app starts serving, as a task in the app's nursery, and closed
when it stops (also when shutdown is a cancellation). A store that is already open when the
app starts is used as it is and left open.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, cast

import trio
from quart import current_app, g, websocket
from quart.globals import _cv_app, _cv_request, _cv_websocket
from quart.signals import got_request_exception
from quart_trio import QuartTrio

from ._cookies import CookieOptions, CookieOptionsBuilder, as_cookie_options
from ._errors import SessionError, SessionStateError, SessionUsageError
from ._expiry import Expiry, default_expiry
from ._ids import SessionId
from ._quart_session import ServerSession as ServerSession
from ._quart_session import ServerSessionInterface as ServerSessionInterface
from ._quart_session import _StoreOwner, check_store_serving, request_session
from ._serializers import Serializer
from ._session import Session
from ._store import SessionStore
from ._tokens import as_id_header
from ._watch import Watch

__all__ = ["ServerSession", "ServerSessionInterface", "Sessions", "session"]

_EXTENSION: Final = "trio_ruts"
_SESSION: Final = "_trio_ruts_session"
_RAISED: Final = "_trio_ruts_raised"
_ACCEPTED: Final = "_trio_ruts_ws_accepted"
_FROZEN_REASON: Final = "the websocket handshake was already answered"
#: A login's default label is the request's User-Agent, cut to this many characters.
LABEL_CHARS: Final = 200


class _Unset:
    def __repr__(self) -> str:
        return "<the request's User-Agent>"


_USER_AGENT: Final = _Unset()


class _RequestSession(Session):
    """A request's session: a login is labelled with the request's User-Agent by default."""

    __slots__ = ("_user_agent",)
    _user_agent: str | None

    async def login(self, user: str, *, label: str | _Unset | None = _USER_AGENT) -> SessionId:
        """:meth:`Session.login`, with ``label`` defaulting to the request's User-Agent (cut
        to :data:`LABEL_CHARS` characters; ``None`` without one). Pass ``label=None`` for
        no label."""
        if isinstance(label, _Unset):
            label = self._user_agent
        return await super().login(user, label=label)


class Sessions(_StoreOwner):
    """Server-side sessions for a :class:`quart_trio.QuartTrio` app.

    Args:
        app: the app, or ``None`` to call :meth:`init_app` later.
        store: the session store (opened by the app if not open yet).
        cookie: cookie options; ``max_age`` is also the default session lifetime.
        serializer: value serializer (default CBOR).
        expiry: session lifetimes (:class:`~trio_ruts.Expiry`); default
            ``Expiry(idle=cookie.max_age)``: a session lives while it is used.
        id_header: read the session id from this request header instead of the cookie
            (API clients), e.g. ``"X-Session-Id"``; ``"Authorization"`` reads
            ``Bearer <id>``. When the id changes or the session ends, the response carries
            the new id (empty when it ended) in the same header; no cookie is set.
        watch_websockets: watch the session of every websocket route once it is accepted
            (:meth:`~trio_ruts.Session.watch`) and close the connection with code 1008 when
            the session ends elsewhere (logout, revocation, a rename by another request,
            expiry). Websocket traffic then touches the session at most once per touch
            interval, so an active connection keeps it alive. ``False`` opts out of both.
    """

    def __init__(
        self,
        app: QuartTrio | None = None,
        store: SessionStore | None = None,
        *,
        cookie: CookieOptions | CookieOptionsBuilder | None = None,
        serializer: Serializer | None = None,
        expiry: Expiry | None = None,
        id_header: str | None = None,
        watch_websockets: bool = True,
    ) -> None:
        if store is None:
            raise TypeError("Sessions needs a store, e.g. Sessions(app, MemoryStore())")
        if expiry is not None and not isinstance(expiry, Expiry):
            raise TypeError(f"expiry must be an Expiry or None, not {type(expiry).__name__}")
        self.store = store
        self.cookie = as_cookie_options(cookie)
        self.serializer = serializer
        self.expiry = default_expiry(self.cookie.max_age) if expiry is None else expiry
        self.id_header = None if id_header is None else as_id_header(id_header).name
        self._stop = trio.Event()
        self._stopped = trio.Event()
        self._owns_store = False
        self.watch_websockets = watch_websockets
        if app is not None:
            self.init_app(app)

    def init_app(self, app: QuartTrio) -> None:
        """Register the extension's hooks on ``app``."""
        if not isinstance(app, QuartTrio):
            raise TypeError("trio_ruts.quart needs a quart_trio.QuartTrio app (Trio, not asyncio)")
        if _EXTENSION in app.extensions:
            raise RuntimeError("Sessions is already registered on this app")
        app.extensions[_EXTENSION] = self
        app.before_serving(self._open_store)
        app.after_serving(self._close_store)
        app.after_request(self._after_request)
        app.before_websocket(self._before_websocket)
        _watch_websockets(self, app)
        got_request_exception.connect(self._on_exception, app, weak=False)

    # -- store lifetime ------------------------------------------------------------------------

    async def _open_store(self) -> None:
        if self.store.is_open:
            return
        app = cast(QuartTrio, current_app._get_current_object())  # type: ignore[attr-defined]
        self._stop = trio.Event()
        self._stopped = trio.Event()
        self._owns_store = True
        await app.nursery.start(self._run_store)

    # -- per request ---------------------------------------------------------------------------

    def _current_for_watch(self) -> Session | None:
        """The websocket's session for its watch: the one the handler used, else the one
        its cookie names (no I/O)."""
        found: Session | None = g.get(_SESSION)
        if found is None:
            found = _current_session()
        return found

    def current(self) -> Session:
        """The session of the current request or websocket, created on first use (no I/O)."""
        return _current_session()

    def _create(self, state: dict[str, Any]) -> Session:
        context = _cv_websocket.get(None) or _cv_request.get(None)
        if context is None:
            raise SessionStateError(
                "trio_ruts.quart.session is used outside a request or websocket"
            )
        if not self.store.is_open:
            check_store_serving(self.store)
        headers = context.request_websocket.headers
        found = request_session(
            _RequestSession,
            self.store,
            headers,
            self.id_header,
            self.cookie,
            self.serializer,
            self.expiry,
        )
        assert isinstance(found, _RequestSession)
        agent = headers.get("User-Agent")
        found._user_agent = None if not agent else agent[:LABEL_CHARS]
        if state.get(_ACCEPTED):
            found.freeze_id(_FROZEN_REASON)
        state[_SESSION] = found
        return found

    async def _on_exception(self, sender: Any, **extra: Any) -> None:
        setattr(g, _RAISED, True)

    async def _after_request(self, response: Any) -> Any:
        state = _cv_app.get().g.__dict__
        found: Session | None = state.get(_SESSION)
        if found is None:
            return response
        if _RAISED in state and response.status_code >= 500:
            return response  # the handler failed: do not hand out or clear cookies
        header = found.response_header()
        if header is not None:
            response.headers.add(*header)
        return response

    async def _before_websocket(self) -> None:
        ws = websocket._get_current_object()  # type: ignore[attr-defined]
        original: Callable[[Any, str | None], Awaitable[None]] = ws._accept

        async def accept_with_cookie(headers: Any, subprotocol: str | None) -> None:
            found: Session | None = g.get(_SESSION)
            if found is not None:
                header = found.response_header()
                if header is not None:
                    headers.add(*header)
                found.freeze_id(_FROZEN_REASON)
            setattr(g, _ACCEPTED, True)
            await original(headers, subprotocol)
            live: _LiveWebsocket | None = g.get(_LIVE)
            if live is not None and not live.started:
                live.started = True
                await live.start(self._current_for_watch())

        ws._accept = accept_with_cookie


def _current_session() -> Session:
    # Quart's context variables, read directly: this runs on every use of ``session``, and
    # the werkzeug proxies (current_app, g, request) cost several lookups each.
    context = _cv_app.get(None)
    if context is None:
        raise SessionStateError(
            "trio_ruts.quart.session is used outside a request or websocket (no app context)"
        )
    state: dict[str, Any] = context.g.__dict__
    found: Session | None = state.get(_SESSION)
    if found is not None:
        return found
    try:
        extension: Sessions = context.app.extensions[_EXTENSION]
    except KeyError:
        raise SessionStateError(
            "trio_ruts.quart.session is used in an app without Sessions(app, store)"
        ) from None
    return extension._create(state)


def _dict_advice(what: str) -> str:
    return (
        f"trio_ruts.quart.session is async and per field, not a dict: instead of {what}, "
        f"write `await session.get('user')`, `await session.update('user', value)`, "
        f"`await session.get('user') is not None`, `await session.pop('user')` or "
        f"`await session.remove('user')`; for Quart's own dict session "
        f"(`from quart import session`) on a store, install trio_ruts.quart.ServerSessionInterface"
    )


# Dict methods that Session does not have: point at the async API instead of a bare
# AttributeError.
_DICT_METHODS: Final = frozenset(
    {"keys", "values", "items", "setdefault", "clear", "popitem", "copy", "permanent"}
)
# Which Session attributes are coroutine functions, learned on first use of each name (so
# methods added to Session later are covered too).
_IS_ASYNC: dict[str, bool] = {}


def _is_async(name: str) -> bool:
    found = _IS_ASYNC.get(name)
    if found is None:
        found = _IS_ASYNC[name] = inspect.iscoroutinefunction(getattr(Session, name, None))
    return found


class _AwaitChecked:
    """An async method of the proxied session whose result says so when it is used
    without ``await``."""

    __slots__ = ("_method", "_name")

    def __init__(self, method: Callable[..., Any], name: str) -> None:
        self._method = method
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> _Unawaited:
        return _Unawaited(self._method(*args, **kwargs), self._name)


class _Unawaited:
    """The coroutine of ``session.get(...)`` and friends: awaiting it works as usual; using
    it as a value (``if session.get("user"):``, ``==``, ``[...]``, ``in``) is always a
    missing ``await``, so it raises :class:`~trio_ruts.SessionUsageError` instead of
    quietly being truthy."""

    __slots__ = ("_coro", "_name")

    def __init__(self, coro: Any, name: str) -> None:
        self._coro = coro
        self._name = name

    def __await__(self) -> Any:
        return self._coro.__await__()

    def _misuse(self) -> SessionUsageError:
        self._coro.close()  # never to run: no "never awaited" warning on top of this error
        return SessionUsageError(
            f"session.{self._name}(...) returns an awaitable, used here without await: "
            f"write `await session.{self._name}(...)` (e.g. `await session.get('user')`)"
        )

    def __bool__(self) -> bool:
        raise self._misuse()

    def __eq__(self, other: object) -> bool:
        raise self._misuse()

    def __ne__(self, other: object) -> bool:
        raise self._misuse()

    __hash__ = None  # type: ignore[assignment]

    def __getitem__(self, key: Any) -> Any:
        raise self._misuse()

    def __contains__(self, item: object) -> bool:
        raise self._misuse()

    def __iter__(self) -> Any:
        raise self._misuse()

    def __repr__(self) -> str:
        return f"<unawaited session.{self._name}(): use await>"


class _SessionProxy:
    """Forwards attribute access to the current request's :class:`~trio_ruts.Session`
    (a lighter context-local proxy than werkzeug's: one lookup per access)."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            found = getattr(_current_session(), name)
        except AttributeError:
            if name in _DICT_METHODS:
                raise AttributeError(_dict_advice(f"session.{name}")) from None
            raise
        if _is_async(name):
            return _AwaitChecked(found, name)
        return found

    def __setattr__(self, name: str, value: Any) -> None:
        raise SessionUsageError(_dict_advice(f"session.{name} = ..."))

    def __getitem__(self, field: str) -> Any:
        raise SessionUsageError(_dict_advice(f"session[{field!r}]"))

    def __setitem__(self, field: str, value: Any) -> None:
        raise SessionUsageError(_dict_advice(f"session[{field!r}] = ..."))

    def __delitem__(self, field: str) -> None:
        raise SessionUsageError(_dict_advice(f"del session[{field!r}]"))

    def __contains__(self, field: object) -> bool:
        raise SessionUsageError(_dict_advice(f"{field!r} in session"))

    def __iter__(self) -> Any:
        raise SessionUsageError(_dict_advice("iterating over session"))

    def __len__(self) -> int:
        raise SessionUsageError(_dict_advice("len(session)"))

    def __repr__(self) -> str:
        return "<trio_ruts.quart.session proxy>"


#: The current request's (or websocket's) :class:`~trio_ruts.Session`.
session: Session = cast(Session, _SessionProxy())


# -- live revocation: websockets closed when their session ends (SPEC section 10) -------------

_LIVE: Final = "_trio_ruts_live"
#: The close code of a websocket whose session ended: policy violation.
CLOSE_CODE: Final = 1008
_log = logging.getLogger("trio_ruts.quart")


class _LiveWebsocket:
    """One websocket route's watch and touches: the handler runs in :attr:`scope`, which the
    watch cancels; traffic (receive, send) is noted, and a task in the app's nursery touches
    the session at most once per touch interval."""

    def __init__(self, app: QuartTrio) -> None:
        self.app = app
        self.scope = trio.CancelScope()
        self.started = False
        self.watch: Watch | None = None
        self.activity = trio.Event()
        self._keeper = trio.CancelScope()

    async def start(self, found: Session | None) -> None:
        """After accept: watch the session if the store holds it (a stale cookie is no
        session: nothing to watch), and start touching on traffic.

        A session that the handler found live (it read or wrote it) and that is gone now
        ended: the watch ends at once. The watch is kept from the start, so that one that
        ends while it starts (cancelling this call with the handler) still has the
        connection closed with its reason.
        """
        if found is None or found.id is None:
            return
        watch = self.watch = Watch(found, self.scope)
        if not await watch.start(if_held=not found._verified):
            self.watch = None  # a stale cookie: nothing to watch
            return
        if watch.reason is not None:
            return  # ended already: the handler is cancelled
        interval = found.expiry.interval
        if interval is not None:
            self.app.nursery.start_soon(self._touch_on_traffic, found, interval)

    def noted(self) -> None:
        self.activity.set()

    def stop(self) -> None:
        self._keeper.cancel()
        if self.watch is not None:
            self.watch.stop()

    async def _touch_on_traffic(self, found: Session, interval: float) -> None:
        with self._keeper:
            last = trio.current_time()
            while True:
                await self.activity.wait()
                await trio.sleep_until(last + interval)
                self.activity = trio.Event()
                try:
                    await found.touch()
                except SessionError as exc:  # the next traffic tries again
                    _log.warning("a websocket could not extend its session: %s", exc)
                except trio.ClosedResourceError:
                    return  # the store closed (the app shuts down): nothing to extend
                last = trio.current_time()


def _watch_websockets(extension: Sessions, app: QuartTrio) -> None:
    """Run every websocket route's handler under its session's watch (see _LiveWebsocket)."""
    original = app.dispatch_websocket

    async def dispatch_websocket(websocket_context: Any = None) -> Any:
        if not extension.watch_websockets:
            return await original(websocket_context)
        live = _LiveWebsocket(cast(QuartTrio, current_app._get_current_object()))  # type: ignore[attr-defined]
        setattr(g, _LIVE, live)
        ws = websocket._get_current_object()  # type: ignore[attr-defined]
        receive, send = ws._receive, ws._send

        async def receive_noted() -> Any:
            data = await receive()
            live.noted()
            return data

        async def send_noted(data: Any) -> None:
            await send(data)
            live.noted()

        ws._receive, ws._send = receive_noted, send_noted
        try:
            with live.scope:
                return await original(websocket_context)
            return None  # cancelled by the watch: the session ended
        finally:
            live.stop()
            watch = live.watch
            if watch is not None and watch.reason is not None:
                with trio.move_on_after(_CLOSE_TIMEOUT, shield=True):
                    await ws.close(CLOSE_CODE, f"session {watch.reason}")

    app.dispatch_websocket = dispatch_websocket  # type: ignore[method-assign]


#: Seconds the 1008 close of a websocket whose session ended may take.
_CLOSE_TIMEOUT: Final = 2.0
