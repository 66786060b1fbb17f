"""Quart's own ``session`` (a dict) kept field by field in a trio-ruts store.

Imported through :mod:`trio_ruts.quart`; see docs/quart.md ("Quart's dict session on a store").
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

import trio
from quart.sessions import SessionInterface, SessionMixin

from ._cookies import CookieOptions, CookieOptionsBuilder, as_cookie_options
from ._errors import SessionStateError, SessionUsageError, StoreNotOpen
from ._expiry import Expiry, default_expiry
from ._map import SessionMap
from ._serializers import CborSerializer, Serializer
from ._session import Session, check_field
from ._store import SessionStore
from ._tokens import as_id_header

if TYPE_CHECKING:
    from quart import Quart
    from quart.wrappers import BaseRequestWebsocket

_UNDECODED: Final = object()
# Values that cannot be changed in place: a read of one is never written back.
_IMMUTABLE: Final = frozenset({str, int, float, bool, bytes, type(None)})
_WEBSOCKET_REASON: Final = "the websocket ended; its handshake response is long gone"


def _greenback() -> Any:
    # Imported on use: only ServerSessionInterface needs it, not the rest of trio_ruts.quart.
    try:
        import greenback
    except ImportError:
        raise ImportError(
            "ServerSessionInterface needs the greenback package: "
            'pip install "trio-ruts[quart]" (or pip install greenback)'
        ) from None
    return greenback


def check_store_serving(store: SessionStore) -> None:
    """Raise :class:`~trio_ruts.StoreNotOpen` with Quart's advice when ``store`` was never
    opened (a closed store keeps its own error)."""
    if not store._closed:
        raise not_serving(store)


def not_serving(store: SessionStore) -> StoreNotOpen:
    """The error for a store used by a Quart app that has not started serving."""
    return StoreNotOpen(
        f"the session store ({type(store).__name__}) is not open: the Quart app has not "
        f"started serving (the store opens when it does). In tests, use "
        f"`async with app.test_app(): client = app.test_client()`; or open the store "
        f"yourself with `async with store:` around the app's use"
    )


def request_session(
    kind: type[Session],
    store: SessionStore,
    headers: Any,
    id_header: str | None,
    cookie: CookieOptions,
    serializer: Serializer | None,
    expiry: Expiry | None,
) -> Session:
    """The session a request's headers name (a ``kind``): by ``id_header`` when given, else
    by the ``Cookie`` header."""
    if id_header is not None:
        return kind.from_id_header(
            store,
            headers.getlist(id_header),
            id_header=id_header,
            cookie=cookie,
            serializer=serializer,
            expiry=expiry,
        )
    return kind.from_cookie_header(
        store,
        "; ".join(headers.getlist("Cookie")),
        cookie=cookie,
        serializer=serializer,
        expiry=expiry,
    )


class ServerSession(SessionMixin):
    """Quart's ``session`` dict, backed by a :class:`~trio_ruts.Session`.

    Nothing is read until the dict is first used: then the whole session is loaded with one
    store call (``get_all``, which also slides an idle timeout). Assigning a key needs no
    load. At the end of the request, :class:`ServerSessionInterface` writes back only the
    keys that changed, field by field: keys assigned, keys deleted, and keys read whose
    value was changed in place (``session["cart"].append(...)``: no ``modified = True``
    needed). Two requests that change different keys therefore lose nothing.

    ``clear()`` ends the session (keys set afterwards go to a new session under a new id);
    :meth:`regenerate` moves the session to a new id at the end of the request (do it at
    login).
    """

    def __init__(self, session: Session, unusable: StoreNotOpen | None = None) -> None:
        self._session = session
        self._unusable = unusable  # the store could not be opened: raise on first use
        self._map: SessionMap | None = None
        self._data: dict[str, Any] = {}  # loaded and assigned keys (values decoded lazily)
        self._loaded = session.id is None  # nothing to load without an id
        self._assigned: set[str] = set()
        self._read: set[str] = set()
        self._removed: set[str] = set()
        self._cleared = False
        self._regenerate = False
        self.modified = False
        self.accessed = False

    # -- loading -------------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._unusable is not None:
            raise self._unusable

    def _load(self) -> None:
        self._check_usable()
        self.accessed = True
        if self._loaded:
            return
        if not _greenback().has_portal():
            raise SessionStateError(
                "Quart's session was first used in a task other than the request's own: "
                "read it once in the request handler before starting other tasks"
            )
        found = _greenback().await_(self._session.get_all())
        self._loaded = True
        self._map = found
        if found is not None:
            for key in found:
                # A key assigned or deleted before the load keeps this request's word.
                if key not in self._assigned and key not in self._removed:
                    self._data[key] = _UNDECODED

    def _value(self, key: str) -> Any:
        value = self._data[key]
        if value is _UNDECODED:
            assert self._map is not None
            value = self._data[key] = self._map[key]
        if type(value) not in _IMMUTABLE:
            self._read.add(key)
        return value

    # -- the mapping ---------------------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        self._load()
        return self._value(key)

    def __setitem__(self, key: str, value: Any) -> None:
        self._check_usable()
        check_field(key)
        self._encode(key, value)  # fail in the handler, not after it
        self.accessed = self.modified = True
        self._data[key] = value
        self._assigned.add(key)
        self._removed.discard(key)

    def __delitem__(self, key: str) -> None:
        self._load()
        del self._data[key]
        self.modified = True
        self._assigned.discard(key)
        self._read.discard(key)
        self._removed.add(key)

    def __contains__(self, key: object) -> bool:
        self._load()
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(list(self._data))

    def __len__(self) -> int:
        self._load()
        return len(self._data)

    def clear(self) -> None:
        """End the session: at the end of the request it is deleted (the cookie cleared);
        keys set after ``clear()`` start a new session under a new id."""
        self._check_usable()
        self.accessed = self.modified = True
        self._loaded, self._map, self._cleared = True, None, True
        self._data.clear()
        self._assigned.clear()
        self._read.clear()
        self._removed.clear()

    def regenerate(self) -> None:
        """Move the session to a fresh id at the end of the request (session-fixation
        defence: call it when the user logs in). Without a session, nothing happens."""
        self._check_usable()
        self.accessed = self.modified = True
        self._regenerate = True

    @property
    def permanent(self) -> bool:
        """Always ``True``: a server-side session lives as its :class:`~trio_ruts.Expiry`
        says, with a cookie whose Max-Age follows it."""
        return True

    @permanent.setter
    def permanent(self, value: bool) -> None:
        if not value:
            raise SessionUsageError(
                "server-side sessions have no browser-session cookies (permanent=False): "
                "their lifetime is the interface's expiry=Expiry(idle=..., absolute=...)"
            )

    @property
    def new(self) -> bool:  # type: ignore[override]
        """``True`` when the request brought no live session (known once loaded)."""
        return self._loaded and self._map is None

    def __repr__(self) -> str:
        state = "loaded" if self._loaded else "not loaded"
        return f"<ServerSession {state}, keys={sorted(self._data) if self._loaded else '?'}>"

    # -- saving --------------------------------------------------------------------------------

    def _encode(self, key: str, value: Any) -> bytes:
        return self._session._encode(key, value)

    def _changes(self) -> tuple[dict[str, Any], list[str]]:
        """The keys to write (with their values) and the keys to remove."""
        writes = {k: self._data[k] for k in self._assigned if k in self._data}
        for key in self._read - self._assigned:
            if key not in self._data or self._map is None or key not in self._map:
                continue
            value = self._data[key]
            if self._encode(key, value) != self._map.raw(key):
                writes[key] = value
        removes = [k for k in self._removed if self._map is not None and k in self._map]
        return writes, removes

    async def save(self) -> None:
        """Write back what changed: writes first, then removals (so that a session is not
        ended and recreated on the way), each one store call.

        Cancellation: each field is either written or untouched; a cancelled save leaves the
        fields written so far.
        """
        session = self._session
        writes, removes = self._changes()
        if self._cleared:
            await session.delete()
        if self._regenerate and session.id is not None:
            if writes:
                session.prepare_regenerate()  # the first write renames, in one store call
            else:
                await session.regenerate()
        for key, value in writes.items():
            await session.update(key, value)
        for key in removes:
            await session.remove(key)


class _StoreOwner:
    """Runs a store that an extension opened, in the app's nursery, until the app stops
    serving (``_close_store`` is an after-serving function)."""

    store: SessionStore
    _stop: trio.Event
    _stopped: trio.Event
    _owns_store: bool

    async def _run_store(
        self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            async with self.store:
                task_status.started()
                await self._stop.wait()
        finally:
            self._stopped.set()

    async def _close_store(self) -> None:
        if not self._owns_store:
            return
        self._stop.set()
        await self._stopped.wait()


class ServerSessionInterface(SessionInterface, _StoreOwner):
    """Quart's ``session`` dict on a trio-ruts store: install with
    ``app.session_interface = ServerSessionInterface(store, ...)`` (or :meth:`init_app`).

    ``from quart import session`` then works unchanged: loaded on first use (one store
    call), written back field by field after the request (only changed keys), with the
    cookie, fixation and lifetime rules of :class:`~trio_ruts.quart.Sessions`.

    Args:
        store: the session store. It is opened in the app's nursery on the first request
            and closed at shutdown; with :meth:`init_app` it opens when the app starts
            serving. A store already open is used as it is and left open.
        cookie: cookie options (the app's ``SESSION_COOKIE_*`` settings are not used).
        serializer: value serializer (default CBOR).
        expiry: session lifetimes; default ``Expiry(idle=cookie.max_age)``.
        id_header: read the session id from this header instead of the cookie, as for
            :class:`~trio_ruts.quart.Sessions`.
    """

    def __init__(
        self,
        store: SessionStore,
        *,
        cookie: CookieOptions | CookieOptionsBuilder | None = None,
        serializer: Serializer | None = None,
        expiry: Expiry | None = None,
        id_header: str | None = None,
    ) -> None:
        if not isinstance(store, SessionStore):
            raise TypeError(f"store must be a SessionStore, not {type(store).__name__}")
        _greenback()  # missing: say so now, not at the first request
        if expiry is not None and not isinstance(expiry, Expiry):
            raise TypeError(f"expiry must be an Expiry or None, not {type(expiry).__name__}")
        self.store = store
        self.cookie = as_cookie_options(cookie)
        self.serializer: Serializer = CborSerializer() if serializer is None else serializer
        self.expiry = default_expiry(self.cookie.max_age) if expiry is None else expiry
        self.id_header = None if id_header is None else as_id_header(id_header).name
        self._opening = trio.Lock()
        self._stop = trio.Event()
        self._stopped = trio.Event()
        self._owns_store = False

    def init_app(self, app: Quart) -> None:
        """Install on ``app`` and open the store when it starts serving (a store that
        cannot be reached then fails the startup, not the first request)."""
        # Quart annotates the attribute with its cookie interface's class.
        app.session_interface = self  # type: ignore[assignment]
        app.before_serving(self._open_on_startup)
        app.after_serving(self._close_store)

    # -- store lifetime ------------------------------------------------------------------------

    async def _open_on_startup(self) -> None:
        from quart import current_app

        await self._open_store(current_app._get_current_object())  # type: ignore[attr-defined]

    async def _open_store(self, app: Quart) -> None:
        async with self._opening:
            if self.store.is_open:
                return
            nursery: trio.Nursery | None = getattr(app, "nursery", None)
            if nursery is None or self.store._closed:
                check_store_serving(self.store)
            assert nursery is not None
            self._stop = trio.Event()
            self._stopped = trio.Event()
            try:
                await nursery.start(self._run_store)
            except RuntimeError as exc:  # the nursery of an earlier test_app(), now closed
                raise not_serving(self.store) from exc
            if not self._owns_store:
                self._owns_store = True
                if self._close_store not in app.after_serving_funcs:
                    app.after_serving_funcs.append(self._close_store)

    # -- Quart's interface ---------------------------------------------------------------------

    async def open_session(self, app: Quart, request: BaseRequestWebsocket) -> ServerSession:
        """Quart's hook before the handler: the request's session, not loaded yet (the
        first access loads it with one ``get_all``)."""
        unusable = None
        if not self.store.is_open:
            try:
                await self._open_store(app)
            except StoreNotOpen as exc:
                # Raised here, it would escape Quart's error handling (the request context
                # is not pushed yet): the handler's first use of the session raises it.
                unusable = exc
        found = request_session(
            Session,
            self.store,
            request.headers,
            self.id_header,
            self.cookie,
            self.serializer,
            self.expiry,
        )
        if found.id is not None and unusable is None:
            # The first use of the dict loads it from synchronous code (session["user"]):
            # greenback lets that code await the store in this task.
            await _greenback().ensure_portal()
        return ServerSession(found, unusable)

    async def save_session(self, app: Quart, session: SessionMixin, response: Any) -> None:
        """Quart's hook after the handler: writes the keys that changed, field by field,
        and sets or clears the cookie (or the id header)."""
        if not isinstance(session, ServerSession) or session._unusable is not None:
            return
        if response is None:  # after a websocket: no response to carry a new cookie
            session._session.freeze_id(_WEBSOCKET_REASON)
            try:
                await session.save()
            except SessionStateError:
                app.logger.error(
                    "Quart's session was changed in a websocket route in a way that needs a "
                    "new cookie (a new session or a new id); that change is lost: make it "
                    "in an HTTP request"
                )
            return
        await session.save()
        header = session._session.response_header()
        if header is not None:
            response.headers.add(*header)
        if session.accessed:
            response.vary.add(self.id_header or "Cookie")
