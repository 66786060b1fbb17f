"""Serializers turn field values into the bytes that stores keep. No pickle, ever."""

from __future__ import annotations

import io
import json
from typing import Any, Protocol, runtime_checkable

import cbor2


@runtime_checkable
class Serializer(Protocol):
    """Encodes values to bytes and back. Errors may be any exception: the session wraps
    them in :class:`~trio_ruts.SerializationError` naming the field."""

    def dumps(self, obj: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


class CborSerializer:
    """CBOR via :mod:`cbor2` (the default): compact, binary-safe, keeps bytes and datetimes."""

    __slots__ = ()

    def dumps(self, obj: Any) -> bytes:
        return cbor2.dumps(obj)

    def loads(self, data: bytes) -> Any:
        # cbor2.loads ignores bytes after the first item; a stored value is exactly one item,
        # so anything after it means corruption.
        fp = io.BytesIO(data)
        obj = cbor2.CBORDecoder(fp).decode()
        if fp.tell() != len(data):
            raise ValueError(f"{len(data) - fp.tell()} bytes left after the CBOR item")
        return obj

    def __repr__(self) -> str:
        return "CborSerializer()"


class JsonSerializer:
    """UTF-8 JSON, for data other programs read too. Only JSON types round-trip."""

    __slots__ = ()

    def dumps(self, obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()

    def loads(self, data: bytes) -> Any:
        return json.loads(data)

    def __repr__(self) -> str:
        return "JsonSerializer()"
