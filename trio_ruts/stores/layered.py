"""LayeredStore: a hot cache store over a durable cold store.

The cold store is the source of truth; the hot store is a cache of it, never a second truth.
A write *marks* the session in hot beside its cold write (before it, until the hot store knows
the session's floor of cold version stamps); after the cold commit one small hot step
*settles* the change (off the caller's path once the mark landed). Reads try hot,
and on a miss read the whole session from cold and *fill* hot with it under a lease. The hot
store itself refuses stale settles and fills inside its own atomic steps (see
:mod:`trio_ruts._cache` for the protocol and docs/layered.md for why it keeps the coherence
rules), so the rules hold across any number of LayeredStores (app servers) over the same two
layers.

When the hot layer fails or is slow, every call goes on without it: the sessions it could not
mark or settle are marked *dirty*: reads of a dirty session skip hot, and a task in the
store's nursery drops its hot copy as soon as the hot layer answers again (work in proportion
to the sessions touched, not to the writes made). After a hot failure, reads skip hot for
``hot_retry`` seconds, so a dead cache costs them no more than one ``hot_timeout`` per
interval; writes still try the mark.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, Generic, TypeVar, cast

import trio

from .._cache import CacheEntry, HotLayer, Marker, Settled
from .._errors import SessionError, StoreError, StoreTimeout
from .._ids import SessionId, SessionRef, session_ref
from .._store import (
    DEFAULT_HOT_TTL_CAP,
    Placement,
    Read,
    Removal,
    SessionRecord,
    SessionStore,
    Touch,
    Write,
    WriteResult,
)
from .._users import UserEntry
from .._watch import WatchHub

T = TypeVar("T")
#: How long a revocation through the cold layer's per-user index runs shielded (seconds).
_END_TIMEOUT: Final = 5.0
_log = logging.getLogger("trio_ruts.layered")


#: How many sessions a LayeredStore remembers as having a known floor in hot.
_FLOORED_MAX = 65536


class _Cold(Generic[T]):
    """The cold half of one change: its outcome (``untouched``, ``committed``, ``refused``
    or ``unknown``), result or failure, and the events that pair it with a mark running
    beside it."""

    __slots__ = (
        "decided",
        "ended",
        "epoch",
        "failure",
        "handed_back",
        "outcome",
        "result",
        "started",
    )

    def __init__(self) -> None:
        self.outcome = "untouched"
        self.result: T | None = None
        self.failure: Exception | None = None
        self.started = trio.current_time()
        self.ended = trio.Event()  # the cold call ended (whatever its outcome)
        # A mark beside the cold call: its epoch (None: it failed), and once it answered, who
        # runs the ending: the mark's task, or (handed back: the store is closing while the
        # cold call runs) the caller.
        self.epoch: int | None = None
        self.decided = trio.Event()
        self.handed_back = False

    def outcome_of(self) -> T:
        """The cold call's result, or its failure raised."""
        if self.failure is not None:
            raise self.failure
        return cast(T, self.result)


@dataclass(slots=True)
class _Hot:
    """A hot operation that answered, and what it returned."""

    value: Any


def _due(session_ttl: int, touch: Touch | None) -> int | None:
    """Seconds until a read must extend a session that cold says lives ``session_ttl`` more
    (``None``: never): a hot copy must be gone by then, or a read it answers would extend
    nothing."""
    if touch is None or session_ttl == -1:
        return None
    return math.floor(session_ttl - touch.below)


def _lifetime(field_ttl: int | None, session_ttl: int) -> int:
    """A field's remaining lifetime: its own, but never beyond its session's (an
    ``expire()`` may have shortened the session below a field's own ttl); ``-1``: never."""
    if field_ttl is None or field_ttl == -1:
        return session_ttl
    return field_ttl if session_ttl == -1 else min(field_ttl, session_ttl)


class LayeredStore(SessionStore):
    """A hot store (e.g. Redis) layered over a cold, durable one (e.g. Postgres).

    Args:
        hot: the cache layer: a store with the :class:`~trio_ruts.stores.HotLayer`
            capability (``MemoryStore``, ``RedisStore``).
        cold: the durable layer, source of truth: any store.
        hot_timeout: seconds a hot operation may take before the call goes on without it.
        cold_timeout: seconds a cold operation may take (``StoreTimeout``); ``None``: no limit.
        max_hot_ttl: hot lifetime of fields and sessions that never expire in cold.
        hot_retry: seconds to skip the hot layer after it failed or timed out.
        write_hold: seconds a change whose cold outcome is unknown (a cancelled or failed
            cold call, a writer that died) keeps the session's hot copy from being refilled:
            longer than a cold write can take to land.

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
        hot_retry: float = 1.0,
        write_hold: float = 30.0,
    ) -> None:
        if hot is cold:
            raise ValueError("the hot and cold layers must be different stores")
        if not isinstance(hot, HotLayer):
            raise TypeError(
                f"{type(hot).__name__} cannot be a hot layer: it lacks the HotLayer capability "
                f"(use MemoryStore or RedisStore)"
            )
        if not hot_timeout > 0 or (cold_timeout is not None and not cold_timeout > 0):
            raise ValueError("hot_timeout and cold_timeout must be positive seconds")
        if type(max_hot_ttl) is not int or max_hot_ttl <= 0:
            raise ValueError("max_hot_ttl must be a positive number of seconds")
        if not write_hold > 0:
            raise ValueError("write_hold must be positive seconds")
        self.hot, self.cold = hot, cold
        self._cache: HotLayer = hot
        self._hot_timeout = hot_timeout
        self._cold_timeout = cold_timeout
        self._max_hot_ttl = max_hot_ttl
        self._hot_retry = hot_retry
        self._hold = write_hold
        self._hot_skip_until = -float("inf")
        # Sessions whose hot copies must be dropped, and whether to hold them (a change whose
        # cold outcome is unknown may still land).
        self._dirty: dict[bytes, bool] = {}
        # Sessions revoked through a per-user index (known by ref, not id) whose hot copies
        # must be dropped.
        self._dirty_refs: dict[SessionRef, None] = {}
        self._dirty_event = trio.Event()
        self._settling = 0  # hot endings (and marks beside cold calls) in the background
        self._waiting_cold = 0  # of those, marks waiting for their cold call to end
        self._settled = trio.Event()
        # Sessions with a change in flight in this process, until its hot ending has run:
        # later reads and changes of the session here wait for it (within hot_timeout)
        # rather than read cold or collide with it in hot.
        self._busy: dict[bytes, trio.Event] = {}
        # Whether the cold store stamps its writes with versions (seen on a write),
        # and the sessions whose floor hot knows, oldest first (see _learn).
        self._stamped = False
        self._floored: dict[bytes, None] = {}

    def __repr__(self) -> str:
        return f"LayeredStore(hot={self.hot!r}, cold={self.cold!r})"

    # -- lifecycle -----------------------------------------------------------------------------

    async def _open(self, nursery: trio.Nursery) -> None:
        for layer in (self.cold, self.hot):
            if not layer.is_open:
                await self._exit_stack.enter_async_context(layer)
        nursery.start_soon(self._invalidator)

    async def _close(self) -> None:
        # Let the hot endings still running finish (each bounded by hot_timeout), then drop
        # what is still dirty, so other app servers do not go on serving it.
        # (Marks beside cold calls still running are not waited for: their callers end them.)
        with trio.move_on_after(2 * self._hot_timeout):
            while self._settling > self._waiting_cold:
                await self._settled.wait()
        with trio.move_on_after(4 * self._hot_timeout):
            while (self._dirty or self._dirty_refs) and await self._drop_one() is not None:
                pass

    async def _invalidator(self) -> None:
        """Drop the hot copies of dirty sessions once the hot layer answers again."""
        while True:
            await self._dirty_event.wait()
            self._dirty_event = trio.Event()
            while self._dirty or self._dirty_refs:
                # After a failure, try again within hot_timeout (not hot_retry: hot may be
                # fine, and other app servers may be reading the stale copy meanwhile).
                now = trio.current_time()
                await trio.sleep_until(min(self._hot_skip_until, now + self._hot_timeout))
                await self._drop_one()

    async def _drop_one(self) -> _Hot | None:
        """Drop the hot copy of one dirty session; it stays dirty if that fails."""
        if not self._dirty and not self._dirty_refs:
            return None  # dropped meanwhile (a revocation drops its own refs)
        if self._dirty_refs:
            ref = next(iter(self._dirty_refs))
            forgot = await self._hot(self._cache.cache_forget, ref)
            if forgot is not None:  # dirty until then: reads of it skip hot meanwhile
                self._dirty_refs.pop(ref, None)
            return forgot
        key, hold = next(iter(self._dirty.items()))
        del self._dirty[key]  # a session made dirty again meanwhile is dropped again
        dropped = await self._hot(self._drop, SessionId(key), hold)
        if dropped is None:
            self._mark_dirty(SessionId(key), hold=hold)
        return dropped

    # -- the two halves --------------------------------------------------------------------------

    def _hot_usable(self, id: SessionId) -> bool:
        """Whether a read of ``id`` may try hot: not while backing off after a hot failure,
        nor while the session's hot copy waits to be dropped."""
        if trio.current_time() < self._hot_skip_until or id.bytes in self._dirty:
            return False
        return not self._dirty_refs or session_ref(id) not in self._dirty_refs

    def _mark_dirty(self, id: SessionId, *, hold: bool = False) -> None:
        self._floored.pop(id.bytes, None)  # the drop forgets the floor in hot
        self._dirty[id.bytes] = hold or self._dirty.get(id.bytes, False)
        self._dirty_event.set()

    async def _hot(self, fn: Callable[..., Awaitable[T]], *args: Any, **kw: Any) -> _Hot | None:
        """Run a hot operation within ``hot_timeout``; ``None`` if it failed, whatever it
        raised, or timed out (and then reads skip hot for ``hot_retry`` seconds)."""
        # The try is outside the deadline's scope: a group that scope leaves (its own
        # Cancelled stripped) is caught too.
        try:
            with trio.move_on_after(self._hot_timeout):
                return _Hot(await fn(*args, **kw))
        except SessionError:
            pass
        except Exception as exc:  # a hot failure never fails the call (coherence rule 4)
            _log.warning("the hot layer raised %s; going on without it", type(exc).__name__)
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

    async def _drop(self, id: SessionId, hold: bool) -> Settled:
        """Delete every cached entry of a session; ``hold`` it for ``write_hold`` when what
        made it dirty was a change whose cold outcome is unknown."""
        return await self._cache.cache_settle(id, None, None, None, known=not hold, hold=self._hold)

    async def _settle(
        self,
        id: SessionId,
        field: str | None,
        epoch: int | None,
        entry: CacheEntry | None,
        *,
        known: bool = True,
        version: int | None = None,
        ordered: bool = True,
    ) -> bool:
        """End a change in hot within ``hot_timeout`` (``version``: the cold stamp of the
        change; ``ordered``: its mark landed before the cold call); a session whose hot copy
        could not be settled becomes dirty. ``True`` if ``entry`` was installed."""
        settle = partial(
            self._cache.cache_settle,
            id,
            field,
            epoch,
            entry,
            known=known,
            hold=self._hold,
            version=version,
            ordered=ordered,
        )
        done = await self._hot(settle)
        if done is None or not isinstance(done.value, Settled):  # (a hot layer gone wrong)
            self._mark_dirty(id, hold=not known)
            return False
        self._learn(id, floor=done.value.floor)
        return done.value.installed

    def _learn(self, id: SessionId, *, floor: bool) -> None:
        """Keep track of the sessions whose floor hot knows, as the last settle here said
        (see :mod:`trio_ruts._cache`): their changes mark beside the cold write. Another app
        server may make hot forget it meanwhile; then a settle is refused, which says so,
        and the next change here is ordered again: one hot round trip more, never a stale
        copy."""
        key = id.bytes
        self._floored.pop(key, None)
        if floor:
            self._floored[key] = None
            if len(self._floored) > _FLOORED_MAX:
                del self._floored[next(iter(self._floored))]

    def _beside(self, id: SessionId) -> bool:
        """Whether a change of ``id`` may mark hot beside its cold write: the cold store
        stamps its writes and hot knows the session's floor (as far as this process saw)."""
        return self._stamped and id.bytes in self._floored and self._nursery is not None

    def _ending(
        self,
        id: SessionId | None,
        field: str | None,
        epoch: int | None,
        cold: _Cold[T],
        settle: Callable[[T, int | None, float, bool], Awaitable[None]],
        *,
        ordered: bool,
    ) -> Callable[[], Awaitable[object]] | None:
        """A change's hot ending, decided once its mark and its cold call ended: the settle
        of a commit; the deletion of what a refused or unknown change affects; or, when the
        mark failed, nothing but a dirty session for the invalidator."""
        if id is not None and epoch is None and cold.outcome != "untouched":
            # The mark failed: hot did not answer within hot_timeout. Rather than wait for
            # it again, leave its copy to the invalidator.
            self._mark_dirty(id, hold=cold.outcome == "unknown")
            return None
        if cold.outcome == "committed":
            return partial(settle, cast(T, cold.result), epoch, cold.started, ordered)
        if id is not None:
            known = cold.outcome != "unknown"
            return partial(self._settle, id, field, epoch, None, known=known, ordered=ordered)
        return None

    async def _cold_call(self, cold_op: Callable[[], Awaitable[T]], cold: _Cold[T]) -> None:
        """Run the cold half of a change, recording its outcome in ``cold``; a failure is
        kept there for the caller to raise once the change's hot half is decided."""
        cold.started = trio.current_time()
        cold.outcome = "unknown"
        try:
            cold.result = await self._cold(cold_op)
            cold.outcome = "committed"
        except SessionError as exc:
            # A refusal (a collision, an increment of a non-integer) changed nothing; a
            # StoreError (unreachable, timed out) leaves the outcome unknown.
            cold.failure = exc
            if not isinstance(exc, StoreError):
                cold.outcome = "refused"
        except Exception as exc:
            cold.failure = exc

    async def _change(
        self,
        id: SessionId | None,
        field: str | None,
        cold_op: Callable[[], Awaitable[T]],
        settle: Callable[[T, int | None, float, bool], Awaitable[None]],
    ) -> T:
        """Mark ``id``'s hot copy (``field``, or the whole session when ``None``), run
        ``cold_op``, then end the change in hot: ``settle(result, epoch, started, ordered)``
        once cold committed (``epoch``: the mark's, ``None`` if it failed; ``started``: when
        the cold call began; ``ordered``: whether the mark landed before it), or delete what
        the change affects if cold failed.

        The mark lands before the cold write is sent (*ordered*), unless the cold store
        stamps its writes with versions and hot knows the session's floor: then it runs
        beside the cold write, in the store's nursery, and the call returns once both ended
        (a mark that lands after its own commit cannot settle an older value over a newer
        one: hot compares the stamps). Writes never skip the mark, even while reads skip an
        unreachable hot layer; it is bounded by ``hot_timeout``. Once it landed, the change's
        entries are gone from hot and no fill is accepted before the ending, so the ending
        runs in the store's nursery, off the caller's path (a read after the call reads cold,
        or here waits for it); otherwise it runs before the call returns. Either way it is
        shielded and each hot step bounded by ``hot_timeout``.
        """
        await self._wait_busy(id)
        done = self._begin(id)
        cold: _Cold[T] = _Cold()
        beside = id is not None and self._beside(id)
        if beside and self._start(self._mark_beside, id, field, cold, settle, done):
            try:
                await self._cold_call(cold_op, cold)
            finally:
                cold.ended.set()
                # Whatever happened, the call leaves only once its mark landed (rule 2, and a
                # cancelled call that committed is no different): bounded by hot_timeout.
                with trio.CancelScope(shield=True):
                    with trio.move_on_after(2 * self._hot_timeout):
                        await cold.decided.wait()
                if cold.handed_back:
                    await self._end_here(id, field, cold, settle, done)
            return cold.outcome_of()
        epoch: int | None = None
        try:
            if id is not None:
                marked = await self._hot(self._cache.cache_mark, id, field, self._hold)
                epoch = None if marked is None else marked.value
            await self._cold_call(cold_op, cold)
        finally:
            ending = self._ending(id, field, epoch, cold, settle, ordered=True)
            if ending is None:
                self._end(id, done)
            elif not (epoch is not None and self._start(self._run_later, ending, id, done)):
                try:
                    with trio.CancelScope(shield=True):
                        await ending()
                finally:
                    self._end(id, done)
        return cold.outcome_of()

    async def _mark_beside(
        self,
        id: SessionId,
        field: str | None,
        cold: _Cold[T],
        settle: Callable[[T, int | None, float, bool], Awaitable[None]],
        done: trio.Event,
    ) -> None:
        """The hot half of a change that marks beside its cold write, in the store's nursery:
        the mark (shielded, bounded by hot_timeout: a change whose cold write may commit is
        always marked), then, once the cold call ended, the ending. If the store closes while
        the cold call runs, the caller ends the change instead."""
        try:
            with trio.CancelScope(shield=True):
                marked = await self._hot(self._cache.cache_mark, id, field, self._hold)
            cold.epoch = None if marked is None else marked.value
            if not cold.ended.is_set():
                self._waiting_cold += 1
                self._wake_closer()  # a closing store does not wait for this one
                try:
                    await cold.ended.wait()
                except trio.Cancelled:
                    cold.handed_back = True
                    raise
                finally:
                    self._waiting_cold -= 1
            cold.decided.set()
            ending = self._ending(id, field, cold.epoch, cold, settle, ordered=False)
            if ending is not None:
                with trio.CancelScope(shield=True):
                    await ending()
        finally:
            cold.decided.set()
            if not cold.handed_back:
                self._end(id, done)
            self._finish_task()

    async def _end_here(
        self,
        id: SessionId | None,
        field: str | None,
        cold: _Cold[T],
        settle: Callable[[T, int | None, float, bool], Awaitable[None]],
        done: trio.Event,
    ) -> None:
        """End a change handed back by its mark's task: shielded, before the call returns."""
        try:
            ending = self._ending(id, field, cold.epoch, cold, settle, ordered=False)
            if ending is not None:
                with trio.CancelScope(shield=True):
                    await ending()
        finally:
            self._end(id, done)

    async def _wait_busy(self, id: SessionId | None) -> None:
        """Wait (within hot_timeout) for this process's change in flight on ``id``, if any."""
        busy = None if id is None else self._busy.get(id.bytes)
        if busy is not None:
            with trio.move_on_after(self._hot_timeout):
                await busy.wait()

    def _begin(self, id: SessionId | None) -> trio.Event:
        done = trio.Event()
        if id is not None:
            self._busy[id.bytes] = done
        return done

    def _end(self, id: SessionId | None, done: trio.Event) -> None:
        done.set()
        if id is not None and self._busy.get(id.bytes) is done:
            del self._busy[id.bytes]

    def _start(self, fn: Callable[..., Awaitable[None]], *args: Any) -> bool:
        """Run a change's hot half or ending in the store's nursery; ``False`` if closing."""
        if self._nursery is None or self._closed:
            return False
        self._settling += 1
        self._nursery.start_soon(fn, *args)
        return True

    async def _run_later(
        self, ending: Callable[[], Awaitable[object]], id: SessionId | None, done: trio.Event
    ) -> None:
        try:
            await ending()
        finally:
            self._finish_later(id, done)

    def _finish_later(self, id: SessionId | None, done: trio.Event) -> None:
        self._end(id, done)
        self._finish_task()

    def _finish_task(self) -> None:
        self._settling -= 1
        self._wake_closer()

    def _wake_closer(self) -> None:
        """Wake a closing store once only marks waiting for their cold calls are left."""
        if self._settling <= self._waiting_cold:
            self._settled.set()
            self._settled = trio.Event()

    # -- lifetimes in hot ----------------------------------------------------------------------

    def _hot_ttl(self, remaining: int, cap: int | None, since: float | None = None) -> int:
        """A hot lifetime: never persistent, never beyond ``cap``, and shorter than the cold
        remaining that a cold call begun at ``since`` reported: stores round up to whole
        seconds, and time passes until hot installs it (the call, then at most one
        ``hot_timeout``); ``0`` when too short to cache."""
        if remaining == -1:
            return self._max_hot_ttl if cap is None or cap <= 0 else min(cap, self._max_hot_ttl)
        if since is not None:
            remaining -= math.ceil(trio.current_time() - since + self._hot_timeout)
        remaining -= 1
        if cap is not None and cap > 0:
            remaining = min(remaining, cap)
        return max(0, remaining)

    def _snapshot(
        self, record: SessionRecord, asked: str, since: float, touch: Touch | None
    ) -> list[CacheEntry]:
        """The entries a fill installs for a cold session read from ``since`` on (the asked
        field marked absent when cold lacks it); fields about to expire are left out, and
        none outlives the moment a read must extend the session (``touch``)."""
        due = _due(record.ttl, touch)
        session_ttl = self._hot_ttl(record.ttl if due is None else due, None, since)
        entries: list[CacheEntry] = []
        for name, f in record.fields.items():
            remaining = _lifetime(f.ttl, record.ttl)
            if due is not None:
                remaining = min(remaining, due)
            ttl = self._hot_ttl(remaining, f.hot_ttl, since)
            if ttl > 0:
                entries.append(CacheEntry(name, Marker.COLD if f.hot_ttl == 0 else f.value, ttl))
        if asked not in record.fields and session_ttl > 0:
            entries.append(CacheEntry(asked, Marker.MISSING, session_ttl))
        return entries

    # -- reads -------------------------------------------------------------------------------

    async def get(self, id: SessionId, field: str) -> bytes | None:
        return (await self._read(id, field, None)).value

    async def touch_get(self, id: SessionId, field: str, touch: Touch) -> Read:
        # The lifetime lives in cold: reads that reach cold (misses, fallbacks) touch it
        # there; a hot hit does not reach cold and extends nothing.
        return await self._read(id, field, touch)

    async def _read(self, id: SessionId, field: str, touch: Touch | None) -> Read:
        self._check_open()
        await self._wait_busy(id)
        if not self._hot_usable(id):
            return await self._cold_get(id, field, touch)
        hot = await self._hot(self._cache.cache_read, id, field)
        if hot is None:
            return await self._cold_get(id, field, touch)
        read = hot.value
        if isinstance(read.value, bytes):
            return Read(read.value)
        if read.value is Marker.MISSING:
            return Read(None)
        if read.value is Marker.COLD:
            return await self._cold_get(id, field, touch)
        # A miss: read the whole session and fill hot with it, under the lease of the miss.
        since = trio.current_time()
        record = await self._cold_get_all(id, touch)
        if record is None:
            return Read(None)
        entries = self._snapshot(record, field, since, touch)
        if entries:
            ttl = max(e.ttl for e in entries)
            await self._hot(self._cache.cache_fill, id, read.epoch, entries, ttl)
        found = record.fields.get(field)
        return Read(None if found is None else found.value, record.ttl if record.touched else None)

    async def _cold_get(self, id: SessionId, field: str, touch: Touch | None) -> Read:
        if touch is None:
            return Read(await self._cold(self.cold.get, id, field))
        return await self._cold(self.cold.touch_get, id, field, touch)

    async def _cold_get_all(self, id: SessionId, touch: Touch | None) -> SessionRecord | None:
        if touch is None:
            return await self._cold(self.cold.get_all, id)
        return await self._cold(self.cold.touch_get_all, id, touch)

    async def get_all(self, id: SessionId) -> SessionRecord | None:
        self._check_open()
        return await self._cold(self.cold.get_all, id)

    async def touch_get_all(self, id: SessionId, touch: Touch) -> SessionRecord | None:
        self._check_open()
        return await self._cold(self.cold.touch_get_all, id, touch)

    async def touch(self, id: SessionId, touch: Touch) -> int | None:
        self._check_open()
        # Only ever longer in cold: hot copies, shorter-lived than cold's, stay valid.
        return await self._cold(self.cold.touch, id, touch)

    # -- writes ------------------------------------------------------------------------------

    async def write(self, write: Write) -> WriteResult:
        self._check_open()
        if write.placement is Placement.HOT:
            return await self._write_hot(write)
        field = None if write.rename else write.field
        # A new session is marked at the id it will be created under.
        marked = write.fresh_id if write.id is None else write.id

        async def settle(
            result: WriteResult, epoch: int | None, since: float, ordered: bool
        ) -> None:
            # In place, the change settles; otherwise the hot copy under the marked id is not
            # what cold holds (an unknown id, or a session that moved) and is dropped.
            self._stamped = self._stamped or result.version is not None
            # (An absent session is in place too: nothing changed, and its stamp is as good.)
            in_place = result.id == marked and not write.rename
            entry = self._entry(write, result, since) if in_place else None
            version = result.version if in_place else None
            await self._settle(marked, field, epoch, entry, version=version, ordered=ordered)

        return await self._change(marked, field, partial(self.cold.write, write), settle)

    def _entry(self, write: Write, result: WriteResult, since: float) -> CacheEntry | None:
        """What hot caches of a write committed by a cold call begun at ``since``."""
        if not result.written:
            return None
        due = _due(result.ttl, write.touch)  # (a hot copy is gone when a touch is due)
        if write.placement is Placement.COLD:
            ttl = self._hot_ttl(result.ttl if due is None else due, None, since)
            entry = CacheEntry(write.field, Marker.COLD, ttl)
        else:
            # An increment's value is the one cold computed.
            value = write.value if write.incr is None else result.value
            if value is None:
                return None
            remaining = _lifetime(write.field_ttl, result.ttl)
            if due is not None:
                remaining = min(remaining, due)
            ttl = self._hot_ttl(remaining, write.hot_ttl, since)
            entry = CacheEntry(write.field, value, ttl)
        return entry if entry.ttl > 0 else None

    async def _write_hot(self, write: Write) -> WriteResult:
        """``HotOnly``: the hot layer only, at the session's current id (never a fork)."""
        remaining = write.key_ttl if write.field_ttl is None else write.field_ttl
        ttl = max(1, self._hot_ttl(remaining, write.hot_ttl))
        entry = CacheEntry(write.field, write.value, ttl)
        put = partial(self._cache.cache_put, entry=entry, only_if_absent=write.only_if_absent)
        current = write.id
        if current is not None and write.rename:
            moved = await self.rename(current, write.fresh_id)
            current = None if moved is None else write.fresh_id
        if current is not None:
            done = await self._hot(put, current, create=False)
            if done is not None and done.value is None:
                # Not cached: the session exists if cold says so (an unknown id is never
                # adopted, in hot either), and the write is taken only if nothing changed the
                # session since (a lease, as for a fill: a rename or delete may be racing).
                read = await self._hot(self._cache.cache_read, current, write.field)
                if read is None:
                    done = None
                elif await self._cold(self.cold.get_all, current) is not None:
                    done = await self._hot(put, current, create=True, lease=read.value.epoch)
                else:
                    current = None
            if current is not None:
                written = done is not None and bool(done.value)
                return WriteResult(written, current, write.key_ttl)
        done = await self._hot(put, write.fresh_id, create=True)
        return WriteResult(done is not None and bool(done.value), write.fresh_id, write.key_ttl)

    async def remove(self, id: SessionId, field: str) -> Removal:
        self._check_open()

        async def settle(result: Removal, epoch: int | None, since: float, ordered: bool) -> None:
            # (No "absent" marker: a removal does not know when the session's reads must
            # extend it; the next read of the field refills it from cold, knowing.)
            whole = None if result.ttl is None else field  # the session ended, or was absent
            await self._settle(id, whole, epoch, None, version=result.version, ordered=ordered)

        return await self._change(id, field, partial(self.cold.remove, id, field), settle)

    async def _session_change(self, id: SessionId, cold_op: Callable[[], Awaitable[T]]) -> T:
        async def settle(result: T, epoch: int | None, since: float, ordered: bool) -> None:
            await self._settle(id, None, epoch, None)

        return await self._change(id, None, cold_op, settle)

    async def delete(self, id: SessionId) -> bool:
        self._check_open()
        return await self._session_change(id, partial(self.cold.delete, id))

    async def _end_session(self, id: SessionId, reason: str = "deleted") -> bool:
        self._check_open()
        return await self._session_change(id, partial(self.cold._end_session, id, reason))

    def _watch_hub(self) -> WatchHub:
        # The cold store is the source of truth, and its operations notify: its channel.
        self._check_open()
        return self.cold._watch_hub()

    async def expire(self, id: SessionId, seconds: int) -> bool:
        self._check_open()
        # The hot copy is dropped and refilled with the new lifetimes on the next read.
        return await self._session_change(id, partial(self.cold.expire, id, seconds))

    async def expire_capped(self, id: SessionId, seconds: int, absolute: int) -> int | None:
        self._check_open()
        cold_op = partial(self.cold.expire_capped, id, seconds, absolute)
        return await self._session_change(id, cold_op)

    async def rename(self, old: SessionId, new: SessionId) -> int | None:
        self._check_open()
        return await self._session_change(old, partial(self.cold.rename, old, new))

    # -- users (SPEC section 9): the index lives in cold; ending a session drops hot copies --

    async def login(
        self, old: SessionId, new: SessionId, user: str, label: str | None, idle: int
    ) -> int | None:
        self._check_open()
        cold_op = partial(self.cold.login, old, new, user, label, idle)
        return await self._session_change(old, cold_op)

    async def session_user(self, id: SessionId) -> str | None:
        self._check_open()
        return await self._cold(self.cold.session_user, id)

    async def logout(self, id: SessionId) -> bool:
        self._check_open()
        return await self._session_change(id, partial(self.cold.logout, id))

    async def _user_entries(self, user: str, current: SessionId | None) -> list[UserEntry]:
        self._check_open()
        return await self._cold(self.cold._user_entries, user, current)

    async def _end_user_sessions(
        self, user: str, *, only: list[Any] | None = None, keep: SessionId | None = None
    ) -> list[Any]:
        self._check_open()
        end = partial(self.cold._end_user_sessions, user, only=only, keep=keep)
        ended: list[Any] | None = None
        addresses: list[SessionRef] = []
        # Shielded (for as long as a rename may take): once cold ended the sessions, their
        # refs must reach this store even if the caller is cancelled, or their hot copies
        # would outlive the revocation, and running it again would find nothing to end.
        with trio.move_on_after(_END_TIMEOUT, shield=True):
            ended = await self._cold(end)
            # Dirty at once: reads of them skip hot until their hot copies are dropped (a
            # fill that read cold before the revocation holds an older lease, which the drop
            # moves past). Cold knows them by ref: it holds no ids.
            for ref in ended:
                address = self.cold._session_ref_of(ref)
                if address is not None:
                    addresses.append(address)
                    self._dirty_refs[address] = None
                    self._dirty_event.set()
        if ended is None:
            raise StoreTimeout(
                f"the cold layer did not confirm a revocation within {_END_TIMEOUT} s; run "
                f"it again to finish"
            )
        for address in addresses:
            if trio.current_time() < self._hot_skip_until:
                break  # hot is failing: the invalidator drops the rest when it answers
            if await self._hot(self._cache.cache_forget, address) is not None:
                self._dirty_refs.pop(address, None)
        return ended

    def _session_ref_of(self, ref: Any) -> SessionRef | None:
        return self.cold._session_ref_of(ref)
