"""Move sessions written before keys were hashed to their hashed keys (an offline command).

Earlier releases keyed a session ``prefix{tag}rest``: the id in clear, which
anyone reading the server (a dump, a replica, ``MONITOR``) could use as a cookie. Keys are now
``prefix{tag}digest`` (see :meth:`RedisStore.key`). This command renames every old key to its
new name, once::

    python -m trio_ruts.stores.redis.migrate redis://host:6379/0 [--prefix session:]

On a cluster, give the URL of every primary: each one's keys are renamed on that node (a
rename keeps the hash tag, so it stays in its slot). A rename is ``RENAMENX``: atomic, keeping
the session's TTL and its fields' (``HEXPIRE``) TTLs; it never overwrites a hashed key. Safe
to run again, and while the application runs: a session is readable under its old key by the
old release and under its new key by the new one, so run this right after the new release
starts (sessions used between the two start over, as after a logout).
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from typing import Final

import trio

from ..._errors import InvalidSessionId, StoreError
from ..._ids import ID_CHARS, TAG_CHARS, SessionId
from ._store import RedisStore
from ._transport import NativeFactory, Options, ReplyError, parse_url

#: Length of what follows the prefix in an old key: ``{tag}`` and the rest of the id.
_LEGACY_TAIL: Final = ID_CHARS + 2
_GLOB_SPECIAL: Final = re.compile(rb"([*?\[\]\\])")


def legacy_key(prefix: bytes, id: SessionId) -> bytes:
    """The key releases before hashed keys gave a session: ``prefix{tag}rest``, the id in
    clear. Kept to recognise old keys (and for tests that write the old layout)."""
    text = str(id).encode("ascii")
    return prefix + b"{" + text[:TAG_CHARS] + b"}" + text[TAG_CHARS:]


def legacy_id(prefix: bytes, key: bytes) -> SessionId | None:
    """The id in an old-layout key, or ``None`` if ``key`` is not one."""
    tail = key[len(prefix) :]
    if not key.startswith(prefix) or len(tail) != _LEGACY_TAIL:
        return None
    if tail[:1] != b"{" or tail[TAG_CHARS + 1 : TAG_CHARS + 2] != b"}":
        return None
    try:
        return SessionId.parse((tail[1 : TAG_CHARS + 1] + tail[TAG_CHARS + 2 :]).decode())
    except (UnicodeDecodeError, InvalidSessionId):
        return None


@dataclass
class Migrated:
    """What a run did: keys renamed; old keys left because their hashed key exists already;
    old keys that expired (or were moved by another run) between the scan and the rename."""

    renamed: int = 0
    kept: int = 0
    gone: int = 0


async def migrate_server(url: str, prefix: str | bytes = "session:", batch: int = 500) -> Migrated:
    """Rename the old-layout keys of one server (one cluster node) to their hashed keys.

    Cancellation: each key is either renamed or untouched; running again finishes the job.

    Raises:
        StoreError: the server is unreachable or refused a command.
    """
    raw_prefix = prefix.encode() if isinstance(prefix, str) else bytes(prefix)
    # One node, even a cluster node: SCAN sees that node's keys, which it can rename.
    factory = NativeFactory([parse_url(url, None)], Options(4, 5.0, 30.0), cluster=False)
    done = Migrated()
    async with RedisStore(factory, prefix=raw_prefix, per_field_expiry="script") as store:
        transport = store._transport
        pattern = _GLOB_SPECIAL.sub(rb"\\\1", raw_prefix) + b"{????}" + b"?" * (ID_CHARS - 4)
        cursor = b"0"
        while True:
            reply = await transport.execute(
                None, ("SCAN", cursor, "MATCH", pattern, "COUNT", batch), idempotent=True
            )
            if isinstance(reply, ReplyError):
                raise StoreError(f"{transport} refused to SCAN: {reply}")
            cursor, keys = reply
            found = [(key, legacy_id(raw_prefix, key)) for key in keys]

            async def rename(old: bytes, new: bytes) -> None:
                answer = await transport.execute(old, ("RENAMENX", old, new), idempotent=True)
                if isinstance(answer, ReplyError):
                    if "no such key" not in str(answer):
                        raise StoreError(f"{transport} refused to rename a key: {answer}")
                    done.gone += 1
                elif answer == 1:
                    done.renamed += 1
                else:
                    done.kept += 1

            async with trio.open_nursery() as nursery:  # pipelined on the one connection
                for key, id in found:
                    if id is not None:
                        nursery.start_soon(rename, key, store.key(id))
            if cursor == b"0":
                return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trio_ruts.stores.redis.migrate",
        description="Rename sessions stored under their id in clear to hashed keys.",
    )
    parser.add_argument("urls", nargs="+", metavar="URL", help="a server, or every primary")
    parser.add_argument("--prefix", default="session:", help="the store's key prefix")
    args = parser.parse_args(argv)
    for url in args.urls:
        try:
            done = trio.run(migrate_server, url, args.prefix)
        except (StoreError, ValueError) as exc:  # unreachable, refused, or a bad URL
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(
            f"{parse_url(url, None)}: {done.renamed} renamed, {done.kept} kept (a hashed key "
            f"exists), {done.gone} gone meanwhile"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
