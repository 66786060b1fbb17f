"""Serializers turn field values into the bytes that stores keep. No pickle, ever."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping, Sequence, Set
from itertools import chain
from typing import Any, Final, Protocol, runtime_checkable

import cbor2

#: How deeply containers (lists, tuples, dicts, sets, CBOR tags) may nest in one value.
#: Both serializers refuse deeper values when encoding, so that every value written can be
#: read back: cbor2's decoder stops at 400 levels, and deep recursion can crash encoders.
MAX_DEPTH: Final = 256

# Types that contain nothing to descend into; checked first because most values are these.
_SCALARS: Final = frozenset({str, int, float, bool, type(None), bytes})


@runtime_checkable
class Serializer(Protocol):
    """Encodes values to bytes and back. Errors may be any exception: the session wraps
    them in :class:`~trio_ruts.SerializationError` naming the field.

    ``Session.incr`` also needs a class attribute ``int_format``, ``"cbor"`` or ``"json"``,
    naming how the serializer encodes integers (stores add to them in place).

    Optional, for serializers that depend on the field (as
    :class:`~trio_ruts.EncryptedSerializer`, which binds each value to its field): when a
    serializer has ``dumps_field(field, obj) -> bytes`` and ``loads_field(field, data)``, the
    session calls them instead of ``dumps`` and ``loads``. A true class attribute
    ``randomized`` says that encodings of one value differ on each call; the session then
    refuses ``incr`` and ``update_if``, which need the store to understand encoded bytes.
    """

    def dumps(self, obj: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


def check_depth(obj: Any, limit: int = MAX_DEPTH) -> None:
    """Refuse a value whose containers nest more than ``limit`` deep.

    Iterative, level by level, so it copes with any depth (and with a value that contains
    itself, which looks infinitely deep), in time proportional to the value's size.

    Raises:
        ValueError: the value nests too deeply.
    """
    if type(obj) in _SCALARS:
        return
    depth = 0
    current: list[Any] = [obj]
    later: list[Any] = []  # the contents of sets, two levels down (CBOR tags each set)
    while current or later:
        depth += 1
        following, later = later, []
        for value in current:
            kind = type(value)
            if kind is list or kind is tuple:
                items: Iterable[Any] = value
            elif kind is dict:
                items = chain(value, value.values())
            elif isinstance(value, str | bytes | bytearray | memoryview):
                continue
            elif isinstance(value, Mapping):
                items = chain(value.keys(), value.values())
            elif isinstance(value, Set):
                if depth + 1 > limit:
                    raise _too_deep(limit)
                later += [item for item in value if type(item) not in _SCALARS]
                continue
            elif isinstance(value, Sequence):
                items = value
            elif isinstance(value, cbor2.CBORTag):
                items = (value.value,)
            else:
                continue  # a leaf: datetime, UUID, Decimal, ...
            if depth > limit:
                raise _too_deep(limit)
            following += [item for item in items if type(item) not in _SCALARS]
        current = following


def _too_deep(limit: int) -> ValueError:
    return ValueError(
        f"containers nest more than {limit} levels deep (or the value contains itself); "
        f"flatten the value or store its parts in separate fields"
    )


class CborSerializer:
    """CBOR via :mod:`cbor2` (the default): compact, binary-safe, keeps bytes and datetimes.

    Values nested more than 256 containers deep (``MAX_DEPTH``) are refused with
    ``ValueError`` before encoding.
    """

    __slots__ = ()
    #: How integers are encoded, so that stores can apply ``incr`` themselves.
    int_format: Final = "cbor"

    def dumps(self, obj: Any) -> bytes:
        check_depth(obj)
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
    """UTF-8 JSON, for data other programs read too. Only JSON types round-trip.

    Values nested more than 256 containers deep (``MAX_DEPTH``) are refused with
    ``ValueError`` before encoding.
    """

    __slots__ = ()
    #: How integers are encoded, so that stores can apply ``incr`` themselves.
    int_format: Final = "json"

    def dumps(self, obj: Any) -> bytes:
        check_depth(obj)
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()

    def loads(self, data: bytes) -> Any:
        return json.loads(data)

    def __repr__(self) -> str:
        return "JsonSerializer()"
