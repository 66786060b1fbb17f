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
    __slots__ = ("expires", "fields")

    def __init__(self, expires: float) -> None:
        self.expires = expires  # inf: persistent
        self.fields: dict[str, _Field] = {}


def _expiry(now: float, ttl: int) -> float:
    return _NEVER if ttl == -1 else now + ttl


def _remaining(now: float, expires: float) -> int:
    return -1 if expires == _NEVER else max(1, math.ceil(expires - now))


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
            dead = [
                n for n, f in entry.fields.items() if f.expires is not None and f.expires <= now
            ]
            for name in dead:
                del entry.fields[name]
            if entry.fields:
                return entry
        del self._sessions[key]
        return None

    def _apply(self, write: Write, now: float) -> WriteResult:
        fresh = write.fresh_id.bytes
        entry = self._live(write.id.bytes, now) if write.id is not None else None
        if (entry is None or write.rename) and self._live(fresh, now) is not None:
            raise SessionIdCollision("the new session id is already in use; nothing was changed")
        target = write.fresh_id
        if entry is not None and write.id is not None and not write.rename:
            target = write.id
        if entry is None:
            entry = _Session(now)
        written = not (write.only_if_absent and write.field in entry.fields)
        if written:
            expires = None if write.field_ttl is None else _expiry(now, write.field_ttl)
            entry.fields[write.field] = _Field(write.value, expires, write.hot_ttl)
            entry.expires = max(
                entry.expires,
                _expiry(now, write.key_ttl),
                _expiry(now, write.field_ttl or 0),
            )
        if entry.fields:
            if write.id is not None and target is not write.id:
                self._sessions.pop(write.id.bytes, None)
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
