"""RESP encoding for the native transport. Kept apart from ``_base`` so that the store, the
protocols and the redis-py bridge import without hiredis (``RedisStore`` loads no driver until
a store is built)."""

from __future__ import annotations

from collections.abc import Sequence

import hiredis

from ._base import Arg


def pack(args: Sequence[Arg]) -> bytes:
    """Encode one command in RESP (hiredis does the work)."""
    packed: bytes = hiredis.pack_command(tuple(args))  # type: ignore[arg-type]  # stub: 1-tuples
    return packed
