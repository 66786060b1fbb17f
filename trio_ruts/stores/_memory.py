"""The embedded store: sessions in a dict, lifetimes on trio's clock, purged by a sweeper."""

from __future__ import annotations

import math

import trio

from .._errors import SessionIdCollision
from .._ids import SessionId
from .._store import FieldRecord, Removal, SessionRecord, SessionStore, Write, WriteResult

_NEVER = math.inf
_SWEEP_BATCH = 1000


class _Field:
    __slots__ = ("expires", "hot_ttl", "value")

    def __init__(self, value: bytes, expires: float | None, hot_ttl: int | None) -> None:
        self.value = value
        self.expires = expires  # None: lives with the session; inf: never
        self.hot_ttl = hot_ttl


class _Session:
    __slots__ = ("expires", "fields", "soonest")

    def __init__(self, expires: float) -> None:
        self.expires = expires  # inf: persistent
        self.fields: dict[str, _Field] = {}
        # No field with a lifetime of its own expires before this (inf: none has one), so
        # reads skip the scan for expired fields until then.
        self.soonest = _NEVER


def _expiry(now: float, ttl: int) -> float:
    return _NEVER if ttl == -1 else now + ttl


def _remaining(now: float, expires: float) -> int:
    return -1 if expires == _NEVER else max(1, math.ceil(expires - now))


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


class MemoryStore(SessionStore):
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

    def __len__(self) -> int:
        """How many sessions are held, expired ones not yet purged included."""
        return len(self._sessions)

    async def _open(self, nursery: trio.Nursery) -> None:
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
        written = not (write.only_if_absent and write.field in fields)
        if written:
            expires = _expiry(now, write.key_ttl)
            if write.field_ttl is None:  # the field lives with the session
                fields[write.field] = _Field(write.value, None, write.hot_ttl)
            else:
                own = _expiry(now, write.field_ttl)
                fields[write.field] = _Field(write.value, own, write.hot_ttl)
                entry.soonest = min(entry.soonest, own)
                expires = max(expires, own)
            if expires > entry.expires:
                entry.expires = expires
        if refile:
            if key is not None:
                self._sessions.pop(key, None)
            self._sessions[target.bytes] = entry
        return WriteResult(written, target, _remaining(now, entry.expires))

    # -- operations ------------------------------------------------------------------------------

    async def get(self, id: SessionId, field: str) -> bytes | None:
        self._check_open()
        await trio.lowlevel.checkpoint()
        now = trio.current_time()
        entry = self._live(id.bytes, now)
        if entry is None:
            return None
        found = entry.fields.get(field)
        return None if found is None else found.value

    async def get_all(self, id: SessionId) -> SessionRecord | None:
        self._check_open()
        await trio.lowlevel.checkpoint()
        now = trio.current_time()
        entry = self._live(id.bytes, now)
        if entry is None:
            return None
        fields = {
            name: FieldRecord(
                f.value, None if f.expires is None else _remaining(now, f.expires), f.hot_ttl
            )
            for name, f in entry.fields.items()
        }
        return SessionRecord(_remaining(now, entry.expires), fields)

    async def write(self, write: Write) -> WriteResult:
        self._check_open()
        await trio.lowlevel.checkpoint()
        return self._apply(write, trio.current_time())

    async def remove(self, id: SessionId, field: str) -> Removal:
        self._check_open()
        await trio.lowlevel.checkpoint()
        now = trio.current_time()
        entry = self._live(id.bytes, now)
        if entry is None:
            return Removal(False, None)
        removed = entry.fields.pop(field, None) is not None
        if not entry.fields:
            del self._sessions[id.bytes]
            return Removal(removed, None)
        return Removal(removed, _remaining(now, entry.expires))

    async def delete(self, id: SessionId) -> bool:
        self._check_open()
        await trio.lowlevel.checkpoint()
        existed = self._live(id.bytes, trio.current_time()) is not None
        self._sessions.pop(id.bytes, None)
        return existed

    async def expire(self, id: SessionId, seconds: int) -> bool:
        self._check_open()
        await trio.lowlevel.checkpoint()
        now = trio.current_time()
        entry = self._live(id.bytes, now)
        if entry is None:
            return False
        if seconds == 0:
            del self._sessions[id.bytes]
        else:
            entry.expires = _expiry(now, seconds)
        return True

    async def rename(self, old: SessionId, new: SessionId) -> int | None:
        self._check_open()
        await trio.lowlevel.checkpoint()
        now = trio.current_time()
        entry = self._live(old.bytes, now)
        if entry is None:
            return None
        if self._live(new.bytes, now) is not None:
            raise SessionIdCollision("the new session id is already in use; nothing was changed")
        del self._sessions[old.bytes]
        self._sessions[new.bytes] = entry
        return _remaining(now, entry.expires)
