"""The embedded store: sessions in a dict, lifetimes on trio's clock, purged by a sweeper."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import trio

from .._cache import CacheEntry, CacheRead, HotLayer, Marker, Settled, next_floor, settles
from .._errors import SessionIdCollision
from .._ids import SessionId, SessionRef, id_digest, session_ref
from .._ints import incremented
from .._store import (
    FieldRecord,
    Read,
    Removal,
    SessionRecord,
    SessionStore,
    Touch,
    Write,
    WriteResult,
)
from .._users import UserEntry, last_seen, user_hash, utc_now
from .._watch import RECHECK

_NEVER = math.inf
_SWEEP_BATCH = 1000


class _Field:
    __slots__ = ("expires", "hot_ttl", "value")

    def __init__(self, value: bytes, expires: float | None, hot_ttl: int | None) -> None:
        self.value = value
        self.expires = expires  # None: lives with the session; inf: never
        self.hot_ttl = hot_ttl


class _Session:
    __slots__ = ("created", "expires", "fields", "idle", "label", "soonest", "user")

    def __init__(self, now: float) -> None:
        self.created = now  # the absolute cap counts from here; a rename keeps it
        self.expires = now  # inf: persistent
        self.fields: dict[str, _Field] = {}
        # No field with a lifetime of its own expires before this (inf: none has one), so
        # reads skip the scan for expired fields until then.
        self.soonest = _NEVER
        # Logged in (SPEC section 9): the user id, the label, the idle lifetime at login.
        self.user: str | None = None
        self.label: str | None = None
        self.idle = 0


class _CacheState:
    """The hot-layer protocol state of one session (see :mod:`trio_ruts._cache`)."""

    __slots__ = ("count", "deadline", "epoch", "floor", "markers")

    def __init__(self) -> None:
        self.count = 0  # changes in flight, until the deadline
        self.deadline = -_NEVER
        self.epoch = 0
        self.floor: int | None = None  # the newest cold version stamp settled; None: unknown
        self.markers: dict[str, tuple[Marker, float]] = {}  # field -> (marker, expires)

    def in_flight(self, now: float) -> int:
        return self.count if self.deadline > now else 0


#: A lapsed protocol state is forgotten this long after its deadline (a fill that started
#: before could otherwise take an absent state's epoch, 0, for its own).
_STATE_GRACE = 60.0


def _expiry(now: float, ttl: int) -> float:
    return _NEVER if ttl == -1 else now + ttl


def _remaining(now: float, expires: float) -> int:
    return -1 if expires == _NEVER else max(1, math.ceil(expires - now))


def _extend(entry: _Session, touch: Touch, now: float) -> bool:
    """Apply a touch: whether it extended the session."""
    expires = entry.expires
    if expires == _NEVER or expires - now >= touch.below:
        return False
    new = now + touch.idle
    if touch.absolute is not None:
        new = min(new, entry.created + touch.absolute)
    if new <= expires:
        return False
    entry.expires = new
    return True


def _purge_fields(entry: _Session, now: float) -> None:
    """Drop the session's expired fields and note when the next one expires."""
    soonest = _NEVER
    for name, found in list(entry.fields.items()):
        if found.expires is None:
            continue
        if found.expires <= now:
            del entry.fields[name]
        elif found.expires < soonest:
            soonest = found.expires
    entry.soonest = soonest


class MemoryStore(SessionStore, HotLayer):
    """Sessions in this process's memory, for development, tests and single-process apps.

    Lifetimes follow :func:`trio.current_time`, so tests can drive them with a mock clock.
    Each call runs without yielding after its checkpoint, which makes it atomic.

    Args:
        sweep_interval: seconds between purges of expired data. Expired data is invisible to
            reads immediately; the sweep only frees memory.
    """

    def __init__(self, *, sweep_interval: float = 60.0) -> None:
        if not sweep_interval > 0:
            raise ValueError("sweep_interval must be a positive number of seconds")
        self._sweep_interval = sweep_interval
        self._sessions: dict[bytes, _Session] = {}
        self._cache: dict[bytes, _CacheState] = {}  # hot-layer protocol state
        self._epochs = itertools.count(1)  # epochs are unique across sessions
        # Version stamps of writes (WriteResult.version): one counter for every session, so
        # an id used again never repeats an earlier stamp.
        self._versions = itertools.count(1)
        # The per-user index: user hash -> the keys of its sessions (entries of ended
        # sessions are dropped when the user's index is next used, and by the sweep).
        self._users: dict[bytes, dict[bytes, None]] = {}

    def __len__(self) -> int:
        """How many sessions are held, expired ones not yet purged included."""
        return len(self._sessions)

    async def _open(self, nursery: trio.Nursery) -> None:
        # Datetimes (UserSession) follow the store's clock, trio's, from this anchor on.
        self._anchor = (utc_now(), trio.current_time())
        nursery.start_soon(self._sweeper)

    async def _close(self) -> None:
        self._sessions.clear()

    async def _sweeper(self) -> None:
        while True:
            await trio.sleep(self._sweep_interval)
            await self.delete_expired()

    async def delete_expired(self) -> int:
        """Purge expired sessions and fields now; returns how many sessions were dropped.

        Works in batches with checkpoints in between, so a huge store does not stall others.
        """
        keys = list(self._sessions)
        before = len(self._sessions)
        for start in range(0, len(keys), _SWEEP_BATCH):
            await trio.lowlevel.checkpoint()
            now = trio.current_time()
            for key in keys[start : start + _SWEEP_BATCH]:
                self._live(key, now)
        now = trio.current_time()
        self._prune_users(now)
        for key, state in list(self._cache.items()):
            if state.deadline + _STATE_GRACE <= now and key not in self._sessions:
                del self._cache[key]
        return max(0, before - len(self._sessions))

    # -- synchronous core ------------------------------------------------------------------------

    def _live(self, key: bytes, now: float) -> _Session | None:
        """The live session under ``key`` with its expired fields purged, or ``None``."""
        entry = self._sessions.get(key)
        if entry is None:
            return None
        if entry.expires > now:
            if entry.soonest <= now:
                _purge_fields(entry, now)
            if entry.fields:
                return entry
        del self._sessions[key]
        return None

    def _apply(self, write: Write, now: float) -> WriteResult:
        id = write.id
        key = None if id is None else id.bytes
        found = None if key is None else self._live(key, now)
        absolute = write.absolute
        if found is not None and absolute is not None and found.created + absolute <= now:
            assert key is not None  # past its absolute lifetime: gone
            assert id is not None
            del self._sessions[key]
            self._watch_notify(id, "expired")
            found = None
        if id is not None and found is None:  # never adopted: the caller starts afresh
            return WriteResult(False, id, 0, absent=True, version=next(self._versions))
        refile = found is None or write.rename  # a new session, or one that moves
        if refile:
            target = write.fresh_id
            if self._live(target.bytes, now) is not None:
                raise SessionIdCollision(
                    "the new session id is already in use; nothing was changed"
                )
        else:
            assert id is not None  # a session was found under it
            target = id
        entry = _Session(now) if found is None else found
        fields = entry.fields
        before = entry.expires  # (a shorter lifetime is announced to watches)
        # The field's own end before the write (inf: none of its own; None: no such field).
        old_end = _field_end(fields[write.field]) if write.field in fields else None
        value = write.value
        if write.incr is not None:  # decided before anything changes: it may raise
            current = fields.get(write.field)
            value = incremented(
                None if current is None else current.value,
                write.incr,
                write.int_format or "cbor",
                write.field,
            )
        if write.expected is not None:
            current = fields.get(write.field)
            written = current is not None and current.value == write.expected
        else:
            written = not (write.only_if_absent and write.field in fields)
        if written:
            expires = _expiry(now, write.key_ttl)
            if write.field_ttl is None:  # the field lives with the session
                fields[write.field] = _Field(value, None, write.hot_ttl)
            else:
                own = _expiry(now, write.field_ttl)
                fields[write.field] = _Field(value, own, write.hot_ttl)
                entry.soonest = min(entry.soonest, own)
                expires = max(expires, own)
            if expires > entry.expires:
                entry.expires = expires
            if write.absolute is not None:
                entry.expires = min(entry.expires, entry.created + write.absolute)
            shorter = entry.expires < before or (
                old_end is not None and _field_end(fields[write.field]) < old_end
            )
            if shorter and id is not None and not refile:
                self._watch_notify(id, RECHECK)
        if refile and fields:  # (a compare and set on no session creates none)
            if key is not None:
                self._sessions.pop(key, None)
            self._sessions[target.bytes] = entry
            self._reindex(entry, key, target.bytes)
            if id is not None and found is not None:
                self._watch_notify(id, "renamed")
        result = WriteResult(written, target, _remaining(now, entry.expires))
        result.version = next(self._versions)
        if write.incr is not None:
            result.value = value
        return result

    # -- operations ------------------------------------------------------------------------------

    async def _enter(self, id: SessionId) -> tuple[_Session | None, float]:
        """How every operation on one session begins: the store is open, a checkpoint, the
        store's clock, and the live session (``None``: absent or expired)."""
        self._check_open()
        await trio.lowlevel.checkpoint()
        now = trio.current_time()
        return self._live(id.bytes, now), now

    async def get(self, id: SessionId, field: str) -> bytes | None:
        entry, _ = await self._enter(id)
        if entry is None:
            return None
        found = entry.fields.get(field)
        return None if found is None else found.value

    async def get_all(self, id: SessionId) -> SessionRecord | None:
        entry, now = await self._enter(id)
        if entry is None:
            return None
        return self._record(entry, now)

    @staticmethod
    def _record(entry: _Session, now: float) -> SessionRecord:
        fields = {
            name: FieldRecord(
                f.value, None if f.expires is None else _remaining(now, f.expires), f.hot_ttl
            )
            for name, f in entry.fields.items()
        }
        return SessionRecord(_remaining(now, entry.expires), fields)

    async def touch_get(self, id: SessionId, field: str, touch: Touch) -> Read:
        entry, now = await self._enter(id)
        if entry is None:
            return Read(None)
        found = entry.fields.get(field)
        value = None if found is None else found.value
        if _extend(entry, touch, now):
            return Read(value, _remaining(now, entry.expires))
        return Read(value)

    async def touch_get_all(self, id: SessionId, touch: Touch) -> SessionRecord | None:
        entry, now = await self._enter(id)
        if entry is None:
            return None
        touched = _extend(entry, touch, now)
        record = self._record(entry, now)
        record.touched = touched
        return record

    async def touch(self, id: SessionId, touch: Touch) -> int | None:
        entry, now = await self._enter(id)
        if entry is None:
            return None
        _extend(entry, touch, now)
        return _remaining(now, entry.expires)

    async def expire_capped(self, id: SessionId, seconds: int, absolute: int) -> int | None:
        entry, now = await self._enter(id)
        if entry is None:
            return None
        before = entry.expires
        entry.expires = min(_expiry(now, seconds), entry.created + absolute)
        if entry.expires <= now:
            del self._sessions[id.bytes]
            self._watch_notify(id, "expired")
            return None
        if entry.expires < before:
            self._watch_notify(id, RECHECK)
        return _remaining(now, entry.expires)

    async def write(self, write: Write) -> WriteResult:
        self._check_open()
        await trio.lowlevel.checkpoint()
        return self._apply(write, trio.current_time())

    async def remove(self, id: SessionId, field: str) -> Removal:
        entry, now = await self._enter(id)
        version = next(self._versions)
        if entry is None:
            return Removal(False, None, version=version)
        found = entry.fields.pop(field, None)
        value = None if found is None else found.value
        if not entry.fields:
            del self._sessions[id.bytes]
            self._watch_notify(id, "deleted")
            return Removal(found is not None, None, value, version)
        if found is not None:  # without it (whatever its lifetime), it may end sooner
            self._watch_notify(id, RECHECK)
        return Removal(found is not None, _remaining(now, entry.expires), value, version)

    async def delete(self, id: SessionId) -> bool:
        return await self._end_session(id)

    async def _end_session(self, id: SessionId, reason: str = "deleted") -> bool:
        self._check_open()
        await trio.lowlevel.checkpoint()
        existed = self._live(id.bytes, trio.current_time()) is not None
        self._sessions.pop(id.bytes, None)
        if existed:
            self._watch_notify(id, reason)
        return existed

    async def expire(self, id: SessionId, seconds: int) -> bool:
        entry, now = await self._enter(id)
        if entry is None:
            return False
        if seconds == 0:
            del self._sessions[id.bytes]
            self._watch_notify(id, "deleted")
            return True
        before, entry.expires = entry.expires, _expiry(now, seconds)
        if entry.expires < before:
            self._watch_notify(id, RECHECK)
        return True

    async def rename(self, old: SessionId, new: SessionId) -> int | None:
        entry, now = await self._enter(old)
        if entry is None:
            return None
        self._move(entry, old, new, now)
        return _remaining(now, entry.expires)

    def _move(self, entry: _Session, old: SessionId, new: SessionId, now: float) -> None:
        """Move the live session ``entry`` from ``old`` to ``new`` (its index entry and its
        watches follow), or raise before changing anything if ``new`` is taken."""
        if self._live(new.bytes, now) is not None:
            raise SessionIdCollision("the new session id is already in use; nothing was changed")
        del self._sessions[old.bytes]
        self._sessions[new.bytes] = entry
        self._reindex(entry, old.bytes, new.bytes)
        self._watch_notify(old, "renamed")

    # -- users (SPEC section 9) ----------------------------------------------------------------

    def _reindex(self, entry: _Session, old: bytes | None, new: bytes) -> None:
        """A logged-in session moved from ``old`` to ``new``: its index entry follows."""
        if entry.user is None:
            return
        index = self._users.setdefault(user_hash(entry.user), {})
        if old is not None:
            index.pop(old, None)
        index[new] = None

    def _wall(self, at: float) -> datetime:
        anchor, start = self._anchor
        return anchor + timedelta(seconds=at - start)

    def _user_live(self, hashed: bytes, key: bytes, now: float) -> _Session | None:
        entry = self._live(key, now)
        if entry is None or entry.user is None or user_hash(entry.user) != hashed:
            return None
        return entry

    def _user_index(self, user: str, now: float) -> tuple[bytes, dict[bytes, None]]:
        """The user's index, pruned of sessions that ended (by expiry or otherwise)."""
        hashed = user_hash(user)
        index = self._users.get(hashed, {})
        for key in [k for k in index if self._user_live(hashed, k, now) is None]:
            del index[key]
        if not index:
            self._users.pop(hashed, None)
        return hashed, index

    def _prune_users(self, now: float) -> None:
        for hashed, index in list(self._users.items()):
            for key in [k for k in index if self._user_live(hashed, k, now) is None]:
                del index[key]
            if not index:
                del self._users[hashed]

    async def login(
        self, old: SessionId, new: SessionId, user: str, label: str | None, idle: int
    ) -> int | None:
        entry, now = await self._enter(old)
        if entry is None:
            return None
        # One critical section (no await below): renamed and indexed together.
        self._move(entry, old, new, now)
        if entry.user is not None:  # logged in before (maybe as someone else)
            self._users.get(user_hash(entry.user), {}).pop(new.bytes, None)
        entry.user, entry.label, entry.idle = user, label, idle
        self._reindex(entry, None, new.bytes)
        self._user_index(user, now)
        return _remaining(now, entry.expires)

    async def session_user(self, id: SessionId) -> str | None:
        entry, _ = await self._enter(id)
        return None if entry is None else entry.user

    async def logout(self, id: SessionId) -> bool:
        entry, _ = await self._enter(id)
        if entry is None:
            return False
        del self._sessions[id.bytes]
        if entry.user is not None:
            self._users.get(user_hash(entry.user), {}).pop(id.bytes, None)
        self._watch_notify(id, "deleted")
        return True

    async def _user_entries(self, user: str, current: SessionId | None) -> list[UserEntry]:
        self._check_open()
        await trio.lowlevel.checkpoint()
        now = trio.current_time()
        wall = self._wall(now)
        _, index = self._user_index(user, now)
        mine = None if current is None else current.bytes
        found = []
        for key in index:
            entry = self._sessions[key]
            created = self._wall(entry.created)
            remaining = None if entry.expires == _NEVER else entry.expires - now
            seen = last_seen(wall, created, remaining, entry.idle)
            found.append(UserEntry(key, created, seen, entry.label, key == mine))
        return found

    async def _end_user_sessions(
        self, user: str, *, only: list[Any] | None = None, keep: SessionId | None = None
    ) -> list[Any]:
        self._check_open()
        await trio.lowlevel.checkpoint()
        _, index = self._user_index(user, trio.current_time())
        spare = None if keep is None else keep.bytes
        ended = [k for k in index if k != spare and (only is None or k in only)]
        for key in ended:
            del self._sessions[key]
            del index[key]
            self._watch_notify(SessionId(key), "revoked")
        return ended

    def _session_ref_of(self, ref: Any) -> SessionRef | None:
        return session_ref(SessionId(ref))

    # -- the hot-layer protocol (see trio_ruts._cache) ---------------------------------------

    def _state(self, key: bytes) -> _CacheState:
        state = self._cache.get(key)
        if state is None:
            state = self._cache[key] = _CacheState()
            state.epoch = next(self._epochs)  # never one an earlier lease holds
        return state

    def _drop(self, key: bytes, field: str | None) -> None:
        """Delete cached entries: one field's, or the whole session's."""
        state = self._cache.get(key)
        if field is None:
            self._sessions.pop(key, None)
            if state is not None:
                state.markers.clear()
            return
        entry = self._sessions.get(key)
        if entry is not None and entry.fields.pop(field, None) is not None and not entry.fields:
            del self._sessions[key]
        if state is not None:
            state.markers.pop(field, None)

    def _install(self, key: bytes, item: CacheEntry, now: float) -> None:
        expires = now + item.ttl
        if isinstance(item.value, Marker):
            self._drop(key, item.field)
            self._state(key).markers[item.field] = (item.value, expires)
            return
        entry = self._live(key, now)
        if entry is None:
            entry = self._sessions[key] = _Session(now)
        entry.fields[item.field] = _Field(item.value, expires, None)
        entry.soonest = min(entry.soonest, expires)
        entry.expires = max(entry.expires, expires)
        state = self._cache.get(key)
        if state is not None:
            state.markers.pop(item.field, None)

    async def cache_read(self, id: SessionId, field: str) -> CacheRead:
        self._check_open()
        await trio.lowlevel.checkpoint()
        now = trio.current_time()
        key = id.bytes
        entry = self._live(key, now)
        found = None if entry is None else entry.fields.get(field)
        state = self._cache.get(key)
        if found is not None:
            return CacheRead(found.value, 0 if state is None else state.epoch)
        state = self._state(key)  # a miss: the epoch is the lease of a fill
        marker = state.markers.get(field)
        if marker is not None and marker[1] > now:
            return CacheRead(marker[0], state.epoch)
        return CacheRead(None, state.epoch)

    async def cache_mark(self, id: SessionId, field: str | None, hold: float) -> int:
        self._check_open()
        await trio.lowlevel.checkpoint()
        now = trio.current_time()
        self._drop(id.bytes, field)
        state = self._state(id.bytes)
        state.count = state.in_flight(now) + 1
        state.deadline = max(state.deadline, now + hold)
        state.epoch = next(self._epochs)
        return state.epoch

    async def cache_settle(
        self,
        id: SessionId,
        field: str | None,
        epoch: int | None,
        entry: CacheEntry | None,
        *,
        known: bool,
        hold: float,
        version: int | None = None,
        ordered: bool = True,
    ) -> Settled:
        self._check_open()
        await trio.lowlevel.checkpoint()
        now = trio.current_time()
        key = id.bytes
        state = self._state(key)
        count = state.in_flight(now)
        alone = epoch == state.epoch and count == 1
        install = entry is not None and alone and settles(state.floor, version, ordered)
        state.floor = next_floor(state.floor, version, ordered=ordered, alone=alone, known=known)
        if known:
            if epoch is not None:  # this change's mark was counted: take it off
                state.count = max(0, count - 1)
        else:  # the outcome is unknown: hold the session as if a change were still in flight
            state.count = count + 1
            state.deadline = max(state.deadline, now + hold)
        self._drop(key, field)
        if install:
            assert entry is not None
            self._install(key, entry, now)
        state.epoch = next(self._epochs)
        return Settled(install, state.floor is not None)

    async def cache_forget(self, ref: SessionRef) -> None:
        self._check_open()
        await trio.lowlevel.checkpoint()
        # Keyed by id here: find it (a revocation is rare; a scan of what is cached).
        for key in {*self._sessions, *self._cache}:
            if id_digest(SessionId(key)) == ref.digest:
                state = self._state(key)
                state.floor = next_floor(state.floor, None, ordered=True, alone=False, known=True)
                self._drop(key, None)
                state.epoch = next(self._epochs)

    async def cache_fill(
        self, id: SessionId, lease: int, entries: Sequence[CacheEntry], ttl: int
    ) -> bool:
        self._check_open()
        await trio.lowlevel.checkpoint()
        now = trio.current_time()
        key = id.bytes
        state = self._cache.get(key)
        if state is None or state.epoch != lease or state.in_flight(now):
            return False
        for item in entries:
            self._install(key, item, now)
        return True

    async def cache_put(
        self,
        id: SessionId,
        entry: CacheEntry,
        *,
        only_if_absent: bool,
        create: bool,
        lease: int | None = None,
    ) -> bool | None:
        self._check_open()
        await trio.lowlevel.checkpoint()
        now = trio.current_time()
        found = self._live(id.bytes, now)
        if found is None and not create:
            return None
        if lease is not None:
            state = self._cache.get(id.bytes)
            if state is None or state.epoch != lease or state.in_flight(now):
                return False
        if only_if_absent and found is not None and entry.field in found.fields:
            return False
        self._install(id.bytes, entry, now)
        return True


def _field_end(field: _Field) -> float:
    """When a field ends by its own lifetime (``inf``: it has none, it lives with the
    session)."""
    return math.inf if field.expires in (None, _NEVER) else field.expires
