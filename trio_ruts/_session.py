"""Session: the per-request handle on one session's fields in a store."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from functools import partial
from typing import Any, Final, TypeVar

import trio

from ._cookies import CookieOptions, CookieOptionsBuilder, as_cookie_options
from ._errors import (
    InvalidField,
    SerializationError,
    SessionError,
    SessionIdCollision,
    SessionStateError,
    StoreError,
    StoreTimeout,
)
from ._expiry import Expiry, default_expiry
from ._ids import SessionId
from ._ints import INT64_MAX, INT64_MIN, INT_FORMATS
from ._limits import MAX_TTL
from ._map import SessionMap, decode
from ._serializers import CborSerializer, Serializer
from ._store import Placement, Removal, SessionStore, Touch, Write, WriteResult
from ._strategy import unwrap
from ._tokens import IdHeader, as_id_header
from ._users import UserSession, check_label, check_user
from ._watch import Watch

T = TypeVar("T")

#: Longest field name, in UTF-8 bytes.
MAX_FIELD_BYTES: Final = 256
#: Seconds a rename may take to finish, shielded, once sent: its caller may be cancelled
#: meanwhile, but the session must learn where its data went.
RENAME_TIMEOUT: Final = 5.0
_DEFAULT_SERIALIZER: Final = CborSerializer()
#: The field a login writes (the user id) when it starts a session: a session exists while
#: it holds a field.
LOGIN_FIELD: Final = "user"


class CookieChange(enum.Enum):
    """What the response must do with the session cookie."""

    NONE = "none"
    SET = "set"
    CLEAR = "clear"


# Field names already found valid: apps use a handful of names on every request.
_VALID_FIELDS: dict[str, None] = {}
_VALID_FIELDS_MAX: Final = 1024


def check_field(field: object) -> str:
    """Validate a field name: 1-256 UTF-8 bytes, no control characters."""
    if type(field) is str and field in _VALID_FIELDS:
        return field
    if not isinstance(field, str):
        raise InvalidField(f"field names are str, not {type(field).__name__}")
    if not field or len(field.encode("utf-8", "surrogatepass")) > MAX_FIELD_BYTES:
        raise InvalidField(f"field names are 1 to {MAX_FIELD_BYTES} UTF-8 bytes long")
    if not field.isprintable():
        raise InvalidField(f"field name {field[:40]!r} contains control characters")
    if type(field) is str and len(_VALID_FIELDS) < _VALID_FIELDS_MAX:
        _VALID_FIELDS[field] = None
    return field


def check_ttl(ttl: object, *, what: str = "ttl") -> int | None:
    """Validate a TTL argument: ``None``, ``-1``, ``0`` or a positive int of seconds, at
    most :data:`~trio_ruts._limits.MAX_TTL` (the longest lifetime every store keeps)."""
    if ttl is None:
        return None
    if type(ttl) is not int or ttl < -1:
        raise InvalidField(
            f"{what} must be None, -1 (never expires), 0 (remove) or a positive number of "
            f"seconds; got {ttl!r}"
        )
    if ttl > MAX_TTL:
        raise InvalidField(
            f"{what} {ttl} is longer than stores keep (at most {MAX_TTL} seconds, about 68 "
            f"years); use -1 for a lifetime that never ends"
        )
    return ttl


class Session:
    """One session, loaded lazily: nothing touches the store until a method is awaited.

    A ``Session`` belongs to one request (or one websocket connection); it may be shared by
    that request's tasks. The id is taken as a claim only: reads of an unknown id find
    nothing, and a write to an id the store does not hold goes to a freshly minted id.

    Args:
        store: an open :class:`~trio_ruts.stores.SessionStore`.
        id: the id from the client, or ``None``.
        cookie: cookie options; ``max_age`` is the cookie's lifetime, and the session's
            default one.
        serializer: encodes values (default :class:`~trio_ruts.CborSerializer`).
        expiry: the session's lifetimes (:class:`~trio_ruts.Expiry`); default
            ``Expiry(idle=cookie.max_age)``: reads and writes keep the session alive.
    """

    __slots__ = (
        "_age_override",
        "_cookie",
        "_cookie_change",
        "_cookie_ttl",
        "_expiry",
        "_frozen",
        "_id",
        "_id_header",
        "_id_lock",
        "_origin",
        "_pending",
        "_serializer",
        "_store",
        "_unsettled",
        "_verified",
        "_watches",
    )

    def __init__(
        self,
        store: SessionStore,
        id: SessionId | None = None,
        *,
        cookie: CookieOptions | CookieOptionsBuilder | None = None,
        serializer: Serializer | None = None,
        expiry: Expiry | None = None,
    ) -> None:
        if id is not None and not isinstance(id, SessionId):
            raise TypeError("id must be a SessionId or None; use SessionId.parse() on text")
        self._store = store
        self._cookie = as_cookie_options(cookie)
        if expiry is None:
            expiry = default_expiry(self._cookie.max_age)
        elif not isinstance(expiry, Expiry):
            raise TypeError(f"expiry must be an Expiry or None, not {type(expiry).__name__}")
        self._expiry = expiry
        self._serializer = _DEFAULT_SERIALIZER if serializer is None else serializer
        self._id = id
        self._verified = False  # the store is known to hold self._id
        self._pending: SessionId | None = None
        # The target of a rename whose outcome is unknown (it failed or timed out after it
        # was sent): the session is under self._id or under this id; the next call looks.
        self._unsettled: SessionId | None = None
        self._id_lock: trio.Lock | None = None
        self._cookie_change = CookieChange.NONE
        self._cookie_ttl: int | None = None  # the store's last word on the remaining lifetime
        self._age_override: int | None = None  # set_expiration()
        self._frozen: str | None = None  # why the id may no longer change
        self._id_header: IdHeader | None = None  # header mode: the id travels in this header
        self._origin: SessionId | None = None  # header mode: the id the request came with
        self._watches: _Watches | None = None  # open watches (see watch())

    @classmethod
    def from_cookie_header(
        cls,
        store: SessionStore,
        header: str | bytes | None,
        *,
        cookie: CookieOptions | CookieOptionsBuilder | None = None,
        serializer: Serializer | None = None,
        expiry: Expiry | None = None,
    ) -> Session:
        """The session named by a request's ``Cookie`` header (malformed: no session)."""
        options = as_cookie_options(cookie)
        found = options.session_id_from_header(header)
        return cls(store, found, cookie=options, serializer=serializer, expiry=expiry)

    @classmethod
    def from_id_header(
        cls,
        store: SessionStore,
        values: Iterable[str],
        *,
        id_header: str,
        cookie: CookieOptions | CookieOptionsBuilder | None = None,
        serializer: Serializer | None = None,
        expiry: Expiry | None = None,
    ) -> Session:
        """The session named by a request header instead of a cookie (API clients).

        Args:
            store: the session store.
            values: the request's values of that header.
            id_header: the header's name, e.g. ``"X-Session-Id"``; ``"Authorization"`` reads
                ``Bearer <id>``. Signing (``cookie.signing_keys``) applies as to cookies.
            cookie: cookie options: ``max_age`` and ``signing_keys`` apply; no cookie is set.
            serializer: as for :class:`Session`.
            expiry: as for :class:`Session`.

        The response then needs :meth:`response_header`: the new id in the same header when
        the id changed, an empty value when the session ended. A malformed or badly signed
        value reads as "no session", with no store call.
        """
        header = as_id_header(id_header)
        options = as_cookie_options(cookie)
        found = header.session_id(values, options)
        made = cls(store, found, cookie=options, serializer=serializer, expiry=expiry)
        made._id_header = header
        made._origin = found
        return made

    # -- state -------------------------------------------------------------------------------

    @property
    def id(self) -> SessionId | None:
        """The current id, or ``None`` when there is no session."""
        return self._id

    @property
    def store(self) -> SessionStore:
        return self._store

    @property
    def cookie_options(self) -> CookieOptions:
        return self._cookie

    @property
    def expiry(self) -> Expiry:
        """The session's lifetimes (the default, ``Expiry(idle=cookie.max_age)``, resolved)."""
        return self._expiry

    def _default_ttl(self) -> int:
        """The lifetime a write extends the session to: ``idle``, else the cookie's."""
        idle = self._expiry.idle
        return self._cookie.max_age if idle is None else idle

    @property
    def cookie_change(self) -> CookieChange:
        """What the response must do with the cookie, given what happened so far."""
        return self._cookie_change

    def cookie_header(self) -> str | None:
        """The ``Set-Cookie`` value the response needs, or ``None`` to leave the cookie alone
        (always ``None`` for a session whose id travels in a header)."""
        if self._id_header is not None:
            return None
        if self._cookie_change is CookieChange.CLEAR:
            return self._cookie.removal_header()
        if self._cookie_change is CookieChange.SET and self._id is not None:
            age = self._age_override
            if age is None:
                age = self._cookie_ttl if self._cookie_ttl is not None else self._cookie.max_age
            return self._cookie.set_cookie_header(self._id, age)
        return None

    def response_header(self) -> tuple[str, str] | None:
        """The ``(name, value)`` header the response needs, or ``None``: ``Set-Cookie`` as
        :meth:`cookie_header` says; in header mode (:meth:`from_id_header`), that header with
        the new id when the id changed (a new session, a rename) and an empty value when the
        session ended."""
        header = self._id_header
        if header is None:
            value = self.cookie_header()
            return None if value is None else ("Set-Cookie", value)
        current = self._id
        if current is None:
            if self._cookie_change is CookieChange.CLEAR and self._origin is not None:
                return (header.name, "")
            return None
        if self._origin is not None and current == self._origin:
            return None
        return (header.name, header.value(self._cookie, current))

    def freeze_id(self, reason: str) -> None:
        """Forbid id changes from now on (the cookie can no longer reach the client).

        Integrations call this, e.g. once a websocket handshake was answered. Later calls
        that would change the id raise :class:`~trio_ruts.SessionStateError` with ``reason``.
        """
        self._frozen = reason

    def _check_not_frozen(self) -> None:
        if self._frozen is not None:
            raise SessionStateError(
                f"the session id cannot change now: {self._frozen}; change it before the "
                f"cookie is sent (e.g. before websocket.accept())"
            )

    def _mark_set(self, ttl: int) -> None:
        self._cookie_change = CookieChange.SET
        self._cookie_ttl = ttl

    # -- reads -------------------------------------------------------------------------------

    async def get(self, field: str, default: Any = None) -> Any:
        """The field's value, or ``default`` when the session or field is absent or expired.

        With an idle timeout, the read also extends the session when its remaining lifetime
        fell below ``idle - touch_interval`` (in the same store round trip); the response
        then carries a cookie with the new ``Max-Age``.

        Raises:
            SerializationError: the stored bytes cannot be decoded (names the field).
        """
        check_field(field)
        if self._id is None:
            await trio.lowlevel.checkpoint()
            return default
        if self._unsettled is not None:
            await self._settle()
        touch = self._expiry._touch
        if touch is None:
            data = await self._store.get(self._id, field)
        else:
            read = await self._store.touch_get(self._id, field, touch)
            data = read.value
            if read.ttl is not None:
                self._verified = True
                self._mark_set(read.ttl)
        if data is None:
            return default
        self._verified = True
        return decode(self._serializer, field, data)

    async def get_all(self) -> SessionMap | None:
        """All live fields, decoded lazily, or ``None`` when there is no session."""
        if self._id is None:
            await trio.lowlevel.checkpoint()
            return None
        if self._unsettled is not None:
            await self._settle()
        touch = self._expiry._touch
        if touch is None:
            record = await self._store.get_all(self._id)
        else:
            record = await self._store.touch_get_all(self._id, touch)
        if record is None:
            return None
        self._verified = True
        if record.touched:
            self._mark_set(record.ttl)
        return SessionMap({k: f.value for k, f in record.fields.items()}, self._serializer)

    # -- writes ------------------------------------------------------------------------------

    async def insert(self, field: str, value: Any, ttl: int | None = None) -> bool:
        """Set ``field`` only if it is absent.

        Args:
            field: the field name.
            value: the value, or a layered strategy (``WriteThrough``, ``HotOnly``, ``ColdOnly``).
            ttl: ``None`` (lives with the session), seconds, ``-1`` (never expires), or ``0``
                (nothing to insert: returns ``False``).

        Returns:
            ``True`` if the field was written.

        Cancellation: the field is either written or untouched. A write that consumes a
        pending rename (:meth:`prepare_regenerate`) is completed like :meth:`regenerate`, so
        ``s.id`` follows the data; any other write keeps the session's id.
        """
        return await self._write(field, value, ttl, only_if_absent=True)

    async def update(self, field: str, value: Any, ttl: int | None = None) -> bool:
        """Set ``field`` whether or not it exists; ``ttl=0`` removes it instead.

        Returns:
            ``True`` if the field was written (or, with ``ttl=0``, removed).

        Cancellation: the field is either written or untouched. A write that consumes a
        pending rename (:meth:`prepare_regenerate`) is completed like :meth:`regenerate`, so
        ``s.id`` follows the data; any other write keeps the session's id.
        """
        return await self._write(field, value, ttl, only_if_absent=False)

    async def incr(self, field: str, by: int = 1, ttl: int | None = None) -> int:
        """Add ``by`` to the integer in ``field`` (absent: ``0``) in one atomic store step,
        and return the new value; ``get`` returns it as an ``int``. Concurrent calls never
        lose an update.

        Args:
            field: the field name.
            by: the increment, negative to subtract; signed 64 bits.
            ttl: as for :meth:`update`, except that ``0`` is refused.

        Returns:
            The field's new value.

        Raises:
            SessionError: the field holds something other than a signed 64-bit integer, or
                the result would leave signed 64 bits (names the field; nothing changed);
                or the session's serializer has no ``int_format`` (``"cbor"`` or
                ``"json"``) telling stores how it encodes integers.
            InvalidField: ``by`` is not an int in signed 64 bits, or ``ttl=0``.

        Cancellation: the field is either incremented or untouched. Like :meth:`update`, it
        creates the session if there is none (an unknown id is never adopted: a new session
        gets a fresh id) and consumes a pending rename (:meth:`prepare_regenerate`).
        """
        check_field(field)
        if type(by) is not int or not INT64_MIN <= by <= INT64_MAX:
            raise InvalidField(f"by must be an int in signed 64 bits; got {by!r}")
        if check_ttl(ttl) == 0:
            raise InvalidField("incr() takes no ttl=0: use pop() or remove() to remove")
        _refuse_randomized(self._serializer, "incr", "add to the integer in place")
        int_format = getattr(self._serializer, "int_format", None)
        if int_format not in INT_FORMATS:
            raise SessionError(
                f"incr() needs to know how {self._serializer!r} encodes integers: give the "
                f"serializer class an int_format attribute, 'cbor' or 'json'"
            )
        result = await self._send(field, None, ttl, incr=by, int_format=int_format)
        if result.value is None:
            raise StoreError(
                f"{type(self._store).__name__} did not return the new value of field "
                f"{field!r}: the store must implement Write.incr to support incr()"
            )
        number = decode(self._serializer, field, result.value)
        if type(number) is not int:
            raise SerializationError(
                f"field {field!r}: the store returned a {type(number).__name__}, not an int",
                field=field,
            )
        return number

    async def update_if(
        self, field: str, expected: Any, value: Any, ttl: int | None = None
    ) -> bool:
        """Set ``field`` to ``value`` only if its current value equals ``expected``, in one
        atomic store step (compare and set): of concurrent calls expecting the same value,
        exactly one writes.

        Args:
            field: the field name.
            expected: the value the field must hold, compared as encoded by the session's
                serializer (byte for byte: ``1`` and ``1.0`` differ under CBOR). An absent
                field matches nothing.
            value: the new value, or a layered strategy (``WriteThrough``, ``HotOnly``,
                ``ColdOnly``).
            ttl: as for :meth:`update`, except that ``0`` is refused.

        Returns:
            ``True`` if the field was written. Without a session, or with an id the store
            does not hold, nothing is written and no session is created.

        Raises:
            InvalidField: ``ttl=0``, or a ``HotOnly`` value.
            SerializationError: ``expected`` or ``value`` cannot be encoded.

        Cancellation: the field is either written or untouched. A pending rename
        (:meth:`prepare_regenerate`) is consumed as by :meth:`update`, written or not.
        """
        check_field(field)
        if check_ttl(ttl) == 0:
            raise InvalidField("update_if() takes no ttl=0: use pop() or remove() to remove")
        if unwrap(value)[1] is Placement.HOT:
            raise InvalidField(
                "update_if() compares with the durable value: HotOnly values cannot take part"
            )
        _refuse_randomized(self._serializer, "update_if", "compare the encoded bytes")
        old = self._encode(field, expected)
        if self._id is None:  # no session: the field is absent
            await trio.lowlevel.checkpoint()
            return False
        return await self._write(field, value, ttl, only_if_absent=False, expected=old)

    def _encode(self, field: str, plain: Any) -> bytes:
        try:
            dumps_field = getattr(self._serializer, "dumps_field", None)
            if dumps_field is not None:  # a field-aware serializer (see Serializer)
                return dumps_field(field, plain)  # type: ignore[no-any-return]
            return self._serializer.dumps(plain)
        except Exception as exc:
            raise SerializationError(
                f"field {field!r}: {type(plain).__name__} value cannot be encoded by "
                f"{self._serializer!r} ({exc})",
                field=field,
            ) from exc

    async def _write(
        self,
        field: str,
        value: Any,
        ttl: int | None,
        *,
        only_if_absent: bool,
        expected: bytes | None = None,
    ) -> bool:
        check_field(field)
        ttl = check_ttl(ttl)
        if ttl == 0:
            if only_if_absent:
                await trio.lowlevel.checkpoint()
                return False
            return await self.remove(field)
        result = await self._send(
            field, value, ttl, only_if_absent=only_if_absent, expected=expected
        )
        return result.written

    async def _send(
        self,
        field: str,
        value: Any,
        ttl: int | None,
        *,
        only_if_absent: bool = False,
        expected: bytes | None = None,
        incr: int | None = None,
        int_format: str | None = None,
    ) -> WriteResult:
        """Write ``field`` (``value``, or the increment ``incr``) at the session's id."""
        pending = self._pending
        try:
            if incr is None:
                plain, placement, hot_ttl = unwrap(value)
                data = self._encode(field, plain)
            else:  # the store computes the value
                placement, hot_ttl, data = Placement.BOTH, None, b""
            write = partial(
                Write,
                field=field,
                value=data,
                only_if_absent=only_if_absent,
                field_ttl=ttl,
                key_ttl=self._default_ttl(),
                hot_ttl=hot_ttl,
                placement=placement,
                expected=expected,
                incr=incr,
                int_format=int_format,
                absolute=self._expiry.absolute,
                touch=self._expiry._touch,
            )
            if self._verified and pending is None:
                return await self._write_once(write)
            # The id may change (new session, unknown id, pending rename): one at a time, so
            # that concurrent first writes land in one session instead of minting one each.
            async with self._lock():
                if self._unsettled is not None:
                    await self._settle_locked()
                return await self._write_once(write)
        finally:
            # Consumed or failed, a pending id is used once; a newer one set meanwhile stays.
            if pending is not None and self._pending is pending:
                self._pending = None

    async def _write_once(self, make: Callable[..., Write]) -> WriteResult:
        """Send the write that ``make`` builds, given the ids, for the session's current id."""
        pending = self._pending
        if pending is not None or self._id is None:
            self._check_not_frozen()
        write = make(
            id=self._id,
            fresh_id=pending if pending is not None else self._fresh_id(),
            rename=pending is not None and self._id is not None,
        )
        try:
            if write.rename:
                result = await self._renaming_write(write)
            else:
                result = await self._store.write(write)
            if result.absent and write.expected is not None:
                return result  # an unknown id holds no field to compare: nothing is created
            if result.absent:
                # The store does not hold the client's id: start the session under a wholly
                # fresh id (no bit of an id the client chose reaches a real one). This second
                # round trip happens only for unknown ids.
                self._check_not_frozen()
                write = replace(write, id=None, fresh_id=SessionId.generate(), rename=False)
                result = await self._store.write(write)
        finally:
            if pending is not None and self._pending is pending:
                self._pending = None
        moved = result.id != write.id  # SessionId.__eq__ returns early for the same object
        if result.id != self._id:
            # The client's id was unknown (or expired meanwhile): the data went to a new
            # session, which watches of the old one do not follow (they end with it).
            self._check_not_frozen()
            self._id = result.id
        self._verified = True
        if result.written or moved:
            self._mark_set(result.ttl)
        if write.rename:
            await trio.lowlevel.checkpoint_if_cancelled()  # the caller's, held back by the shield
        return result

    async def _renaming_write(self, write: Write) -> WriteResult:
        """A write that moves the session to ``write.fresh_id`` (``prepare_regenerate``);
        the watches follow the move."""
        moved: SessionId | None = None
        self._watch_rename_begins()
        try:
            result = await self._shielded(write.fresh_id, lambda: self._store.write(write))
            if not result.absent and result.id != write.id:
                self._check_not_frozen()
                self._id, moved = result.id, write.id
        finally:
            self._watch_rename_ends(moved)
        return result

    def _fresh_id(self) -> SessionId:
        # With an id, the store never creates at fresh_id (an unknown id is reported absent
        # and created afresh above); it keeps the id's hash tag so both keys of the write
        # stay in one Redis Cluster slot.
        return SessionId.generate() if self._id is None else self._id.regenerate()

    def _lock(self) -> trio.Lock:
        if self._id_lock is None:
            self._id_lock = trio.Lock()
        return self._id_lock

    async def remove(self, field: str) -> bool:
        """Remove ``field``. Removing the last field ends the session and clears the cookie.

        Returns:
            ``True`` if the field existed; a missing field changes nothing.
        """
        removal = await self._remove(field)
        return removal is not None and removal.removed

    async def pop(self, field: str, default: Any = None) -> Any:
        """Remove ``field`` and return its value, in one atomic store step: of concurrent
        pops of one field (flash messages), exactly one gets the value. Cookie rules as for
        :meth:`remove`: popping the last field ends the session and clears the cookie.

        Returns:
            The removed value, or ``default`` when the session or field is absent (and then
            nothing changes).

        Raises:
            SerializationError: the stored bytes cannot be decoded (names the field); the
                field is removed nevertheless.

        Cancellation: the field is either removed (its value lost to this caller) or untouched.
        """
        removal = await self._remove(field)
        if removal is None or not removal.removed:
            return default
        if removal.value is None:
            raise StoreError(
                f"{type(self._store).__name__} removed field {field!r} but did not return its "
                f"value: the store must fill Removal.value to support pop()"
            )
        return decode(self._serializer, field, removal.value)

    async def _remove(self, field: str) -> Removal | None:
        """Remove ``field`` and update the id and cookie; ``None`` when there is no session."""
        check_field(field)
        if self._id is None:
            await trio.lowlevel.checkpoint()
            return None
        if self._unsettled is not None:
            await self._settle()
        removal = await self._store.remove(self._id, field)
        if removal.ttl is None:
            if removal.removed:
                self._drop_id()
        elif removal.removed:
            self._verified = True
            self._mark_set(removal.ttl)
        return removal

    async def delete(self) -> bool:
        """Delete the whole session and clear the cookie; a later write starts a new session
        under a new id.

        Returns:
            ``True`` if there was a session to delete.
        """
        if self._id is None:
            await trio.lowlevel.checkpoint()
            return False
        if self._unsettled is not None:
            await self._settle()
        deleted = await self._store.delete(self._id)
        self._drop_id()
        return deleted

    def _drop_id(self) -> None:
        self._id = None
        self._verified = False
        self._pending = None
        self._unsettled = None
        self._cookie_change = CookieChange.CLEAR

    async def expire(self, seconds: int) -> bool:
        """Set the session's remaining lifetime: seconds, ``-1`` persistent, ``0`` deletes;
        never beyond the absolute cap (``Expiry(absolute=...)``), where a session past it is
        gone.

        Returns:
            ``True`` if the session existed.
        """
        if check_ttl(seconds, what="seconds") is None:
            raise InvalidField("seconds must be -1, 0 or a positive number of seconds")
        if seconds == 0:
            return await self.delete()
        if self._id is None:
            await trio.lowlevel.checkpoint()
            return False
        if self._unsettled is not None:
            await self._settle()
        absolute = self._expiry.absolute
        if absolute is None:
            ttl: int | None = seconds if await self._store.expire(self._id, seconds) else None
        else:
            ttl = await self._store.expire_capped(self._id, seconds, absolute)
        if ttl is None:
            return False
        self._verified = True
        self._mark_set(ttl)
        return True

    async def touch(self) -> bool:
        """Extend the session to ``idle`` seconds from now (capped by ``absolute``), for
        long-lived connections that read nothing: a websocket, say. Without an idle timeout,
        the default lifetime (the cookie's ``max_age``) takes its place.

        Returns:
            ``True`` if there is a session (extended unless the cap stopped it, or it is
            persistent); ``False`` when there is none.

        Cancellation: the session is either extended or untouched.
        """
        if self._id is None:
            await trio.lowlevel.checkpoint()
            return False
        if self._unsettled is not None:
            await self._settle()
        idle = self._default_ttl()
        if idle == -1:  # persistent sessions: nothing to extend
            ttl = await self._store.touch(self._id, Touch(MAX_TTL, 0, self._expiry.absolute))
        else:
            ttl = await self._store.touch(self._id, Touch(idle, idle, self._expiry.absolute))
        if ttl is None:
            return False
        self._verified = True
        self._mark_set(ttl)
        return True

    def set_expiration(self, seconds: int) -> None:
        """Use ``seconds`` as the cookie's Max-Age for the rest of this request (``-1``: the
        longest browsers accept). The store is not touched; use :meth:`expire` for that."""
        if type(seconds) is not int or not (seconds > 0 or seconds == -1):
            raise InvalidField("seconds must be a positive number of seconds or -1")
        if self._id is not None and self._cookie_change is not CookieChange.CLEAR:
            self._cookie_change = CookieChange.SET
        self._age_override = seconds

    # -- renames -----------------------------------------------------------------------------

    async def regenerate(self) -> SessionId | None:
        """Move the session's data to a fresh id atomically (do it at login).

        Returns:
            The new id, or ``None`` if there is no session.

        Raises:
            SessionIdCollision: the new id exists already; both sessions are untouched.
            StoreTimeout: the store did not answer within ``RENAME_TIMEOUT`` (5) seconds; the
                session is under its old id or its new one, and the next call finds it.

        Cancellation: a call cancelled before it reached the store changes nothing. Once the
        rename is sent, it runs shielded for up to ``RENAME_TIMEOUT`` (5) seconds so that
        ``s.id`` follows the data; then the call raises ``Cancelled``, and ``s.id`` is the
        new id if the store moved the session.
        """
        if self._id is None:
            await trio.lowlevel.checkpoint()
            return None
        self._check_not_frozen()
        async with self._lock():
            if self._unsettled is not None:
                await self._settle_locked()
            old = self._id
            if old is None:
                return None
            new = old.regenerate()
            self._watch_rename_begins()
            try:
                ttl = await self._shielded(new, lambda: self._store.rename(old, new))
                if ttl is not None:
                    self._id = new
                    self._pending = None
                    self._verified = True
                    self._mark_set(ttl)
            finally:
                self._watch_rename_ends(None if self._id is old else old)
            await trio.lowlevel.checkpoint_if_cancelled()  # the caller's, held back by the shield
            return None if ttl is None else new

    async def _shielded(self, target: SessionId, call: Callable[[], Awaitable[T]]) -> T:
        """Run ``call``, a store call that may move the session to ``target``, so that its
        outcome reaches this session even if the caller is cancelled meanwhile.

        A caller cancelled already sends nothing. Once sent, the call is shielded for up to
        :data:`RENAME_TIMEOUT` seconds; the caller applies the result, then re-raises its own
        cancellation with a checkpoint. If the call fails or times out, the outcome is unknown
        and the next call of this session settles it (see :meth:`_settle_locked`).
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        with trio.move_on_after(RENAME_TIMEOUT, shield=True):
            try:
                return await call()
            except SessionIdCollision:
                raise  # nothing changed
            except BaseException:
                self._unsettle(target)
                raise
        self._unsettle(target)
        await trio.lowlevel.checkpoint_if_cancelled()
        raise StoreTimeout(
            f"the store did not confirm a session rename within {RENAME_TIMEOUT} s; the "
            f"session is under its old id or its new one, and its next call finds out which"
        )

    def _unsettle(self, target: SessionId) -> None:
        self._unsettled = target
        self._verified = False  # writes take the locked path, which settles first

    async def _settle(self) -> None:
        async with self._lock():
            await self._settle_locked()

    async def _settle_locked(self) -> None:
        """Find the session after a rename of unknown outcome: under the old id or the new.

        The old id is read first, so a rename that lands between the two reads is seen at
        the new id. If the old id still holds the session, the rename is taken as not done.
        """
        target, old = self._unsettled, self._id
        if target is None or old is None:
            self._unsettled = None
            return
        if await self._store.get_all(old) is not None:
            self._unsettled = None
            self._verified = True
            return
        record = await self._store.get_all(target)
        self._unsettled = None
        if record is not None:
            self._id = target
            self._verified = True
            self._mark_set(record.ttl)
            self._watch_rename_begins()  # the rename of unknown outcome moved it: follow
            self._watch_rename_ends(old)

    def prepare_regenerate(self) -> SessionId:
        """Choose a new id now; the next write (``insert``, ``update``, ``update_if``,
        ``incr``) writes and moves the session to it in one atomic store call. Calling it
        again replaces the pending id. If that write fails, the session keeps its old id and
        the pending id is dropped; if it failed after reaching the store (``StoreError``,
        ``StoreTimeout``), the next call checks which of the two ids the store holds the
        session under, and follows it.

        Returns:
            The id the session will have after the next write.
        """
        self._check_not_frozen()
        self._pending = SessionId.generate() if self._id is None else self._id.regenerate()
        return self._pending

    # -- users (SPEC section 9) ---------------------------------------------------------------

    async def login(self, user: str, *, label: str | None = None) -> SessionId:
        """Log the session in as ``user``: move it to a fresh id (session-fixation defence)
        and record it in the store's per-user index, in one atomic store step where the store
        allows it (see docs/users.md). A request without a session starts one first, holding
        the field ``"user"`` (the user id): a session exists while it holds a field.

        Args:
            user: the user id (str, 1-1024 UTF-8 bytes); stores key their index by its hash.
            label: free text for a device list, e.g. a User-Agent (at most 1024 UTF-8 bytes).

        Returns:
            The session's new id.

        Raises:
            InvalidField: ``user`` or ``label`` is not acceptable (the message does not
                repeat them).
            SessionIdCollision: the fresh id exists already; nothing changed.

        Cancellation: as for :meth:`regenerate`; the session is either logged in under its
        new id or untouched under its old one, and never outside the index.
        """
        check_user(user)
        check_label(label)
        self._check_not_frozen()
        for _ in range(3):
            if self._id is None:  # start a session: it exists while it holds a field
                await self.insert(LOGIN_FIELD, user)
            async with self._lock():
                if self._unsettled is not None:
                    await self._settle_locked()
                old = self._id
                if old is None:
                    continue
                new = old.regenerate()
                idle = self._default_ttl()
                call = partial(self._store.login, old, new, user, label, idle)
                self._watch_rename_begins()
                try:
                    ttl = await self._shielded(new, call)
                    if ttl is not None:
                        self._id = new
                finally:
                    # Our own login moves our watches with the session; a fresh session
                    # (below) is not theirs.
                    self._watch_rename_ends(None if self._id is old else old)
                if ttl is None:  # unknown to the store, or ended meanwhile: start afresh
                    self._drop_id()
                    continue
                self._pending = None
                self._verified = True
                self._mark_set(ttl)
                await trio.lowlevel.checkpoint_if_cancelled()
                return new
        raise StoreError(f"{type(self._store).__name__} lost the session three times during login")

    async def user(self) -> str | None:
        """The user this session is logged in as (:meth:`login`), or ``None``."""
        if self._id is None:
            await trio.lowlevel.checkpoint()
            return None
        if self._unsettled is not None:
            await self._settle()
        return await self._store.session_user(self._id)

    async def logout(self) -> bool:
        """End the session and remove it from its user's index; the cookie is cleared.

        Returns:
            ``True`` if there was a session to end.
        """
        if self._id is None:
            await trio.lowlevel.checkpoint()
            return False
        if self._unsettled is not None:
            await self._settle()
        ended = await self._store.logout(self._id)
        self._drop_id()
        return ended

    async def user_sessions(self) -> list[UserSession]:
        """The live sessions of this session's user, this one marked ``current``; empty when
        it is not logged in."""
        user = await self.user()
        if user is None:
            return []
        return await self._store.user_sessions(user, current=self._id)

    async def revoke_others(self) -> int:
        """End every other session of this session's user ("log out other devices").

        Returns:
            How many sessions were ended (``0`` when not logged in).
        """
        user = await self.user()
        if user is None:
            return 0
        return await self._store.revoke_user(user, keep=self._id)

    # -- live revocation -------------------------------------------------------------------------

    def watch(self) -> Watch:
        """Watch the session: ``async with session.watch() as w:`` runs its body until the
        session ends elsewhere (deleted, revoked, renamed by another request, or expired),
        then cancels the body; ``w.reason`` says why (``None`` if the body ended first).

        Another instance's ``delete()`` reaches the watch through the store's notifications
        (Redis pub/sub, Postgres ``LISTEN``/``NOTIFY``; in-process for the memory store),
        emitted by the same atomic step that ends the session. Expiry is a deadline,
        rechecked with the store when it passes (a touch elsewhere may have extended it),
        and at once when another request shortens the lifetime (a "recheck" notice).
        Renames by this session itself (``regenerate()``, ``login()``) do not end the watch:
        it follows the new id. Its own ``delete()`` does end it (``"deleted"``), and a new
        session that a later write starts is not followed.

        Raises (on entering):
            SessionStateError: there is no session (no id).
            StoreError: the store could not subscribe to its notifications.

        Cancellation: leaving the block, however, stops the watch; it leaves no task behind.
        """
        return Watch(self)

    def _watch_state(self) -> _Watches:
        if self._watches is None:
            self._watches = _Watches()
        return self._watches

    def _watch_add(self, watch: Watch) -> None:
        self._watch_state().open.add(watch)

    def _watch_discard(self, watch: Watch) -> None:
        if self._watches is not None:
            self._watches.open.discard(watch)

    def _watch_renaming(self) -> bool:
        return self._watches is not None and self._watches.renaming > 0

    def _watch_rename_begins(self) -> None:
        """A rename of our own is about to be sent: until it returns, a "renamed" notice of
        a watched id may be its own, and is held (see :meth:`_watch_rename_ends`)."""
        self._watch_state().renaming += 1

    def _watch_rename_ends(self, moved: SessionId | None) -> None:
        """Our rename returned (or failed): it moved the session away from ``moved`` (its
        watches follow to the current id), or it moved nothing (``None``: a notice held
        meanwhile was another request's, and ends its watch)."""
        watches = self._watch_state()
        watches.renaming -= 1
        for watch in list(watches.open):
            watch._own_rename_done(moved)

    def __repr__(self) -> str:
        state = "none" if self._id is None else ("known" if self._verified else "unverified")
        return f"<Session {state} store={type(self._store).__name__}>"


def _refuse_randomized(serializer: Serializer, operation: str, what: str) -> None:
    """Refuse an operation that needs the store to understand encoded values, for a serializer
    whose encodings of one value differ on every call (``randomized``, as encryption)."""
    if getattr(serializer, "randomized", False):
        raise SessionError(
            f"{operation}() is not supported with {serializer!r}: its values are encrypted "
            f"with a fresh nonce each time, so the store cannot {what}; keep such a field "
            f"in a session whose serializer does not encrypt, or use get() and update()"
        )


class _Watches:
    """A session's open watches, and whether a rename of its own is in flight."""

    __slots__ = ("open", "renaming")

    def __init__(self) -> None:
        self.open: set[Watch] = set()
        self.renaming = 0
