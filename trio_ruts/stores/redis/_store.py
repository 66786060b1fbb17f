"""RedisStore: one hash per session, every multi-step change one Lua script."""

from __future__ import annotations

import base64
import random
import ssl
from collections.abc import Sequence
from typing import Any, Final, Literal

import trio

from ..._cache import CacheEntry, CacheRead, HotLayer, Marker, Settled
from ..._errors import SerializationError, SessionIdCollision, StoreError
from ..._ids import TAG_BYTES, TAG_CHARS, SessionId, SessionRef, id_digest
from ..._ints import not_an_integer, out_of_range
from ..._map import CorruptValue
from ..._store import (
    FieldRecord,
    Read,
    Removal,
    SessionRecord,
    SessionStore,
    Touch,
    Write,
    WriteResult,
)
from ..._users import UserEntry
from ..._watch import WatchHub
from .._extras import require
from . import _scripts as scripts
from . import _users as users
from ._transport import (
    Arg,
    NotOpen,
    ReplyError,
    Subscription,
    Transport,
    TransportFactory,
    parse_url,
)

FieldExpiry = Literal["auto", "native", "script"]


class RedisStore(SessionStore, HotLayer):
    """Sessions in Redis (or Valkey): one hash per session, keyed ``prefix{tag}digest``.

    Use :meth:`from_url`, :meth:`cluster` or :meth:`from_client` rather than the constructor.

    Per-field expiry uses ``HEXPIRE`` where the server has it (Redis >= 7.4, Valkey >= 9) and
    the store's scripts elsewhere (detected once when the store opens; force it with
    ``per_field_expiry="native"`` or ``"script"``). Either way expiry follows the server's
    clock.
    """

    def __init__(
        self,
        transport: TransportFactory,
        *,
        prefix: str | bytes = "session:",
        per_field_expiry: FieldExpiry = "auto",
    ) -> None:
        if per_field_expiry not in ("auto", "native", "script"):
            raise ValueError("per_field_expiry is 'auto', 'native' or 'script'")
        self._factory = transport
        # The script arguments of the last Touch used: an app has one Expiry (or a few), so
        # reads mostly pass the same Touch object again.
        self._touch_of: Touch | None = None
        self._touch_tail: tuple[Arg, Arg, Arg] = (b"", b"", b"")
        # Asked for when the store opens; until then it names the server and refuses commands.
        self._transport: Transport = NotOpen(transport)
        self._prefix = prefix.encode() if isinstance(prefix, str) else bytes(prefix)
        self._field_expiry: FieldExpiry = per_field_expiry
        self._native = b"0"
        # How the scripts announce a session's end: PUBLISH on one server (and on a cluster
        # of Redis < 7.0), SPUBLISH (sharded) on a cluster; decided when the store opens.
        self._publish = b"PUBLISH"
        self._subscription: Subscription | None = None  # known with the first watch

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str | bytes = "session:",
        pool_size: int = 50,
        connect_timeout: float = 5.0,
        timeout: float | None = 5.0,
        ssl_context: ssl.SSLContext | None = None,
        per_field_expiry: FieldExpiry = "auto",
    ) -> RedisStore:
        """A store for ``redis://[user:password@]host[:port][/db]``, ``rediss://...`` (TLS)
        or ``unix:///path?db=0&password=...``. A cluster node as seed URL is detected when
        the store opens, and the whole cluster is used.

        Args:
            pool_size: most connections open to one server at once. Tasks share one
                connection per server (their commands are pipelined); another opens only
                while one that failed is still closing.
            connect_timeout: seconds before a connection attempt raises ``StoreTimeout``.
            timeout: seconds a command may wait for its reply; past it the call raises
                ``StoreTimeout`` and its connection is dropped. ``None``: no limit but the
                caller's own deadlines.
        """
        require("RedisStore", "redis", "hiredis")
        from ._transport import NativeFactory, Options

        endpoint = parse_url(url, ssl_context)
        options = Options(pool_size, connect_timeout, timeout)
        detect = None if endpoint.unix_path is None else False  # no cluster over unix sockets
        return cls(
            NativeFactory([endpoint], options, cluster=detect),
            prefix=prefix,
            per_field_expiry=per_field_expiry,
        )

    @classmethod
    def cluster(
        cls,
        urls: Sequence[str],
        *,
        prefix: str | bytes = "session:",
        pool_size: int = 50,
        connect_timeout: float = 5.0,
        timeout: float | None = 5.0,
        ssl_context: ssl.SSLContext | None = None,
        per_field_expiry: FieldExpiry = "auto",
    ) -> RedisStore:
        """A store on a Redis Cluster, given one or more seed node URLs; the options are
        :meth:`from_url`'s, per node."""
        require("RedisStore", "redis", "hiredis")
        from ._transport import NativeFactory, Options

        seeds = [parse_url(u, ssl_context) for u in urls]
        return cls(
            NativeFactory(seeds, Options(pool_size, connect_timeout, timeout), cluster=True),
            prefix=prefix,
            per_field_expiry=per_field_expiry,
        )

    @classmethod
    def from_client(
        cls,
        client: Any,
        *,
        prefix: str | bytes = "session:",
        timeout: float | None = 5.0,
        per_field_expiry: FieldExpiry = "auto",
    ) -> RedisStore:
        """A store on an existing redis-py ``redis.asyncio.Redis`` or ``RedisCluster`` client
        (``decode_responses=False``), driven through trio-asyncio. The store runs the asyncio
        loop inside its nursery; the client's connections belong to that loop. Whatever
        redis-py raises reaches callers as ``StoreError``.

        Args:
            timeout: seconds a command may take; past it the call raises ``StoreTimeout``
                (redis-py drops the connection). ``None``: no limit but the caller's own.
        """
        require("RedisStore.from_client", "redis-py", "redis", "trio_asyncio")
        from ._redispy import RedisPyFactory

        factory = RedisPyFactory(client, timeout)
        return cls(factory, prefix=prefix, per_field_expiry=per_field_expiry)

    # -- lifecycle -----------------------------------------------------------------------------

    async def _open(self, nursery: trio.Nursery) -> None:
        self._transport = await self._factory.open(self._exit_stack, nursery)
        if self._field_expiry == "auto":
            found = await self._transport.execute(
                None, ("EVAL", scripts.DETECT_HEXPIRE, 0), idempotent=True
            )
            self._raise_for(found, "detect HEXPIRE")
            self._native = b"1" if found == 1 else b"0"
        else:
            self._native = b"1" if self._field_expiry == "native" else b"0"
        self._publish = b"PUBLISH"
        if not users.single_server(self):
            found = await self._transport.execute(
                None, ("EVAL", _DETECT_SHARDED, 0), idempotent=True
            )
            self._raise_for(found, "detect sharded pub/sub")
            if found == 1:
                self._publish = b"SPUBLISH"

    async def _close(self) -> None:
        await self._transport.aclose()

    @property
    def uses_native_field_expiry(self) -> bool:
        """Whether the server expires fields itself (``HEXPIRE``); known once open."""
        return self._native == b"1"

    def __repr__(self) -> str:
        return f"RedisStore({self._transport}, prefix={self._prefix!r})"

    # -- helpers -------------------------------------------------------------------------------

    def key(self, id: SessionId) -> bytes:
        """The Redis key of a session: ``prefix{tag}digest``. The tag (the id's first four
        characters, 24 bits) survives regeneration, so renames stay in one cluster slot; the
        rest is the unpadded base64url of ``id_digest`` (SHA-256 of the
        whole id), so no key holds a usable id."""
        digest = base64.urlsafe_b64encode(id_digest(id))[:_DIGEST_CHARS]
        return b"".join((self._prefix, b"{", str(id).encode("ascii")[:TAG_CHARS], b"}", digest))

    def _ref_key(self, ref: SessionRef) -> bytes:
        """:meth:`key` of the session ``ref`` addresses."""
        digest = base64.urlsafe_b64encode(ref.digest)[:_DIGEST_CHARS]
        return b"".join((self._prefix, b"{", ref.tag.encode("ascii"), b"}", digest))

    def _key_ref(self, key: bytes) -> SessionRef | None:
        """The :class:`SessionRef` a session key was made from, or ``None``."""
        rest = key[len(self._prefix) :]
        if (
            not key.startswith(self._prefix)
            or rest[:1] != b"{"
            or rest[1 + TAG_CHARS :][:1] != b"}"
        ):
            return None
        try:
            digest = base64.urlsafe_b64decode(rest[2 + TAG_CHARS :] + b"=")
            return SessionRef(rest[1 : 1 + TAG_CHARS].decode("ascii"), digest)
        except (ValueError, UnicodeDecodeError):
            return None

    def _raise_for(self, reply: Any, what: str, field: str | None = None) -> None:
        if isinstance(reply, ReplyError):
            message = str(reply)
            if message.startswith("COLLISION"):
                raise SessionIdCollision(
                    "the new session id is already in use; nothing was changed"
                )
            if message.startswith("NOTINT") and field is not None:
                raise not_an_integer(field)
            if message.startswith("OVERFLOW") and field is not None:
                raise out_of_range(field)
            if message.startswith("CORRUPT") and field is not None:
                raise SerializationError(
                    f"field {field!r}: its stored expiry is corrupt; overwrite or remove the field",
                    field=field,
                )
            raise StoreError(f"{self._transport} refused to {what}: {message}")

    async def _run(
        self,
        script: scripts.Script,
        keys: Sequence[bytes],
        args: Sequence[Arg],
        idempotent: bool,
        field: str | None = None,
    ) -> Any:
        self._check_open()
        command = ("EVALSHA", script.sha, len(keys), *keys, self._native, *args)
        reply = await self._transport.execute(keys[0], command, idempotent=idempotent)
        if isinstance(reply, ReplyError):
            if str(reply).startswith("NOSCRIPT"):
                # First use on this server (or after SCRIPT FLUSH): EVAL also caches the script.
                command = ("EVAL", script.source, *command[2:])
                reply = await self._transport.execute(keys[0], command, idempotent=idempotent)
            self._raise_for(reply, script.name, field)
        return reply

    def _touch_args(self, touch: Touch) -> tuple[Arg, Arg, Arg]:
        """:func:`_touch_args`, kept for the last ``touch`` seen."""
        if touch is not self._touch_of:
            self._touch_tail = _touch_args(touch)
            self._touch_of = touch
        return self._touch_tail

    # -- operations ----------------------------------------------------------------------------

    async def get(self, id: SessionId, field: str) -> bytes | None:
        if self._native == b"1":
            self._check_open()
            key = self.key(id)
            reply = await self._transport.execute(key, ("HGET", key, field), idempotent=True)
            self._raise_for(reply, "get")
        else:
            reply = await self._run(scripts.GET, (self.key(id),), (field,), True, field)
        return reply  # type: ignore[no-any-return]

    async def touch_get(self, id: SessionId, field: str, touch: Touch) -> Read:
        # Safe to retry like a read: a touch sets the same lifetime again (a retry after one
        # that landed finds nothing to extend, and that touch's cookie refresh is lost).
        args = (field, *self._touch_args(touch))
        reply = await self._run(scripts.TOUCH_GET, (self.key(id),), args, True, field)
        if type(reply) is list:  # it extended the session: {value, new ttl} or {value} (idle)
            return Read(reply[0], reply[1] if len(reply) > 1 else touch.idle)
        return Read(reply)

    async def get_all(self, id: SessionId) -> SessionRecord | None:
        return await self._get_all(id, None)

    async def touch_get_all(self, id: SessionId, touch: Touch) -> SessionRecord | None:
        return await self._get_all(id, touch)

    async def _get_all(self, id: SessionId, touch: Touch | None) -> SessionRecord | None:
        args = () if touch is None else self._touch_args(touch)
        reply = await self._run(scripts.GET_ALL, (self.key(id),), args, True)
        if reply is None:
            return None
        fields: dict[str, FieldRecord] = {}
        for i in range(2, len(reply), 4):
            name, value, ttl, hot = reply[i].decode(), reply[i + 1], reply[i + 2], reply[i + 3]
            if ttl == b"corrupt":  # the field alone is unreadable; the session stays usable
                fields[name] = FieldRecord(CorruptValue("its stored expiry is corrupt"))
                continue
            policy = int(hot) if hot.lstrip(b"-").isdigit() else None
            fields[name] = FieldRecord(value, int(ttl) if ttl else None, policy)
        return SessionRecord(int(reply[0]), fields, bool(reply[1]))

    @staticmethod
    def _same_slot(a: SessionId, b: SessionId) -> None:
        if a.bytes[:TAG_BYTES] != b.bytes[:TAG_BYTES]:
            raise ValueError(
                "the new id must keep the old id's hash tag (use old_id.regenerate()), or the "
                "rename would cross Redis Cluster slots"
            )

    async def write(self, write: Write) -> WriteResult:
        if write.id is not None:
            self._same_slot(write.id, write.fresh_id)
        current = self.key(write.id) if write.id is not None else None
        # The script touches the fresh key only to create a session or rename one: otherwise
        # it gets the current key again, which saves hashing an id it does not need.
        fresh = current if current is not None and not write.rename else self.key(write.fresh_id)
        if current is None:
            current = fresh
        args: tuple[Arg, ...] = (
            write.field,
            write.value,
            b"1" if write.only_if_absent else b"0",
            b"" if write.field_ttl is None else write.field_ttl,
            write.key_ttl,
            b"1" if write.rename else b"0",
            b"" if write.hot_ttl is None else write.hot_ttl,
            b"0" if write.id is None else b"1",
            b"0" if write.expected is None else b"1",
            b"" if write.expected is None else write.expected,
            b"" if write.incr is None else str(write.incr),
            write.int_format or b"",
            b"" if write.absolute is None else write.absolute,
            await users.before_move(self, current, fresh) if write.rename else b"1",
        )
        if write.id is not None and (
            write.rename or write.absolute is not None or (write.field_ttl or 0) > 0
        ):
            # The write may end the session under write.id (a rename, or the cap), or make
            # it end sooner (the cap, a field given a lifetime): notify.
            script = scripts.WRITE_NOTIFY if write.incr is None else scripts.WRITE_INCR_NOTIFY
            args = (*args, *self._watch_args(write.id, "renamed" if write.rename else "expired"))
        else:
            script = scripts.WRITE if write.incr is None else scripts.WRITE_INCR
        reply = await self._run(script, (current, fresh), args, False, write.field)
        written, moved, ttl = reply[0], reply[1], reply[2]
        if ttl == -3:
            assert write.id is not None
            return WriteResult(False, write.id, 0, absent=True)
        # Only a rename moves a session that has an id (without one, fresh may be current).
        target = write.fresh_id if (moved and write.rename) or write.id is None else write.id
        value = reply[3] if len(reply) > 3 else None
        return WriteResult(bool(written), target, int(ttl), value=value)

    async def remove(self, id: SessionId, field: str) -> Removal:
        args = (field, *self._watch_args(id, "deleted"))
        reply = await self._run(scripts.REMOVE_NOTIFY, (self.key(id),), args, False)
        existed, ttl = reply[0], reply[1]
        value = reply[2] if len(reply) > 2 else None  # a false Lua value ends the array
        return Removal(bool(existed), None if ttl == -2 else int(ttl), value if existed else None)

    async def delete(self, id: SessionId) -> bool:
        return await self._end_session(id)

    async def _end_session(self, id: SessionId, reason: str = "deleted") -> bool:
        args = self._watch_args(id, reason)
        return bool(await self._run(scripts.DELETE_NOTIFY, (self.key(id),), args, False))

    async def expire(self, id: SessionId, seconds: int) -> bool:
        args = (seconds, b"", *self._watch_args(id, "deleted" if seconds == 0 else "expired"))
        ttl = await self._run(scripts.EXPIRE_NOTIFY, (self.key(id),), args, False)
        return bool(ttl != -2)

    async def expire_capped(self, id: SessionId, seconds: int, absolute: int) -> int | None:
        args = (seconds, absolute, *self._watch_args(id, "expired"))
        ttl = await self._run(scripts.EXPIRE_NOTIFY, (self.key(id),), args, False)
        return None if ttl == -2 else int(ttl)

    async def touch(self, id: SessionId, touch: Touch) -> int | None:
        ttl = await self._run(scripts.TOUCH, (self.key(id),), self._touch_args(touch), False)
        return None if ttl == -2 else int(ttl)

    async def rename(self, old: SessionId, new: SessionId) -> int | None:
        self._same_slot(old, new)
        cur, fresh = self.key(old), self.key(new)
        flag = await users.before_move(self, cur, fresh)
        args = (flag, *self._watch_args(old, "renamed"))
        ttl = await self._run(scripts.RENAME_NOTIFY, (cur, fresh), args, False)
        return None if ttl == -3 else int(ttl)

    # -- users (SPEC section 9; see _users) ----------------------------------------------------

    async def login(
        self, old: SessionId, new: SessionId, user: str, label: str | None, idle: int
    ) -> int | None:
        return await users.login(self, old, new, user, label, idle)

    async def session_user(self, id: SessionId) -> str | None:
        return await users.session_user(self, id)

    async def logout(self, id: SessionId) -> bool:
        return await users.logout(self, id)

    async def _user_entries(self, user: str, current: SessionId | None) -> list[UserEntry]:
        return await users.entries(self, user, current)

    async def _end_user_sessions(
        self, user: str, *, only: list[Any] | None = None, keep: SessionId | None = None
    ) -> list[Any]:
        return await users.end(self, user, only, keep)

    def _session_ref_of(self, ref: Any) -> SessionRef | None:
        return self._key_ref(ref)

    def _user_key(self, user: str) -> bytes:
        return users.user_key(self, user)

    # -- live revocation (see trio_ruts._watch) -----------------------------------------------

    def watch_channel(self, id: SessionId) -> bytes:
        """The pub/sub channel that announces the end of session ``id``: ``prefix watch:``
        and the session's key after its prefix (``{tag}digest``). It keeps the key's hash
        tag and names the session by its digest, never by id; a script that knows only the
        key (a revocation) derives it."""
        return self._watch_channel_of(self.key(id))

    def _watch_channel_of(self, key: bytes) -> bytes:
        return self._watch_prefix + key[len(self._prefix) :]

    @property
    def _watch_prefix(self) -> bytes:
        return self._prefix + b"watch:"

    def _watch_args(self, id: SessionId, reason: str) -> tuple[bytes, bytes, str]:
        return self._publish, self.watch_channel(id), reason

    @property
    def _sharded(self) -> bool:
        """Whether notifications use sharded pub/sub (a cluster of Redis >= 7.0)."""
        return self._publish == b"SPUBLISH"

    def _watch_hub(self) -> WatchHub:
        if self._watch_hub_state is None:
            self._check_open()
            # Fail the first watch() itself, not the store's nursery, when the subscription
            # cannot be made: hiredis missing, or a redis-py client's settings not reusable.
            require("RedisStore.watch()", self._factory.extra, "hiredis")
            self._subscription = self._factory.subscription(self._transport)
        return super()._watch_hub()

    def _watch_digest(self, channel: bytes) -> str | None:
        """How watch_digest names the session of ``channel`` (the key's digest part,
        base64url, in hex), or ``None``."""
        start = len(self._watch_prefix) + 1 + TAG_CHARS + 1
        try:
            return base64.urlsafe_b64decode(channel[start:] + b"=").hex()[:32]
        except ValueError:
            return None  # not one of ours

    async def _watch_listen(self, hub: WatchHub) -> None:
        def on_message(channel: bytes, payload: bytes) -> None:
            digest = self._watch_digest(channel)
            if digest is not None:
                hub.notify(digest, payload.decode("ascii", "replace"))

        from ._transport import subscribe  # needs hiredis: loaded with the first watch

        plan = self._subscription
        assert plan is not None
        if not self._sharded:
            pattern = _glob_escape(self._watch_prefix + b"{") + b"*"
            await subscribe(
                plan.seeds[0],
                pattern,
                on_message,
                hub.connected,
                connect_timeout=_SUBSCRIBE_CONNECT,
            )
            return
        from . import _sharded

        await _sharded.listen(self, hub, plan, on_message, _SUBSCRIBE_CONNECT)

    # -- the hot-layer protocol (see trio_ruts._cache) ---------------------------------------

    async def cache_read(self, id: SessionId, field: str) -> CacheRead:
        key = self.key(id)
        reply = None
        if self._native == b"1":
            # Fields expire by themselves: a plain HMGET answers hits and most misses; only a
            # miss on a session without protocol state needs the script (to start one).
            self._check_open()
            command = ("HMGET", key, field, b"\0x:" + field.encode(), b"\0v")
            reply = await self._transport.execute(key, command, idempotent=True)
            self._raise_for(reply, "read the cache")
            if reply[0] is None and reply[1] is None and reply[2] is None:
                reply = None
        if reply is None:
            args = (field, _seed(), _ms(_STATE_TTL))
            reply = await self._run(scripts.CACHE_READ, (key,), args, False)
        value, marker, epoch = reply
        if value is None and marker is not None:
            value = Marker(marker.decode())
        return CacheRead(value, int(epoch or 0))

    async def cache_mark(self, id: SessionId, field: str | None, hold: float) -> int:
        args = ("" if field is None else field, _ms(hold), _seed())
        return int(await self._run(scripts.CACHE_MARK, (self.key(id),), args, False))

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
        args: tuple[Arg, ...] = (
            "" if field is None else field,
            b"" if epoch is None else epoch,
            b"1" if known else b"0",
            *_entry_args(entry),
            _ms(hold),
            _seed(),
            b"" if version is None else version,
            b"1" if ordered else b"0",
        )
        done = int(await self._run(scripts.CACHE_SETTLE, (self.key(id),), args, False))
        return Settled(bool(done & 1), bool(done & 2))

    async def cache_forget(self, ref: SessionRef) -> None:
        # A settle of a change without an entry, its outcome known, by the ref's key.
        args = (b"", b"", b"1", *_entry_args(None), 0, _seed(), b"", b"1")
        await self._run(scripts.CACHE_SETTLE, (self._ref_key(ref),), args, False)

    async def cache_fill(
        self, id: SessionId, lease: int, entries: Sequence[CacheEntry], ttl: int
    ) -> bool:
        args: list[Arg] = [lease, ttl]
        for entry in entries:
            args.append(entry.field)
            args.extend(_entry_args(entry))
        return bool(await self._run(scripts.CACHE_FILL, (self.key(id),), args, False))

    async def cache_put(
        self,
        id: SessionId,
        entry: CacheEntry,
        *,
        only_if_absent: bool,
        create: bool,
        lease: int | None = None,
    ) -> bool | None:
        assert isinstance(entry.value, bytes)
        args = (
            entry.field,
            entry.value,
            entry.ttl,
            b"1" if only_if_absent else b"0",
            b"1" if create else b"0",
            b"" if lease is None else lease,
        )
        done = await self._run(scripts.CACHE_PUT, (self.key(id),), args, False)
        return None if done == -1 else bool(done)


#: Characters of a key's digest part: 32 bytes in unpadded base64url.
_DIGEST_CHARS: Final = 43


#: 1 where the server has sharded pub/sub (Redis >= 7.0; REDIS_VERSION_NUM is 7.0's too).
_DETECT_SHARDED: Final = "return (redis.REDIS_VERSION_NUM or 0) >= 0x070000 and 1 or 0"
#: Connect timeout of the subscription's connection (seconds).
_SUBSCRIBE_CONNECT: Final = 5.0


def _glob_escape(text: bytes) -> bytes:
    """``text`` matched literally by a PSUBSCRIBE pattern."""
    out = bytearray()
    for byte in text:
        if byte in b"*?[]\\":
            out += b"\\"
        out.append(byte)
    return bytes(out)


#: How long the protocol state started by a miss lives without a fill or a change.
_STATE_TTL: Final = 60.0


def _touch_args(touch: Touch) -> tuple[Arg, Arg, Arg]:
    """idle and below in ms, and the cap in seconds (``""``: none), for the scripts. Below is
    at most idle (a touch never shortens a lifetime; TOUCH_GET counts on it)."""
    below = min(max(0, round(touch.below * 1000)), touch.idle * 1000)
    cap = b"" if touch.absolute is None else b"%d" % touch.absolute
    return b"%d" % (touch.idle * 1000), b"%d" % below, cap


def _seed() -> int:
    """A random first epoch (exact in Lua's doubles)."""
    return random.getrandbits(50)


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _entry_args(entry: CacheEntry | None) -> tuple[Arg, Arg, Arg]:
    """kind, value, ttl of an entry for the cache scripts (kind ``""``: no entry)."""
    if entry is None:
        return b"", b"", 0
    if isinstance(entry.value, Marker):
        return entry.value.value, b"", entry.ttl
    return b"v", entry.value, entry.ttl
