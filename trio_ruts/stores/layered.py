"""LayeredStore: a hot cache store over a durable cold store.

The cold store is the source of truth; the hot store holds a subset of it, never data the
cold one lacks. Writes go to both layers at once in one nursery and the cold write decides
the result. Reads try hot, then read the whole session from cold and warm hot with it.

When the hot layer fails or is slow, the session it was about to change is marked *dirty*:
reads of a dirty session skip hot, and a task in the store's nursery deletes its hot copy as
soon as the hot layer answers again. After a hot failure, hot is skipped altogether for
``hot_retry`` seconds, so a dead cache costs no more than one ``hot_timeout`` per interval.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Final, TypeVar

import trio

from .._errors import SessionError, StoreTimeout
from .._ids import SessionId
from .._store import (
    DEFAULT_HOT_TTL_CAP,
    Placement,
    Removal,
    SessionRecord,
    SessionStore,
    Write,
    WriteResult,
)

T = TypeVar("T")
_MEMO_LIMIT: Final = 50_000


@dataclass
class _Hot:
    """What happened to the hot half of an operation."""

    ok: bool = False
    value: Any = None


@dataclass
class _Memo:
    """What a recent cold read taught us about a session, so misses stay cheap."""

    until: float
    absent: bool = False  # the cold store had no such session
    missing: set[str] = field(default_factory=set)  # fields the cold store lacked
    cold_only: set[str] = field(default_factory=set)  # fields never to be read from hot


class LayeredStore(SessionStore):
    """A hot store (e.g. Redis) layered over a cold, durable one (e.g. Postgres).

    Args:
        hot: the cache layer.
        cold: the durable layer, source of truth.
        hot_timeout: seconds a hot operation may take before the call goes on without it.
        cold_timeout: seconds a cold operation may take (``StoreTimeout``); ``None``: no limit.
        max_hot_ttl: hot lifetime of fields and sessions that never expire in cold.
        miss_ttl: seconds to remember that a field or session is absent from cold.
        hot_retry: seconds to skip the hot layer after it failed or timed out.

    Entering the store opens whichever layers are not open yet and, on exit, closes only
    those it opened.
    """

    def __init__(
        self,
        hot: SessionStore,
        cold: SessionStore,
        *,
        hot_timeout: float = 0.25,
        cold_timeout: float | None = None,
        max_hot_ttl: int = DEFAULT_HOT_TTL_CAP,
        miss_ttl: float = 2.0,
        hot_retry: float = 1.0,
    ) -> None:
        if hot is cold:
            raise ValueError("the hot and cold layers must be different stores")
        if not hot_timeout > 0 or (cold_timeout is not None and not cold_timeout > 0):
            raise ValueError("hot_timeout and cold_timeout must be positive seconds")
        if type(max_hot_ttl) is not int or max_hot_ttl <= 0:
            raise ValueError("max_hot_ttl must be a positive number of seconds")
        self.hot, self.cold = hot, cold
        self._hot_timeout = hot_timeout
        self._cold_timeout = cold_timeout
        self._max_hot_ttl = max_hot_ttl
        self._miss_ttl = miss_ttl
        self._hot_retry = hot_retry
        self._hot_skip_until = -math.inf
        self._dirty: set[bytes] = set()
        self._dirty_event = trio.Event()
        self._memos: dict[bytes, _Memo] = {}
        # Changes made through this store per session (and an epoch for when the table is
        # reset): warming is skipped if the session changed while its cold read was running.
        self._changes: dict[bytes, int] = {}
        self._epoch = 0

    def __repr__(self) -> str:
        return f"LayeredStore(hot={self.hot!r}, cold={self.cold!r})"

    # -- lifecycle -----------------------------------------------------------------------------

    async def _open(self, nursery: trio.Nursery) -> None:
        for layer in (self.cold, self.hot):
            if not layer.is_open:
                await self._exit_stack.enter_async_context(layer)
        nursery.start_soon(self._invalidator)

    async def _invalidator(self) -> None:
        """Delete the hot copies of dirty sessions once the hot layer answers again."""
        while True:
            await self._dirty_event.wait()
            self._dirty_event = trio.Event()
            while self._dirty:
                await trio.sleep_until(max(self._hot_skip_until, trio.current_time()))
                key = next(iter(self._dirty))
                if await self._hot(self.hot.delete, SessionId(key)) is not None:
                    self._dirty.discard(key)

    # -- the hot half ----------------------------------------------------------------------------

    def _hot_usable(self, id: SessionId | None = None) -> bool:
        if trio.current_time() < self._hot_skip_until:
            return False
        return id is None or id.bytes not in self._dirty

    def _mark_dirty(self, ids: Iterable[SessionId | None]) -> None:
        for sid in ids:
            if sid is not None:
                self._dirty.add(sid.bytes)
        self._dirty_event.set()

    async def _hot(self, fn: Callable[..., Awaitable[T]], *args: Any) -> _Hot | None:
        """Run a hot operation within ``hot_timeout``; ``None`` if it failed or timed out
        (and then skip hot for ``hot_retry`` seconds)."""
        outcome = _Hot()
        with trio.move_on_after(self._hot_timeout):
            try:
                outcome.value = await fn(*args)
                outcome.ok = True
            except SessionError:
                pass
        if outcome.ok:
            return outcome
        self._hot_skip_until = trio.current_time() + self._hot_retry
        return None

    async def _cold(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        if self._cold_timeout is None:
            return await fn(*args)
        try:
            with trio.fail_after(self._cold_timeout):
                return await fn(*args)
        except trio.TooSlowError:
            raise StoreTimeout(
                f"the cold layer did not answer within {self._cold_timeout} s"
            ) from None

    async def _both(
        self,
        cold_op: Callable[[], Awaitable[T]],
        hot_op: Callable[[], Awaitable[Any]] | None,
        touched: tuple[SessionId | None, ...],
    ) -> tuple[T, _Hot | None]:
        """Run the cold and hot halves concurrently; the cold half decides.

        If the cold half fails (or the call is cancelled), the hot half is cancelled and the
        hot copies of ``touched`` are deleted, so hot never keeps what cold lacks. If the hot
        half fails or times out, or there is none (hot is being skipped), the call still
        succeeds and ``touched`` become dirty.
        """
        self._forget(touched)
        box: list[_Hot | None] = [None]

        async def hot_half() -> None:
            assert hot_op is not None
            box[0] = await self._hot(hot_op)

        failure: Exception | None = None
        done = False
        try:
            async with trio.open_nursery() as nursery:
                if hot_op is not None:
                    nursery.start_soon(hot_half)
                try:
                    result = await self._cold(cold_op)
                    done = True
                except Exception as exc:
                    failure = exc
                    nursery.cancel_scope.cancel()
        finally:
            if not done and hot_op is not None:
                with trio.move_on_after(self._hot_timeout, shield=True):
                    await self._invalidate(touched)
        if failure is not None:
            raise failure
        if box[0] is None:
            self._mark_dirty(touched)
        return result, box[0]

    async def _invalidate(self, ids: Iterable[SessionId | None]) -> None:
        """Delete hot copies now; whatever cannot be deleted becomes dirty."""
        for sid in ids:
            if sid is not None and await self._hot(self.hot.delete, sid) is None:
                self._mark_dirty([sid])

    # -- memos of cold reads -----------------------------------------------------------------

    def _memo(self, id: SessionId) -> _Memo | None:
        memo = self._memos.get(id.bytes)
        if memo is not None and memo.until < trio.current_time():
            del self._memos[id.bytes]
            return None
        return memo

    def _remember(self, id: SessionId, memo: _Memo) -> None:
        if len(self._memos) >= _MEMO_LIMIT:
            self._memos.clear()
        self._memos[id.bytes] = memo

    def _forget(self, ids: Iterable[SessionId | None]) -> None:
        """A session is about to change: drop what we remembered of it."""
        if len(self._changes) >= _MEMO_LIMIT:
            self._changes.clear()
            self._epoch += 1
        for sid in ids:
            if sid is not None:
                self._memos.pop(sid.bytes, None)
                self._changes[sid.bytes] = self._changes.get(sid.bytes, 0) + 1

    def _version(self, id: SessionId) -> tuple[int, int]:
        return self._epoch, self._changes.get(id.bytes, 0)

    # -- lifetimes in hot ----------------------------------------------------------------------

    def _hot_ttl(self, remaining: int | None, cap: int | None) -> int | None:
        """A hot lifetime: never persistent, never beyond ``cap`` or the cold remaining."""
        if remaining == -1:
            remaining = self._max_hot_ttl
        if cap is not None and cap > 0:
            remaining = cap if remaining is None else min(remaining, cap)
        return remaining

    def _hot_write(self, w: Write) -> Write:
        """The hot half of a write: same ids and semantics (an id the hot layer does not hold
        is not adopted there either), with hot lifetimes. A rename becomes a write at exactly
        the new id, which the cold write always ends at (the caller drops the old hot copy)."""
        bounded = replace(
            w,
            field_ttl=self._hot_ttl(w.field_ttl, w.hot_ttl),
            key_ttl=self._max_hot_ttl if w.key_ttl == -1 else w.key_ttl,
        )
        if w.rename and w.id is not None:
            return replace(bounded, id=w.fresh_id, rename=False)
        return bounded

    async def _warm(self, id: SessionId, record: SessionRecord) -> None:
        """Copy a cold session's hot-eligible fields to hot (never over newer hot values)."""
        key_ttl = self._max_hot_ttl if record.ttl == -1 else record.ttl

        async def one(name: str, value: bytes, ttl: int | None, policy: int | None) -> None:
            remaining = record.ttl if ttl is None else ttl
            write = Write(
                id=id,
                fresh_id=id,
                field=name,
                value=value,
                only_if_absent=True,
                field_ttl=self._hot_ttl(remaining, policy),
                key_ttl=key_ttl,
                hot_ttl=policy,
            )
            if await self._hot(self.hot.write, write) is None:
                self._mark_dirty([id])

        async with trio.open_nursery() as nursery:
            for name, f in record.fields.items():
                if f.hot_ttl != 0:
                    nursery.start_soon(one, name, f.value, f.ttl, f.hot_ttl)

    # -- reads -------------------------------------------------------------------------------

    async def get(self, id: SessionId, field: str) -> bytes | None:
        self._check_open()
        memo = self._memo(id)
        if self._hot_usable(id) and (memo is None or field not in memo.cold_only):
            hit = await self._hot(self.hot.get, id, field)
            if hit is not None and hit.value is not None:
                return hit.value  # type: ignore[no-any-return]
        if memo is not None:
            if memo.absent or field in memo.missing:
                await trio.lowlevel.checkpoint()
                return None
            if field in memo.cold_only:
                return await self._cold(self.cold.get, id, field)
        # A field that belongs in hot is not there: read the session and (re)warm hot.
        before = self._version(id)
        record = await self._cold(self.cold.get_all, id)
        if record is None:
            self._remember(id, _Memo(trio.current_time() + self._miss_ttl, absent=True))
            return None
        cold_only = {n for n, f in record.fields.items() if f.hot_ttl == 0}
        memo = _Memo(trio.current_time() + self._miss_ttl, cold_only=cold_only)
        if field not in record.fields:
            memo.missing.add(field)
        self._remember(id, memo)
        if self._hot_usable(id) and self._version(id) == before:
            await self._warm(id, record)
        found = record.fields.get(field)
        return None if found is None else found.value

    async def get_all(self, id: SessionId) -> SessionRecord | None:
        self._check_open()
        return await self._cold(self.cold.get_all, id)

    # -- writes ------------------------------------------------------------------------------

    async def write(self, write: Write) -> WriteResult:
        self._check_open()
        touched = (write.id, write.fresh_id)
        if write.placement is Placement.HOT:
            # Hot only, with the hot layer's view of the session (see the docs).
            self._forget(touched)
            return await self.hot.write(self._hot_write(write))
        hot_op: Callable[[], Awaitable[Any]] | None
        if write.placement is Placement.COLD:
            # Cold only: drop the hot copy of the field (of the session, when renaming).
            if write.rename or write.id is None:
                hot_op = partial(self._invalidate, touched)
            else:
                hot_op = partial(self.hot.remove, write.id, write.field)
            result, _ = await self._both(partial(self.cold.write, write), hot_op, touched)
            return result
        hot_op = None
        if self._hot_usable():
            hot_write = self._hot_write(write)

            async def hot_half() -> WriteResult:
                if write.rename and write.id is not None:
                    await self.hot.delete(write.id)
                return await self.hot.write(hot_write)

            hot_op = hot_half
        result, hot = await self._both(partial(self.cold.write, write), hot_op, touched)
        if hot is not None:
            await self._reconcile(write, result, hot.value)
        return result

    async def _reconcile(self, write: Write, cold: WriteResult, hot: WriteResult) -> None:
        """Undo what the hot half did that the cold half did not."""
        if cold.id != hot.id:
            # The layers disagreed on whether the session existed (hot not warmed yet, or
            # stale): the hot copy under hot.id is not what cold holds.
            await self._invalidate([hot.id])
        elif (
            hot.written
            and not cold.written
            and await self._hot(self.hot.remove, hot.id, write.field) is None
        ):
            # Insert-if-absent: cold kept its value and hot took the new one, which could
            # not be removed now: the invalidator will.
            self._mark_dirty([hot.id])

    async def remove(self, id: SessionId, field: str) -> Removal:
        self._check_open()
        hot_op = partial(self.hot.remove, id, field) if self._hot_usable() else None
        result, _ = await self._both(partial(self.cold.remove, id, field), hot_op, (id,))
        if hot_op is not None and result.ttl is None:
            await self._invalidate([id])  # the session ended in cold: end it in hot too
        return result

    async def delete(self, id: SessionId) -> bool:
        self._check_open()
        hot_op = partial(self.hot.delete, id) if self._hot_usable() else None
        result, _ = await self._both(partial(self.cold.delete, id), hot_op, (id,))
        return result

    async def expire(self, id: SessionId, seconds: int) -> bool:
        self._check_open()
        hot_seconds = self._max_hot_ttl if seconds == -1 else seconds
        hot_op = partial(self.hot.expire, id, hot_seconds) if self._hot_usable() else None
        result, _ = await self._both(partial(self.cold.expire, id, seconds), hot_op, (id,))
        return result

    async def rename(self, old: SessionId, new: SessionId) -> int | None:
        self._check_open()
        hot_op = partial(self.hot.rename, old, new) if self._hot_usable() else None
        result, _ = await self._both(partial(self.cold.rename, old, new), hot_op, (old, new))
        return result
