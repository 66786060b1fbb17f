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
* an *epoch*: a number that every announcement and settlement of a change increases;
* a *floor*: the newest version stamp of the cold store (``WriteResult.version``) that a
  settle brought, or *unknown*.

The four steps (each one atomic in the hot store):

``cache_mark(id, field, hold)``
    Sent before the cold write (*ordered*) or, when the cold store stamps its writes with
    versions and the session's floor is known, beside it: deletes the entries the change
    affects (one field, or the whole session when ``field`` is ``None``), counts one more
    change in flight for ``hold`` seconds, and returns the new epoch.
``cache_settle(id, field, epoch, entry, known, hold, version, ordered)``
    Sent after the cold write committed (or failed, or was cancelled): installs ``entry`` only
    if the epoch is still the one the mark returned, this change is the only one in flight,
    and the change may settle by :func:`settles` (its version newer than the floor; a mark
    that ran beside the cold write may have landed after its own commit, so only a known
    floor can tell its value from an older one); otherwise deletes what the change affected.
    The floor then moves by :func:`next_floor`. When the cold outcome is ``known``, the change
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
every change deletes what it affects before its call returns and again at its settle.
Deleting is always safe, so every doubt (a contended field, a cancelled call, an unreachable
hot layer, an unknown floor) ends in a deletion, and the next read refills from cold.

Why a known floor lets a mark land late. A settle of stamp ``v`` installs only if its epoch
is unchanged (no mark or settle since its own mark), it is alone in flight, and ``v`` is above
the floor. Take any change committed after it (stamp ``w > v``): if that change's mark came
after this one's, the epoch moved; if it came before and that change has not settled, it is
in flight; if it settled after this mark, the epoch moved; if it settled before this mark,
it raised the floor to ``w > v`` (every settle raises a known floor), or the floor became
unknown (a lost key, a change without a stamp) and this settle, not ordered, is refused. A
floor is first learned only from an *ordered* settle that is alone with its epoch unchanged:
its mark landed before its commit, so every later commit's mark came after it, and no stamp
newer than its own can have settled first.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from ._ids import SessionId, SessionRef


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


def settles(floor: int | None, version: int | None, ordered: bool) -> bool:
    """Whether a settle that is alone in flight, its epoch unchanged, may install: a stamped
    change newer than a known floor; an ordered change when the floor is unknown, or when the
    cold store gives no stamps."""
    if version is None or floor is None:
        return ordered
    return version > floor


def next_floor(
    floor: int | None, version: int | None, *, ordered: bool, alone: bool, known: bool
) -> int | None:
    """The floor after a settle: forgotten by a committed change without a stamp (``None``),
    raised by any stamp while known, and learned only from an ordered settle that is ``alone``
    (its epoch unchanged, no other change in flight). A change whose outcome is not ``known``
    leaves it as it is: it holds the session, so that no settle installs before a late commit
    of it has landed."""
    if not known:
        return floor
    if version is None:
        return None
    if floor is not None:
        return max(floor, version)
    return version if ordered and alone else None


class Settled(NamedTuple):
    """What :meth:`HotLayer.cache_settle` did.

    Attributes:
        installed: the entry was installed.
        floor: the hot layer knows the session's floor afterwards, so the session's next
            change may mark beside its cold write.
    """

    installed: bool
    floor: bool


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
        version: int | None = None,
        ordered: bool = True,
    ) -> Settled:
        """End a change announced by :meth:`cache_mark` (``epoch`` is what it returned, or
        ``None`` when unknown). Install ``entry`` if the epoch is unchanged, this change is
        the only one in flight and ``settles()`` allows it (``version``: the cold stamp of
        the change, ``None`` if none; ``ordered``: the mark landed before the cold call was
        sent), else delete the affected entries; move the floor by ``next_floor()`` (both in
        ``trio_ruts._cache``). If the cold outcome is ``known``, take a counted change
        (``epoch`` given) off the in-flight count; if not, count one more change in flight for
        ``hold`` seconds. Bumps the epoch.
        """

    @abc.abstractmethod
    async def cache_forget(self, ref: SessionRef) -> None:
        """Drop the hot copy of the session ``ref`` addresses and bump its epoch (past any
        fill's lease), as a settle of a change without an entry would: the session ended in
        cold by a path that knows no id (a revocation through a per-user index)."""

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
