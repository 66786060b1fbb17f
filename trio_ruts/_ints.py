"""The integer encodings stores understand for ``incr``: CBOR and JSON, in signed 64 bits.

A store applies an increment inside its own atomic step, so it must read and write the
serializer's integer format itself. This module is the reference (the memory store uses it;
the Redis and Postgres stores implement the same rules in Lua and PL/pgSQL).
"""

from __future__ import annotations

import re
from typing import Final

from ._errors import SessionError

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
#: The values of ``Write.int_format`` (and of a serializer's ``int_format`` attribute).
INT_FORMATS: Final = ("cbor", "json")
_JSON_INT: Final = re.compile(rb"-?(?:0|[1-9][0-9]{0,19})")
_CBOR_ARG_BYTES: Final = {24: 1, 25: 2, 26: 4, 27: 8}


def decode_int(data: bytes, int_format: str) -> int | None:
    """The signed 64-bit integer ``data`` encodes, or ``None`` if it encodes anything else."""
    if int_format == "json":
        found = _JSON_INT.fullmatch(data) is not None
        number = int(data) if found else None
    else:
        number = _decode_cbor(data)
    if number is None or not INT64_MIN <= number <= INT64_MAX:
        return None
    return number


def _decode_cbor(data: bytes) -> int | None:
    # Major type 0 (unsigned) or 1 (negative: -1 - argument), argument of 0 to 8 bytes.
    if not data:
        return None
    major, info = data[0] >> 5, data[0] & 31
    if major > 1:
        return None
    if info < 24:
        size, argument = 0, info
    elif info in _CBOR_ARG_BYTES:
        size = _CBOR_ARG_BYTES[info]
        argument = int.from_bytes(data[1 : 1 + size], "big")
    else:
        return None
    if len(data) != 1 + size:
        return None
    return argument if major == 0 else -1 - argument


def encode_int(number: int, int_format: str) -> bytes:
    """``number`` in ``int_format``: decimal text, or CBOR's shortest form (as cbor2)."""
    if int_format == "json":
        return str(number).encode()
    major, argument = (0, number) if number >= 0 else (0x20, -1 - number)
    if argument < 24:
        return bytes((major | argument,))
    for info, size in _CBOR_ARG_BYTES.items():
        if argument < 1 << (8 * size):
            return bytes((major | info,)) + argument.to_bytes(size, "big")
    raise ValueError("the argument does not fit in 64 bits")


def incremented(current: bytes | None, by: int, int_format: str, field: str) -> bytes:
    """The encoded value of ``current`` (absent: 0) plus ``by``.

    Raises:
        SessionError: ``current`` is not a signed 64-bit integer, or the sum is outside
            signed 64 bits.
    """
    number = 0 if current is None else decode_int(current, int_format)
    if number is None:
        raise not_an_integer(field)
    total = number + by
    if not INT64_MIN <= total <= INT64_MAX:
        raise out_of_range(field)
    return encode_int(total, int_format)


def not_an_integer(field: str) -> SessionError:
    return SessionError(
        f"field {field!r} holds a value that is not a signed 64-bit integer, so incr() "
        f"cannot add to it; nothing was changed (overwrite it with update() first)"
    )


def out_of_range(field: str) -> SessionError:
    return SessionError(
        f"incr() on field {field!r} would leave signed 64 bits "
        f"({INT64_MIN} to {INT64_MAX}); nothing was changed"
    )
