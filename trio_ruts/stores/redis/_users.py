"""The Redis store's per-user index (SPEC section 9); the scripts are in ``_user_scripts``.

On a single server every step is one script: a login renames the session and records it in
its user's index atomically. A Redis Cluster keeps a user's index in another slot than the
sessions, so a login there is two steps ordered so that a failure between them can only leave
an index entry without a session (dropped later, when it is due), never a session its index
misses: the entry first (scored a grace period ahead, so that no listing drops it before its
session exists), then the session. Renames of logged-in sessions (``regenerate``) do the same.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import trio

from ..._ids import SessionId
from ..._users import PENDING_GRACE, UserEntry, last_seen, user_hash
from . import _user_scripts as scripts

if TYPE_CHECKING:
    from ._store import RedisStore


def single_server(store: RedisStore) -> bool:
    """Whether the store talks to one server (scripts may reach any key), not a cluster;
    known once the store is open (a closed store's calls fail before they need it)."""
    found: bool | None = store.__dict__.get("_single_server")
    if found is not None:
        return found
    transport = store._transport
    client = getattr(transport, "_client", None)
    if client is not None:  # a redis-py client (whose store may have no hiredis)
        found = "Cluster" not in type(client).__name__
    else:
        from ._transport._cluster import Cluster

        found = not isinstance(transport, Cluster)
    if store.is_open:
        store.__dict__["_single_server"] = found
    return found


def user_key(store: RedisStore, user: str) -> bytes:
    """The key of a user's index: the prefix, ``user:``, the user id's SHA-256 (base64url)."""
    digest = base64.urlsafe_b64encode(user_hash(user)).rstrip(b"=")
    return store._prefix + b"user:" + digest


def _entry(
    key: bytes, created: bytes, label: bytes, idle: bytes, pttl: int, now_ms: int, mine: bytes
) -> UserEntry:
    now = datetime.fromtimestamp(now_ms / 1000, UTC)
    made = datetime.fromtimestamp(int(created) / 1000, UTC) if created else now
    remaining = None if pttl < 0 else pttl / 1000
    seen = last_seen(now, made, remaining, int(idle or 0))
    text = label[1:].decode("utf-8", "replace") if label else None
    return UserEntry(key, made, seen, text, key == mine)


async def login(
    store: RedisStore, old: SessionId, new: SessionId, user: str, label: str | None, idle: int
) -> int | None:
    store._same_slot(old, new)
    ix = user_key(store, user)
    cur, fresh = store.key(old), store.key(new)
    args = (user, label or "", b"0" if label is None else b"1", idle)
    if single_server(store):
        keys: tuple[bytes, ...] = (cur, fresh, ix)
        flag = b"1"
    else:
        # The entry first: a failure after it leaves an entry without a session, never the
        # reverse.
        await store._run(scripts.INDEX_PENDING, (ix,), (fresh, PENDING_GRACE * 1000), False)
        keys, flag = (cur, fresh), b"0"
    notify = store._watch_args(old, "renamed")
    ttl = await store._run(scripts.LOGIN, keys, (*args, flag, ix, *notify), False)
    if ttl == -3:
        return None
    if flag == b"0":  # the entry's score: the session's expiry, as a single server's login
        pttl = -1 if ttl == -1 else int(ttl) * 1000
        await store._run(scripts.INDEX_FIX, (ix,), (fresh, f"={pttl}"), False)
    return int(ttl)


async def before_move(store: RedisStore, cur: bytes, fresh: bytes) -> bytes:
    """What a rename sends its scripts: ``b"1"`` on a single server (they move the index
    entry themselves); on a cluster, first the new key's entry when the session is logged in."""
    if single_server(store):
        return b"1"
    ix = await store._run(scripts.INDEX_OF, (cur,), (), True)
    if ix:
        await store._run(scripts.INDEX_PENDING, (ix,), (fresh, PENDING_GRACE * 1000), False)
    return b"0"


async def session_user(store: RedisStore, id: SessionId) -> str | None:
    found = await store._run(scripts.USER_OF, (store.key(id),), (), True)
    return None if not found else bytes(found).decode("utf-8")


async def logout(store: RedisStore, id: SessionId) -> bool:
    key = store.key(id)
    single = single_server(store)
    args = (b"1" if single else b"0", *store._watch_args(id, "deleted"))
    existed, ix = await store._run(scripts.LOGOUT, (key,), args, False)
    if ix and not single:  # the session is gone: now its entry
        await store._transport.execute(ix, ("ZREM", ix, key), idempotent=True)
    return bool(existed)


async def entries(store: RedisStore, user: str, current: SessionId | None) -> list[UserEntry]:
    ix = user_key(store, user)
    mine = b"" if current is None else store.key(current)
    if single_server(store):
        reply = await store._run(scripts.USERS_SCAN, (ix,), ("list", b"", b""), False)
        now = int(reply[0])
        return [
            _entry(reply[i], reply[i + 1], reply[i + 2], reply[i + 3], reply[i + 4], now, mine)
            for i in range(1, len(reply), 5)
        ]
    # A cluster: each session in its own slot, one at a time (a listing is rare).
    members = await _members(store, ix)
    found = [await store._run(scripts.USER_SESSION, (key,), (ix, "list"), True) for key in members]
    fixes: list[bytes | str | int] = []
    listed = []
    for key, reply in zip(members, found, strict=True):
        if not reply[0]:
            fixes += [key, "gone"]
            continue
        _, created, label, idle, pttl, now = reply
        fixes += [key, int(pttl)]
        listed.append(_entry(key, created, label, idle, int(pttl), int(now), mine))
    if fixes:
        await store._run(scripts.INDEX_FIX, (ix,), fixes, False)
    return listed


#: Readings of the index a Redis Cluster revocation makes at most.
_END_ROUNDS = 4


async def end(
    store: RedisStore, user: str, only: Sequence[Any] | None, keep: SessionId | None
) -> list[Any]:
    """End the user's live sessions (those in ``only``), except ``keep``: the one path of
    every revocation."""
    ix = user_key(store, user)
    spare = b"" if keep is None else store.key(keep)
    if single_server(store):
        chosen = [] if only is None else [k for k in only if k != spare]
        if only is not None and not chosen:
            await trio.lowlevel.checkpoint()
            return []
        args = ("end", spare, store._watch_prefix, *chosen)
        reply = await store._run(scripts.USERS_SCAN, (ix,), args, False)
        return list(reply[1:])
    ended: list[bytes] = []
    gone: set[bytes] = set()
    # A rename writes the new key's entry before it moves the session, so a session that
    # moved away from a key visited here is under another key of the index: read it again
    # and visit every entry until a reading finds no live session (a few rounds at most; a
    # session renamed over and over at the same time may still outrun them, see the docs).
    for _ in range(_END_ROUNDS):
        members = [k for k in await _members(store, ix) if k != spare]
        if only is not None:
            members = [k for k in members if k in only]
        found = False
        for key in members:
            args = (ix, "end", store._watch_channel_of(key), store._publish)
            reply = await store._run(scripts.USER_SESSION, (key,), args, False)
            if reply[0]:
                ended.append(key)
                gone.discard(key)
                found = True
            elif key not in ended:
                gone.add(key)
        if not found:
            break
    fixes: list[bytes | str] = []
    for key in ended:
        fixes += [key, "ended"]
    for key in sorted(gone):
        fixes += [key, "gone"]
    if fixes:
        await store._run(scripts.INDEX_FIX, (ix,), fixes, False)
    return ended


async def _members(store: RedisStore, ix: bytes) -> list[bytes]:
    store._check_open()
    reply = await store._transport.execute(ix, ("ZRANGE", ix, 0, -1), idempotent=True)
    store._raise_for(reply, "read a user's index")
    return list(reply)
