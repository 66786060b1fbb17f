"""SessionMap: a read-only view of a whole session, decoding values on first access."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ._errors import SerializationError
from ._serializers import Serializer


class CorruptValue(bytes):
    """What a store returns for a field whose stored data it cannot make sense of (corrupt
    metadata, say): decoding it raises :class:`SerializationError` for that field alone."""

    def __new__(cls, reason: str) -> CorruptValue:
        value = super().__new__(cls)
        value.reason = reason
        return value

    reason: str


def decode(serializer: Serializer, field: str, data: bytes) -> Any:
    """Decode a stored value, naming the field if the bytes are not valid."""
    if isinstance(data, CorruptValue):
        raise SerializationError(
            f"field {field!r}: {data.reason}; overwrite or remove the field", field=field
        )
    try:
        loads_field = getattr(serializer, "loads_field", None)
        if loads_field is not None:  # a field-aware serializer (see Serializer)
            return loads_field(field, data)
        return serializer.loads(data)
    except Exception as exc:
        raise SerializationError(
            f"field {field!r}: stored bytes are not valid for {serializer!r} ({exc}); "
            f"overwrite or remove the field",
            field=field,
        ) from exc


class SessionMap(Mapping[str, Any]):
    """All live fields of a session. Values are decoded lazily, once each.

    Raises:
        SerializationError: on access to a field whose stored bytes cannot be decoded;
            other fields stay readable.
    """

    __slots__ = ("_decoded", "_raw", "_serializer")

    def __init__(self, raw: Mapping[str, bytes], serializer: Serializer) -> None:
        self._raw = dict(raw)
        self._serializer = serializer
        self._decoded: dict[str, Any] = {}

    def __getitem__(self, field: str) -> Any:
        try:
            return self._decoded[field]
        except KeyError:
            pass
        value = decode(self._serializer, field, self._raw[field])
        self._decoded[field] = value
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __contains__(self, field: object) -> bool:
        return field in self._raw

    def raw(self, field: str) -> bytes:
        """The stored bytes of ``field``, undecoded."""
        return self._raw[field]

    def __repr__(self) -> str:
        # Values may be secrets; show only the field names.
        return f"SessionMap(fields={sorted(self._raw)!r})"
