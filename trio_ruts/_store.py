"""The store interface: what a backend implements so that :class:`~trio_ruts.Session` can use it.

Stores only see bytes. A store keeps *sessions*, each addressed by a :class:`SessionId` and
holding *fields*; each field has a value and optionally a lifetime of its own. Every method
is one atomic step against the backend: concurrent callers never observe or cause a
half-applied change, and a cancelled call either happened entirely or not at all.

Lifetimes, as every store must implement them (seconds, decided by the backend's clock):

* a session's remaining lifetime (its *ttl*) is a positive number, or ``-1`` when it never
  expires; a session with no live field does not exist;
* a field's own ttl is ``None`` (it lives as long as its session), a positive number, or ``-1``
  (it never expires, and writing it makes the session persistent);
* a write sets the session's expiry to ``max(current, now + key_ttl, now + field_ttl)``
  (``-1`` anywhere makes it persistent): a write never shortens a session;
* :meth:`SessionStore.expire` sets the session's remaining lifetime exactly (it may shorten);
* an expired field or session is invisible to every read at once, whether or not a
  background sweep has already purged it.

Stores that also keep *lifetimes* (idle timeout and absolute cap, see
:class:`~trio_ruts.Expiry`) record each session's creation time when they create it, keep it
across renames, and override four methods that have working defaults for stores that do not:
:meth:`SessionStore.touch_get`, :meth:`SessionStore.touch_get_all` (reads that extend the
session in the same atomic step), :meth:`SessionStore.touch` and
:meth:`SessionStore.expire_capped`; they also honour :attr:`Write.absolute`. A store that
ignores all of this keeps working: its sessions slide only on writes and have no cap.

A third-party store subclasses :class:`SessionStore`, implements the abstract methods and,
if it holds connections or runs tasks, :meth:`SessionStore._open` and
:meth:`SessionStore._close`. The contract test suite in ``tests/contract`` is the
executable form of these rules: plug a new store into its ``store`` fixture.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, suppress
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self

import trio

from ._errors import StoreNotOpen, UsersNotSupported
from ._ids import SessionId, SessionRef
from ._users import UserEntry, UserSession, check_user, wrap
from ._watch import WatchHub, watch_digest

#: Hot copies of persistent fields expire after this long unless configured otherwise.
DEFAULT_HOT_TTL_CAP: Final = 3600
#: How long a store's ``aclose`` may spend releasing connections when cancelled.
CLOSE_TIMEOUT: Final = 5.0


class Placement(enum.Enum):
    """Which layers of a :class:`~trio_ruts.stores.LayeredStore` a write goes to.

    Single stores write the field whatever the placement.
    """

    BOTH = "both"
    HOT = "hot"
    COLD = "cold"


@dataclass(slots=True)
class Write:
    """One field write, with everything a store needs to apply it atomically. Treat it as
    immutable (it is not frozen only because frozen dataclasses are slow to create).

    Attributes:
        id: the session's current id, or ``None`` when there is no session yet. An id the
            store does not hold is never adopted: nothing is written and the result says
            ``absent`` (the caller then creates the session under a wholly fresh id, so no
            bit of an id a client made up reaches a real one).
        fresh_id: where the session is created when ``id`` is ``None``, and where it moves
            to when ``rename`` is set. If it is already taken the store raises
            :class:`~trio_ruts.SessionIdCollision` and changes nothing. With an ``id``, it
            keeps ``id``'s hash tag (make it with ``id.regenerate()``), so both live in one
            cluster slot.
        field: the field name.
        value: the encoded value.
        only_if_absent: write only if the field is absent (``insert``); otherwise upsert.
        field_ttl: the field's own lifetime: ``None``, seconds ``> 0``, or ``-1``.
        key_ttl: the session's default lifetime: seconds ``> 0`` or ``-1``.
        rename: move the session to ``fresh_id`` in the same atomic step.
        hot_ttl: for layered stores, the longest lifetime of the field's hot copy; ``0``
            means "never cache this field hot". Other stores keep it, so that they can act
            as the cold layer, and otherwise ignore it.
        placement: for layered stores, which layers receive the write.
        expected: compare and set (``update_if``): when not ``None``, write only if the
            field's current live value equals these bytes exactly; otherwise nothing is
            written (``written=False``; a ``rename`` still happens). With ``id=None`` the
            field is absent, so nothing is written.
        incr: an increment (``Session.incr``): when not ``None``, ``value`` is ignored and
            the field becomes its current integer (absent: ``0``) plus ``incr``, encoded in
            ``int_format``; :attr:`WriteResult.value` returns the new encoded value. A
            current value that is not a signed 64-bit integer, or a result outside signed 64
            bits, raises :class:`~trio_ruts.SessionError` naming the field, and nothing
            changes (no rename, no new session). ``trio_ruts._ints`` is the reference.
        int_format: how integers are encoded, with ``incr``: ``"cbor"`` or ``"json"``.
        absolute: the absolute cap (stores with lifetimes): when not ``None``, every lifetime
            this write computes, ``-1`` included, ends at the latest at the session's creation
            time plus ``absolute`` seconds; a session already past it counts as absent
            (``WriteResult.absent``). A new session records its creation time.
        touch: what the session's reads ask of the store (its idle timeout), for a
            LayeredStore: a hot copy must expire by the time a read has to extend the session
            in cold. Single stores ignore it.
    """

    id: SessionId | None
    fresh_id: SessionId
    field: str
    value: bytes
    only_if_absent: bool
    field_ttl: int | None
    key_ttl: int
    rename: bool = False
    hot_ttl: int | None = None
    placement: Placement = Placement.BOTH
    expected: bytes | None = None
    incr: int | None = None
    int_format: str | None = None
    absolute: int | None = None
    touch: Touch | None = None


@dataclass(frozen=True, slots=True)
class Touch:
    """What a touching read asks of the store (see :class:`~trio_ruts.Expiry`).

    Attributes:
        idle: extend the session to ``idle`` seconds from now (the store's clock) ...
        below: ... when its remaining lifetime is below ``below`` seconds (``idle`` minus the
            touch interval); a persistent session is never extended.
        absolute: never beyond the session's creation time plus ``absolute`` seconds
            (``None``: no cap). A session without a recorded creation time (written by an
            earlier release) is stamped now, so its cap counts from this touch at the latest.
    """

    idle: int
    below: float
    absolute: int | None = None


@dataclass(slots=True)
class Read:
    """What a touching field read found.

    Attributes:
        value: the field's bytes, or ``None``.
        ttl: the session's new remaining lifetime when this read extended it; ``None`` when
            it extended nothing (the usual case).
    """

    value: bytes | None
    ttl: int | None = None


@dataclass(slots=True)
class WriteResult:
    """What a write did.

    Attributes:
        written: the field was written (``False``: ``only_if_absent`` found it present,
            ``expected`` did not match, or the session is ``absent``).
        id: the id the session lives under after the call.
        ttl: the session's remaining lifetime after the call (seconds, or ``-1``).
        absent: the store does not hold ``Write.id``; nothing was written.
        value: with ``Write.incr``, the field's new encoded value.
        version: optional, for stores that can be a LayeredStore's cold layer: a *version
            stamp* of the change, issued inside the write's own atomic step. Stamps of the
            changes of one session id grow in the order the changes committed, and never
            repeat for that id, even after the session ended and the id was used again
            (a global counter or sequence does it). A call that changed nothing (an absent
            session) may carry one drawn anywhere in the call. ``None`` (the default): the
            store issues none, and a LayeredStore over it marks hot before each cold write
            rather than beside it (see docs/layered.md).
    """

    written: bool
    id: SessionId
    ttl: int
    absent: bool = False
    value: bytes | None = None
    version: int | None = None


@dataclass(slots=True)
class Removal:
    """What a field removal did.

    Attributes:
        removed: the field existed and is gone.
        ttl: the session's remaining lifetime, or ``None`` if the session no longer exists
            (it was absent, or its last field was removed).
        value: the removed field's value (``None`` when nothing was removed), read in the
            same atomic step, so that ``Session.pop`` hands it to exactly one caller.
        version: optional: the change's version stamp, as ``WriteResult.version`` (from
            the same sequence).
    """

    removed: bool
    ttl: int | None
    value: bytes | None = None
    version: int | None = None


@dataclass(slots=True)
class FieldRecord:
    """A live field as stored.

    Attributes:
        value: the encoded value.
        ttl: the field's own remaining lifetime: ``None`` (lives with the session), seconds,
            or ``-1`` (never expires).
        hot_ttl: the hot-layer policy recorded at write time (see :class:`Write`).
    """

    value: bytes
    ttl: int | None = None
    hot_ttl: int | None = None


@dataclass(slots=True)
class SessionRecord:
    """A whole live session: its remaining lifetime and its live fields (never empty);
    ``touched`` when the read that returned it extended the session (``ttl`` is then the new
    lifetime)."""

    ttl: int
    fields: Mapping[str, FieldRecord]
    touched: bool = False


class SessionStore(abc.ABC):
    """Base class of every store: an async context manager that owns a nursery.

    ``async with store:`` opens connections and starts background tasks inside the store's own
    nursery; leaving the block (or :meth:`aclose`) stops and releases all of them, also when
    cancelled. Calls before opening raise :class:`~trio_ruts.StoreNotOpen`; calls after
    closing raise :class:`trio.ClosedResourceError`.
    """

    _stack: SessionStore._Stack | None = None
    _nursery: trio.Nursery | None = None
    _closed: bool = False

    # -- lifecycle -----------------------------------------------------------------------------
    #
    # The store's nursery is opened by __aenter__ in the caller's task and left by __aexit__,
    # so it nests like any other context. Background tasks run in an inner nursery, held by a
    # task of the outer one: aclose() cancels that inner nursery and releases connections but
    # leaves no nursery itself. Closing in any order, from any task, is therefore safe.

    class _Stack(AsyncExitStack):
        """A store's exit stack, noting the stores entered on it (the layers of a layered
        store): an explicit ``aclose()`` releases them at once, as it releases its own."""

        def __init__(self) -> None:
            super().__init__()
            self.stores: list[SessionStore] = []

        async def enter_async_context(self, cm: AbstractAsyncContextManager[Any]) -> Any:
            entered = await super().enter_async_context(cm)
            if isinstance(cm, SessionStore):
                self.stores.append(cm)
            return entered

    @property
    def is_open(self) -> bool:
        """``True`` between a successful ``__aenter__`` and ``aclose``."""
        return self._nursery is not None and not self._closed

    async def __aenter__(self) -> Self:
        if self._stack is not None or self._closed:
            raise RuntimeError(f"{type(self).__name__} can be opened only once")
        stack = self._stack = self._Stack()
        background: trio.Nursery | None = None
        try:
            outer = await stack.enter_async_context(trio.open_nursery())
            background = await outer.start(self._run_background)
            await self._open(background)
            if self._closed:
                raise trio.ClosedResourceError(f"{type(self).__name__} was closed while opening")
        except BaseException:
            # Release what was opened before the failure (_close copes with a half-open
            # store), then leave the nursery cleanly so the caller sees the open error itself,
            # not an ExceptionGroup around it.
            self._closed = True
            # The open error is the one to report, not a failure to clean up after it.
            with trio.move_on_after(CLOSE_TIMEOUT, shield=True), suppress(Exception):
                await self._close()
            if background is not None:
                background.cancel_scope.cancel()
            self._stack = None
            await stack.aclose()
            raise
        self._nursery = background
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self._release()
        finally:
            await self._leave()

    async def aclose(self) -> None:
        """Stop background tasks and release every connection. Idempotent.

        Safe from any task and inside other ``async with`` blocks, in any order: it leaves
        no nursery itself. The store's (by then empty) nursery is left at the end of its
        ``async with`` block. Later calls raise :class:`trio.ClosedResourceError`.

        Cancellation: resources are still released, within a bounded shielded deadline.
        """
        await self._release()
        await trio.lowlevel.checkpoint()

    async def _release(self) -> None:
        """Release connections, then cancel the background tasks and release the stores
        entered on the exit stack; once, whatever the caller's cancellation."""
        if self._closed:
            return
        self._closed = True
        background, stack = self._nursery, self._stack
        if background is None or stack is None:  # never opened
            return
        try:
            with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
                await self._close()
        finally:
            background.cancel_scope.cancel()
            for store in reversed(stack.stores):
                await store._release()

    @staticmethod
    async def _run_background(
        *, task_status: trio.TaskStatus[trio.Nursery] = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with trio.open_nursery() as nursery:
            task_status.started(nursery)
            await trio.sleep_forever()

    async def _leave(self) -> None:
        """Leave what ``__aenter__`` entered: the contexts of :meth:`_open`, then the nursery."""
        stack, self._stack = self._stack, None
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()
        if stack is not None:
            await stack.aclose()

    async def _open(self, nursery: trio.Nursery) -> None:  # noqa: B027 - optional hook
        """Open connections and start background tasks in ``nursery``."""

    @property
    def _exit_stack(self) -> AsyncExitStack:
        """The store's own exit stack, for use in :meth:`_open`: contexts entered on it (an
        event loop, say) are left in reverse order at the end of the store's ``async with``
        block, after :meth:`_close`, inside the store's nursery. Stores entered on it are
        also released by an explicit :meth:`aclose`."""
        if self._stack is None:
            raise StoreNotOpen(f"{type(self).__name__} is not being opened")
        return self._stack

    async def _close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; runs shielded with a deadline before the nursery is cancelled."""

    def _check_open(self) -> None:
        """Raise unless the store may be used now (call it before the first await)."""
        if self._closed:
            raise trio.ClosedResourceError(f"{type(self).__name__} is closed")
        if self._nursery is None:
            raise StoreNotOpen(
                f"{type(self).__name__} is not open: use `async with store:` around its use"
            )

    # -- operations ----------------------------------------------------------------------------

    @abc.abstractmethod
    async def get(self, id: SessionId, field: str) -> bytes | None:
        """The field's value, or ``None`` if the session or field is absent or expired."""

    @abc.abstractmethod
    async def get_all(self, id: SessionId) -> SessionRecord | None:
        """The whole live session, or ``None``."""

    @abc.abstractmethod
    async def write(self, write: Write) -> WriteResult:
        """Apply ``write`` atomically (see :class:`Write`).

        Raises:
            SessionIdCollision: ``fresh_id`` was needed and is taken; nothing changed.
        """

    @abc.abstractmethod
    async def remove(self, id: SessionId, field: str) -> Removal:
        """Remove one field; removing the last live field ends the session. The result
        carries the removed value (``Removal.value``)."""

    @abc.abstractmethod
    async def delete(self, id: SessionId) -> bool:
        """Delete the whole session; ``True`` if it existed."""

    @abc.abstractmethod
    async def expire(self, id: SessionId, seconds: int) -> bool:
        """Set the session's remaining lifetime: ``> 0`` seconds, ``-1`` persistent, ``0``
        deletes. ``True`` if the session existed."""

    @abc.abstractmethod
    async def rename(self, old: SessionId, new: SessionId) -> int | None:
        """Move a session to a new id atomically, keeping fields and lifetimes. ``new`` keeps
        ``old``'s hash tag (``old.regenerate()``).

        Returns:
            The session's remaining lifetime under ``new``, or ``None`` if ``old`` is absent.

        Raises:
            SessionIdCollision: ``new`` already exists; both sessions are unchanged.
        """

    # -- lifetimes (optional: the defaults suit a store that keeps no creation time) --------

    async def touch_get(self, id: SessionId, field: str, touch: Touch) -> Read:
        """:meth:`get`, extending the live session as ``touch`` asks in the same atomic step
        (even when the field is absent): when its remaining lifetime is below
        ``touch.below``, it becomes ``touch.idle`` seconds, capped by ``touch.absolute``;
        :attr:`Read.ttl` reports an extension.

        The default reads without extending: sessions then slide on writes only.
        """
        return Read(await self.get(id, field))

    async def touch_get_all(self, id: SessionId, touch: Touch) -> SessionRecord | None:
        """:meth:`get_all`, extending the session as :meth:`touch_get` does;
        ``SessionRecord.touched`` reports an extension.

        The default reads without extending.
        """
        return await self.get_all(id)

    async def touch(self, id: SessionId, touch: Touch) -> int | None:
        """Extend the session as :meth:`touch_get` does, reading no field.

        Returns:
            The session's remaining lifetime after the call, or ``None`` if it is absent.

        The default is a read and then an :meth:`expire` (two steps, not atomic, no cap):
        override it.
        """
        record = await self.get_all(id)
        if record is None:
            return None
        if record.ttl != -1 and record.ttl < touch.below and await self.expire(id, touch.idle):
            return touch.idle
        return record.ttl

    async def expire_capped(self, id: SessionId, seconds: int, absolute: int) -> int | None:
        """:meth:`expire` (``seconds > 0`` or ``-1``), capped at the session's creation time
        plus ``absolute`` seconds; a session past that cap is gone.

        Returns:
            The session's remaining lifetime after the call, or ``None`` if it is absent.

        The default applies no cap.
        """
        return seconds if await self.expire(id, seconds) else None

    # -- users (optional: SPEC section 9) ------------------------------------------------------
    #
    # A store that keeps a per-user index overrides the five underscored methods below; the
    # public ones (user_sessions, revoke_user) are built on them. Every session that a user's
    # sessions end by (revoke_user, revoke_others, UserSession.revoke) goes through
    # _end_user_sessions.

    async def user_sessions(
        self, user: str, *, current: SessionId | None = None
    ) -> list[UserSession]:
        """The live sessions recorded under ``user``, the oldest first.

        Args:
            user: the user id given to ``Session.login``.
            current: the session asking, if any (it is marked ``current``).

        Raises:
            UsersNotSupported: the store keeps no per-user index.
        """
        check_user(user)
        return wrap(self, user, await self._user_entries(user, current))

    async def revoke_user(self, user: str, keep: SessionId | None = None) -> int:
        """End every live session of ``user`` but ``keep`` ("log out everywhere").

        Returns:
            How many sessions were ended.

        Cancellation: each session is either ended or untouched; run it again to finish.
        """
        check_user(user)
        if keep is not None and not isinstance(keep, SessionId):
            raise TypeError("keep must be a SessionId or None; use SessionId.parse() on text")
        return len(await self._end_user_sessions(user, keep=keep))

    async def login(
        self, old: SessionId, new: SessionId, user: str, label: str | None, idle: int
    ) -> int | None:
        """Rename ``old`` to ``new`` (as :meth:`rename`) and record the session under
        ``user`` in the same step where the store allows it (``idle``: its idle lifetime,
        from which ``last_seen`` is derived).

        Returns:
            The session's remaining lifetime, or ``None`` if ``old`` is absent.

        Raises:
            SessionIdCollision: ``new`` exists; nothing changed.
            UsersNotSupported: the store keeps no per-user index.
        """
        raise UsersNotSupported(f"{type(self).__name__} keeps no per-user index")

    async def session_user(self, id: SessionId) -> str | None:
        """The user the live session is logged in as, or ``None``."""
        raise UsersNotSupported(f"{type(self).__name__} keeps no per-user index")

    async def logout(self, id: SessionId) -> bool:
        """Delete the session and its index entry; ``True`` if it existed."""
        raise UsersNotSupported(f"{type(self).__name__} keeps no per-user index")

    async def _user_entries(self, user: str, current: SessionId | None) -> list[UserEntry]:
        """The user's live sessions, pruning index entries of sessions that ended."""
        raise UsersNotSupported(f"{type(self).__name__} keeps no per-user index")

    async def _end_user_sessions(
        self, user: str, *, only: list[Any] | None = None, keep: SessionId | None = None
    ) -> list[Any]:
        """End the user's live sessions (those whose internal reference is in ``only`` when
        given), except ``keep``; the one path by which a user's sessions are revoked.

        Returns:
            The internal references of the sessions it ended.
        """
        raise UsersNotSupported(f"{type(self).__name__} keeps no per-user index")

    def _session_ref_of(self, ref: Any) -> SessionRef | None:
        """How another store addresses the session an internal reference of this one names
        (a LayeredStore drops the hot copies of revoked sessions by it)."""
        return None

    # -- live revocation (SPEC section 10; see trio_ruts._watch) --------------------------------

    _watch_hub_state: WatchHub | None = None

    def _watch_hub(self) -> WatchHub:
        """The store's watch registry; its tasks (the notification source, the expiry timer)
        start in the store's nursery on first use."""
        self._check_open()
        hub = self._watch_hub_state
        if hub is None:
            assert self._nursery is not None
            hub = self._watch_hub_state = WatchHub(self)
            self._nursery.start_soon(hub.run, self._watch_listen)
        return hub

    async def _watch_listen(self, hub: WatchHub) -> None:
        """Deliver other instances' notifications to ``hub`` (:meth:`WatchHub.notify`), and
        call :meth:`WatchHub.connected` each time the subscription is (re-)established.

        The default serves stores whose operations notify in-process
        (:meth:`_watch_notify`) and have no other writers.
        """
        hub.connected()

    def _watch_notify(self, id: SessionId, reason: str) -> None:
        """Tell this process's watches of ``id`` that the session ended (``reason``)."""
        hub = self._watch_hub_state
        if hub is not None:
            hub.notify(watch_digest(id), reason)

    async def _end_session(self, id: SessionId, reason: str = "deleted") -> bool:
        """:meth:`delete`, telling the session's watches ``reason`` (``"deleted"`` or
        ``"revoked"``: the users index's revocations pass the latter).

        The default deletes; stores that notify override it.
        """
        return await self.delete(id)
