"""The hot-layer capability: what a store adds to serve as a LayeredStore's cache.

A :class:`~trio_ruts.stores.LayeredStore` never writes its hot layer with the ordinary store
operations: a cache that accepts every write in whatever order it arrives holds, sooner or
later, what the cold store does not. Instead the hot layer keeps, per session, a little
protocol state next to the cached entries, and refuses stale writes itself, inside its own
atomic step, so the rules hold across any number of app servers sharing the two layers.

Per session the hot layer keeps:

* *entries*: a field's cached value (with a lifetime of its own, never longer than the
  cold one), or a :class:`Marker` saying the field is known to be absent from cold, or never
  to be cached;
* *in flight*: how many changes are running against the cold store (a count that lapses at a
  *deadline*, so a writer that died cannot block the cache for ever);
* an *epoch*: a number that every announcement and settlement of a change increases.

The four steps (each one atomic in the hot store):

``cache_mark(id, field, hold)``
    Sent beside the cold write, concurrently: deletes the entries the change affects (one
    field, or the whole session when ``field`` is ``None``), counts one more change in flight
    for ``hold`` seconds, and returns the new epoch.
``cache_settle(id, field, epoch, entry, known, hold)``
    Sent after the cold write committed (or failed, or was cancelled): installs ``entry`` only
    if the epoch is still the one the mark returned and this change is the only one in flight;
    otherwise deletes what the change affected. When the cold outcome is ``known``, the change
    leaves the in-flight count (if its mark was counted: ``epoch`` given); when it is not (a
    cancelled or failed cold call may still commit later), the session is held as if one more
    change were in flight for ``hold`` seconds, so no fill can install a snapshot older than
    that late commit. Always bumps the epoch.
``cache_read(id, field)``
    The entry, or a miss with the current epoch: the *lease* for a fill. A session with no
    protocol state gets one on a miss, its epoch drawn at random (or never used before), so
    that no lease taken before the hot store lost the key (an eviction, a restart) can match
    the state that follows.
``cache_fill(id, lease, entries, ttl)``
    After a miss and a cold read: installs the snapshot only if the epoch still equals the
    lease and no change is in flight (the lease protocol of "Scaling Memcache at Facebook",
    NSDI 2013, section 3.2.1, with the epoch as the lease token).

Why this is enough: hot only ever gains a value from a settle or a fill, both after the cold
commit they copy, and both refused if any change touched the session since they were decided;
every change deletes what it affects before and after the cold commit. Deleting is always
safe, so every doubt (a contended field, a cancelled call, an unreachable hot layer) ends in a
deletion, and the next read refills from cold.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Sequence
from dataclasses import dataclass

from ._ids import SessionId


class Marker(enum.Enum):
    """A cached fact about a field that has no cached value."""

    MISSING = "x"  #: the cold session has no such field
    COLD = "o"  #: the field is never cached (``ColdOnly``): read it from cold


@dataclass(slots=True)
class CacheEntry:
    """A field's entry to install in the hot layer.

    Attributes:
        field: the field name.
        value: the encoded value, or a :class:`Marker`.
        ttl: seconds the entry lives (``> 0``): never longer than the cold field.
    """

    field: str
    value: bytes | Marker
    ttl: int


@dataclass(slots=True)
class CacheRead:
    """What the hot layer holds for one field.

    Attributes:
        value: the cached value, a :class:`Marker`, or ``None`` on a miss.
        epoch: the session's epoch: pass it as the lease of :meth:`HotLayer.cache_fill`.
    """

    value: bytes | Marker | None
    epoch: int


class HotLayer(abc.ABC):
    """The capability of a store that can be a LayeredStore's hot layer.

    :class:`~trio_ruts.MemoryStore` and :class:`~trio_ruts.stores.RedisStore` have it. A
    third-party store needs it only to serve as a hot layer; as a cold layer any
    :class:`~trio_ruts.stores.SessionStore` works unchanged. Each method is one atomic step.
    """

    @abc.abstractmethod
    async def cache_read(self, id: SessionId, field: str) -> CacheRead:
        """The field's entry, or a miss with the lease for a fill (starting the session's
        protocol state, with an epoch no earlier lease holds, if it has none)."""

    @abc.abstractmethod
    async def cache_mark(self, id: SessionId, field: str | None, hold: float) -> int:
        """Announce a change in flight: delete the affected entries (``field``, or every
        entry when ``None``), count the change as in flight for ``hold`` seconds, and return
        the new epoch. The session's hot key lives at least ``hold`` seconds afterwards."""

    @abc.abstractmethod
    async def cache_settle(
        self,
        id: SessionId,
        field: str | None,
        epoch: int | None,
        entry: CacheEntry | None,
        *,
        known: bool,
        hold: float,
    ) -> bool:
        """End a change announced by :meth:`cache_mark` (``epoch`` is what it returned, or
        ``None`` when unknown). Install ``entry`` if the epoch is unchanged and this change
        is the only one in flight, else delete the affected entries. If the cold outcome is
        ``known``, take a counted change (``epoch`` given) off the in-flight count; if not,
        count one more change in flight for ``hold`` seconds. Bumps the epoch. ``True`` if
        ``entry`` was installed."""

    @abc.abstractmethod
    async def cache_fill(
        self, id: SessionId, lease: int, entries: Sequence[CacheEntry], ttl: int
    ) -> bool:
        """Install a cold snapshot if the epoch still equals ``lease`` and no change is in
        flight; ``ttl`` bounds the session's hot key. ``True`` if installed."""

    @abc.abstractmethod
    async def cache_put(
        self,
        id: SessionId,
        entry: CacheEntry,
        *,
        only_if_absent: bool,
        create: bool,
        lease: int | None = None,
    ) -> bool | None:
        """Write a hot-only value (``HotOnly``) at exactly ``id``, outside the change
        protocol. Unless ``create``, only a session the hot layer holds is written
        (``None`` otherwise); with a ``lease`` (an epoch from :meth:`cache_read`), only if
        the epoch is unchanged and no change is in flight. ``True`` if written, ``False``
        if ``only_if_absent`` found the field present or the lease no longer holds."""
