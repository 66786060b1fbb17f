"""Users (SPEC section 9): the per-user index's shared pieces, and :class:`UserSession`.

A store that keeps a per-user index records, for each session logged in under a user: the
user id (so that ``Session.user()`` can answer), a label, and the idle lifetime the session
had at login. ``last_seen`` is derived from the session's expiry and that lifetime (a touch or
a write sets the expiry to ``idle`` seconds after the moment it happened), so it needs no
write of its own on any request. User ids are never used in clear as keys: stores address
the index by :func:`user_hash`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from ._errors import InvalidField

if TYPE_CHECKING:
    from ._store import SessionStore

#: Longest user id and label, in UTF-8 bytes.
MAX_USER_BYTES: Final = 1024
MAX_LABEL_BYTES: Final = 1024
#: How long (seconds) an index entry whose session cannot be seen yet is kept: a Redis
#: Cluster login writes the entry before the session (they live in different slots).
PENDING_GRACE: Final = 60


def check_user(user: object) -> str:
    """Validate a user id: a non-empty str of at most 1024 UTF-8 bytes. The message never
    repeats the value (user ids are personal data)."""
    if not isinstance(user, str):
        raise InvalidField(f"user ids are str, not {type(user).__name__}")
    if not user or len(user.encode("utf-8", "surrogatepass")) > MAX_USER_BYTES:
        raise InvalidField(f"user ids are 1 to {MAX_USER_BYTES} UTF-8 bytes long")
    try:
        user.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidField("user ids must be valid Unicode text (no lone surrogates)") from None
    if "\0" in user:
        raise InvalidField("user ids must not contain NUL characters")
    return user


def check_label(label: object) -> str | None:
    """Validate a label: ``None`` or a str of at most 1024 UTF-8 bytes, without NUL."""
    if label is None:
        return None
    if not isinstance(label, str):
        raise InvalidField(f"labels are str or None, not {type(label).__name__}")
    try:
        size = len(label.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidField("labels must be valid Unicode text (no lone surrogates)") from None
    if size > MAX_LABEL_BYTES or "\0" in label:
        raise InvalidField(
            f"labels are at most {MAX_LABEL_BYTES} UTF-8 bytes, without NUL; truncate it"
        )
    return label


def user_hash(user: str) -> bytes:
    """How stores address a user's index: SHA-256 of the UTF-8 user id."""
    return hashlib.sha256(user.encode("utf-8")).digest()


def last_seen(now: datetime, created: datetime, remaining: float | None, idle: int) -> datetime:
    """When a session was last used: its expiry minus its idle lifetime, within
    ``[created, now]`` (``remaining``: seconds to its expiry, ``None`` when persistent,
    where the login time is all that is known)."""
    if remaining is None or idle <= 0:
        return created
    seen = now + timedelta(seconds=remaining - idle)
    return max(created, min(now, seen))


@dataclass(slots=True)
class UserEntry:
    """What a store found for one live session of a user (store side of UserSession).

    Attributes:
        ref: how the store addresses the session internally (opaque; never shown).
        created_at, last_seen, label, current: as in :class:`UserSession`.
    """

    ref: Any
    created_at: datetime
    last_seen: datetime
    label: str | None
    current: bool


class UserSession:
    """One live session of a user, as ``user_sessions()`` lists them (a device list).

    Attributes:
        created_at: when the session was created (aware, UTC).
        last_seen: when it was last used (aware, UTC), as its idle timeout tracks it: exact
            to the touch interval (see :class:`~trio_ruts.Expiry`).
        label: the label given at login (the Quart extension: the User-Agent), or ``None``.
        current: whether it is the session that asked.

    It never exposes the session id, not even in its repr.
    """

    __slots__ = ("_ref", "_store", "_user", "created_at", "current", "label", "last_seen")

    def __init__(self, store: SessionStore, user: str, entry: UserEntry) -> None:
        self._store = store
        self._user = user
        self._ref = entry.ref
        self.created_at = entry.created_at
        self.last_seen = entry.last_seen
        self.label = entry.label
        self.current = entry.current

    async def revoke(self) -> bool:
        """End this session (log that device out).

        Returns:
            ``True`` if it was still live and is now gone.

        Cancellation: the session is either ended or untouched.
        """
        return len(await self._store._end_user_sessions(self._user, only=[self._ref])) > 0

    def __repr__(self) -> str:
        return (
            f"<UserSession label={self.label!r} created_at={self.created_at.isoformat()} "
            f"last_seen={self.last_seen.isoformat()} current={self.current}>"
        )


def wrap(store: SessionStore, user: str, entries: Sequence[UserEntry]) -> list[UserSession]:
    """Entries as :class:`UserSession` objects, the oldest first."""
    found = [UserSession(store, user, e) for e in entries]
    found.sort(key=lambda us: us.created_at)
    return found


def utc_now() -> datetime:
    return datetime.now(UTC)
