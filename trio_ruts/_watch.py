"""Live revocation (SPEC section 10): a watch ends its body when its session ends elsewhere.

Every store has one :class:`WatchHub`, made on first use: it maps session digests to the
watches open on them, runs one timer task for every watch's expiry, and is fed by the store's
notification source (Redis pub/sub, Postgres ``LISTEN``, or, for the memory store, the store's
own operations), which runs as one task in the store's nursery however many watches are open.

Notifications never carry a usable session id: they name a session by
:func:`watch_digest`, a hash of its id.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Final, Protocol

import trio

from ._errors import SessionError, SessionStateError, StoreError
from ._ids import SessionId, id_digest

if TYPE_CHECKING:
    from ._session import Session
    from ._store import SessionStore

_log = logging.getLogger("trio_ruts.watch")

#: Why a watch ended.
REASONS: Final = ("deleted", "revoked", "renamed", "expired")
#: The notice of a session whose lifetime may have become shorter (``expire()`` elsewhere, a
#: removed field without a lifetime of its own, a field given one): not an end, its watches
#: recheck the store now.
RECHECK: Final = "recheck"
#: Held instead of a reason (see Watch._own_rename_done): the watch stops, nothing ended.
_STOP: Final = ""
#: How long a new watch waits for its store's notification source to be ready.
SUBSCRIBE_TIMEOUT: Final = 5.0
#: Seconds before a recheck that failed (the store unreachable) is tried again.
RETRY_DELAY: Final = 1.0
#: A session whose remaining lifetime is below this many seconds is rechecked this often:
#: stores report whole seconds.
SHORT_RECHECK: Final = 0.2
#: A session found gone this close to its expected expiry (seconds) expired: stores report
#: lifetimes in whole seconds.
EXPIRY_SLACK: Final = 1.0
#: Rechecks in flight at once (after a reconnect every watch rechecks).
RECHECK_CONCURRENCY: Final = 32


def watch_digest(id: SessionId) -> str:
    """How notifications name a session: the first 32 hex digits of ``id_digest`` (SHA-256
    over the id's 16 bytes), by which the stores address it.

    The one place that decides it (the Postgres trigger computes the same from the row's
    key, the digest: ``left(encode(id, 'hex'), 32)``). It is not an id: a digest cannot be
    turned back into a cookie that works.
    """
    return id_digest(id).hex()[:32]


class Channels(Protocol):
    """A notification source that subscribes session by session (Redis Cluster's sharded
    pub/sub has no patterns): the hub asks for a session's channel when its first watch
    starts and gives it up when its last watch stops."""

    def want(self, id: SessionId) -> None:
        """Subscribe to the channel of ``id`` (returns at once; see :meth:`subscribed`)."""

    def drop(self, id: SessionId) -> None:
        """Unsubscribe from the channel of ``id`` (returns at once)."""

    async def subscribed(self, id: SessionId) -> None:
        """Return once the server acknowledged the subscription to the channel of ``id``
        (at once if it is not wanted)."""


class WatchHub:
    """The watches open on one store, and what ends them.

    The store's notification source calls :meth:`notify` (a session ended, by digest) and
    :meth:`connected` (its subscription is (re-)established: every watch rechecks the store,
    so a notification lost while it was down is not missed). A source that subscribes per
    session sets :attr:`channels` before its first :meth:`connected`, and calls
    :meth:`recheck` for the sessions whose subscription it re-established.
    """

    def __init__(self, store: SessionStore) -> None:
        self._store = store
        self._by_digest: dict[str, set[Watch]] = {}
        self._watches: set[Watch] = set()
        self._ready = trio.Event()
        self._wake = trio.Event()
        self._limiter = trio.CapacityLimiter(RECHECK_CONCURRENCY)
        self.subscriptions = 0  # how many times the source (re-)subscribed
        self.channels: Channels | None = None  # a per-session source (see Channels)

    def __len__(self) -> int:
        return len(self._watches)

    async def run(self, listen: Callable[[WatchHub], Awaitable[None]]) -> None:
        """The hub's tasks: the notification source and the expiry timer (store nursery)."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(listen, self)
            await self._timer(nursery)

    # -- the notification source's side --------------------------------------------------------

    def notify(self, digest: str, reason: str) -> None:
        """The session named by ``digest`` ended for ``reason``: end its watches. A
        :data:`RECHECK` notice ends nothing: the session's watches recheck the store now."""
        if reason == RECHECK:
            self.recheck(digest)
            return
        if reason not in REASONS:
            reason = "deleted"
        for watch in list(self._by_digest.get(digest, ())):
            watch._notified(reason)

    def connected(self) -> None:
        """The source is subscribed; after a reconnect every watch rechecks the store."""
        self.subscriptions += 1
        if self._ready.is_set():
            self.recheck_all()
        self._ready.set()

    def recheck_all(self) -> None:
        """Have every watch recheck the store soon (a check in flight is done again: its
        read may predate what the recheck is for)."""
        now = trio.current_time()
        for watch in self._watches:
            watch._recheck_soon(now)
        self._wake.set()

    def recheck(self, digest: str) -> None:
        """Have the watches of one session recheck the store soon (its subscription was
        re-established, or its lifetime may have become shorter)."""
        now = trio.current_time()
        for watch in self._by_digest.get(digest, ()):
            watch._recheck_soon(now)
        self._wake.set()

    # -- the watches' side ---------------------------------------------------------------------

    async def ready(self) -> None:
        with trio.move_on_after(SUBSCRIBE_TIMEOUT):
            await self._ready.wait()
            return
        raise StoreError(
            f"{type(self._store).__name__} could not subscribe to session notifications "
            f"within {SUBSCRIBE_TIMEOUT} s; is the server reachable?"
        )

    async def subscribed(self, id: SessionId) -> None:
        """Return once notifications about ``id`` can arrive (a per-session source
        acknowledged its subscription).

        Raises:
            StoreError: not within ``SUBSCRIBE_TIMEOUT``.
        """
        if self.channels is None:
            await trio.lowlevel.checkpoint()
            return
        with trio.move_on_after(SUBSCRIBE_TIMEOUT):
            await self.channels.subscribed(id)
            return
        raise StoreError(
            f"{type(self._store).__name__} could not subscribe to a session's notifications "
            f"within {SUBSCRIBE_TIMEOUT} s; is the server that holds it reachable?"
        )

    def add(self, watch: Watch, id: SessionId, digest: str) -> None:
        found = self._by_digest.get(digest)
        if found is None:
            found = self._by_digest[digest] = set()
            if self.channels is not None:
                self.channels.want(id)  # the session's first watch
        found.add(watch)
        self._watches.add(watch)

    def discard(self, watch: Watch, id: SessionId | None, digest: str | None) -> None:
        if id is not None and digest is not None:
            found = self._by_digest.get(digest)
            if found is not None:
                found.discard(watch)
                if not found:
                    del self._by_digest[digest]
                    if self.channels is not None:
                        self.channels.drop(id)  # its last watch
        self._watches.discard(watch)

    def reschedule(self) -> None:
        self._wake.set()

    # -- expiry --------------------------------------------------------------------------------

    async def _timer(self, nursery: trio.Nursery) -> None:
        """Recheck every watch whose session may have expired (or that a reconnect marked)."""
        while True:
            now = trio.current_time()
            soonest = math.inf
            for watch in list(self._watches):
                if watch._checking:
                    continue
                if watch._due <= now:
                    watch._checking = True
                    nursery.start_soon(self._recheck, watch)
                elif watch._due < soonest:
                    soonest = watch._due
            self._wake = trio.Event()
            with trio.move_on_at(soonest):
                await self._wake.wait()

    async def _recheck(self, watch: Watch) -> None:
        try:
            async with self._limiter:
                assert watch._id is not None
                await self.subscribed(watch._id)  # e.g. after the session's own rename
                # Gone by its expected end: it expired; earlier, something ended it.
                expired = trio.current_time() >= watch._ends - EXPIRY_SLACK
                await watch._check(gone="expired" if expired else "deleted")
        except (SessionError, trio.ClosedResourceError) as exc:
            _log.warning("a session watch could not recheck its session: %s", exc)
            watch._due = trio.current_time() + RETRY_DELAY
        finally:
            watch._checking = False
            self._wake.set()


class Watch:
    """A running watch of one session: ``async with session.watch() as w:``.

    Its body is cancelled when the session ends elsewhere; :attr:`reason` then says why
    (``"deleted"``, ``"revoked"``, ``"renamed"`` or ``"expired"``); it is ``None`` when the
    body ended first. Renames by the watching :class:`~trio_ruts.Session` itself
    (``regenerate()``) do not end it: the watch follows the session to its new id.
    """

    __slots__ = (
        "_asked",
        "_checking",
        "_digest",
        "_due",
        "_ends",
        "_held",
        "_hub",
        "_id",
        "_reason",
        "_scope",
        "_session",
    )

    def __init__(self, session: Session, scope: trio.CancelScope | None = None) -> None:
        self._session = session
        self._scope = trio.CancelScope() if scope is None else scope
        self._reason: str | None = None
        self._id: SessionId | None = None
        self._digest: str | None = None
        self._hub: WatchHub | None = None
        self._due = math.inf  # when the hub rechecks the store (trio time)
        self._ends = math.inf  # when the session expires, as last seen (trio time)
        self._checking = False
        self._asked = 0  # rechecks asked for: a check that began before the last one is stale
        self._held: str | None = None  # an end seen while the session's own rename ran

    @property
    def reason(self) -> str | None:
        """Why the session ended (``"deleted"``, ``"revoked"``, ``"renamed"`` or
        ``"expired"``), or ``None`` while it lives and when the body ended first."""
        return self._reason

    @property
    def cancel_scope(self) -> trio.CancelScope:
        """The scope the watch cancels when the session ends."""
        return self._scope

    def __repr__(self) -> str:  # never the id
        state = "open" if self._hub is not None else "closed"
        return f"<Watch {state} reason={self._reason!r}>"

    async def __aenter__(self) -> Watch:
        await self.start()
        self._scope.__enter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self.stop()
        # A reason set before stop() stays, however the body ended: the session ended while
        # it ran (in a shielded step, say, which then returned normally).
        return self._scope.__exit__(exc_type, exc, tb)

    # -- for integrations that hold the scope themselves ---------------------------------------

    async def start(self, *, if_held: bool = False) -> bool:
        """Begin watching: subscribe, then check the store. A session that already ended
        cancels the scope at once, with reason ``"deleted"``; with ``if_held``, it is not
        watched instead (``False`` is returned) and the scope is left alone.

        Returns:
            ``True`` when the session is watched, or the watch ended already (see
            :attr:`reason`); ``False`` only with ``if_held``, for a session the store does
            not hold.

        Raises:
            SessionStateError: the session has no id (nothing to watch), or the watch ran.
            StoreError: the store's notification source could not subscribe.
        """
        session = self._session
        if self._hub is not None or self._reason is not None or self._id is not None:
            raise SessionStateError("a watch runs once; call session.watch() again")
        if session.id is None:
            raise SessionStateError(
                "there is no session to watch: watch a session that the store holds "
                "(e.g. after the login request wrote it)"
            )
        hub = session.store._watch_hub()
        # One of the session's watches before the first await: a rename of its own from now
        # on is known to be its own (see _notified) and moves the watch.
        session._watch_add(self)
        try:
            await hub.ready()
            id = session.id  # now: a rename of its own may have moved it meanwhile
            if id is None:  # its own delete() meanwhile
                if if_held:
                    self.stop()
                    return False
                self._end("deleted")
                return True
            self._hub = hub
            self._move(id)
            # Subscribed before the check: an end between the two is not missed.
            await hub.subscribed(id)
            await self._check(gone=None if if_held else "deleted")
        except BaseException:
            self.stop()
            raise
        return self._hub is not None or self._reason is not None

    def stop(self) -> None:
        """Stop watching (idempotent); the scope is left alone."""
        hub, self._hub = self._hub, None
        if hub is not None:
            hub.discard(self, self._id, self._digest)
        self._session._watch_discard(self)

    # -- internals -------------------------------------------------------------------------------

    def _move(self, id: SessionId) -> None:
        """Watch ``id`` (the session's id, after a rename of its own)."""
        hub = self._hub
        if hub is None:
            return
        hub.discard(self, self._id, self._digest)
        self._id, self._digest = id, watch_digest(id)
        hub.add(self, id, self._digest)

    def _own_rename_done(self, moved: SessionId | None) -> None:
        """The session's own rename returned: if it moved this watch's id (``moved``), the
        watch follows to the session's new id; otherwise an end held meanwhile (another
        request's rename, a check that found the id gone) was not its doing: it ends the
        watch."""
        held, self._held = self._held, None
        hub, id = self._hub, self._session.id
        if hub is None:
            return
        if moved is not None and moved == self._id and id is not None:
            self._move(id)
            self._recheck_soon(trio.current_time())  # learn the new id's lifetime
            hub.reschedule()
        elif held == _STOP:
            self.stop()
        elif held is not None:
            self._end(held)

    def _recheck_soon(self, now: float) -> None:
        self._due = min(self._due, now)
        self._asked += 1

    def _notified(self, reason: str) -> None:
        if reason == "renamed" and self._session._watch_renaming():
            # The session's own rename is in flight: this may be its notice, or another
            # request's rename that won. Decided when ours returns (_own_rename_done).
            self._held = reason
            return
        self._end(reason)

    def _end(self, reason: str) -> None:
        if self._reason is None:
            self._reason = reason
        self._scope.cancel()
        hub, self._hub = self._hub, None
        if hub is not None:
            hub.discard(self, self._id, self._digest)

    async def _check(self, *, gone: str | None) -> None:
        """Ask the store whether the session lives, and when it may expire."""
        id, asked = self._id, self._asked
        assert id is not None
        record = await self._session.store.get_all(id)
        if self._hub is None or self._id is not id:
            return  # ended or moved meanwhile
        if record is None:
            if self._session._watch_renaming():
                # Moved by the session's own rename in flight, or gone: decided when it
                # returns (_own_rename_done); with no reason to end (a start with if_held), a
                # watch whose session was not moved stops.
                self._held = self._held or (gone if gone is not None else _STOP)
                self._due = math.inf
            elif gone is None:
                self.stop()
            else:
                self._end(gone)
            return
        ends = math.inf if record.ttl == -1 else float(record.ttl)
        # A session lives while one of its fields does: one whose fields all have lifetimes
        # of their own ends with the longest of them.
        own = [f.ttl for f in record.fields.values()]
        if own and all(t is not None and t != -1 for t in own):
            ends = min(ends, float(max(t for t in own if t is not None)))
        now = trio.current_time()
        self._ends = now + ends
        if ends == math.inf:
            self._due = math.inf
        elif ends <= 1:
            self._due = now + SHORT_RECHECK
        else:
            self._due = now + ends
        if self._asked != asked:
            # A recheck was asked for while the read was in flight (a reconnect, a notice):
            # the session may have ended after the read saw it live. Read again.
            self._due = now
        self._hub.reschedule()
