"""EncryptedSerializer: field values sealed with AES-GCM, the field name bound to each."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Any, Final

from ._serializers import Serializer

#: First byte of every value this serializer writes: the format, so a later one can change it.
_VERSION: Final = b"\x01"
_KEY_ID_BYTES: Final = 4
_NONCE_BYTES: Final = 12  # AES-GCM's standard nonce; random, so at most ~2**32 values per key
_TAG_BYTES: Final = 16
_HEADER: Final = len(_VERSION) + _KEY_ID_BYTES + _NONCE_BYTES
_KEY_SIZES: Final = (16, 24, 32)


def _key_id(key: bytes) -> bytes:
    """Four bytes naming a key inside a value, so that decryption picks the key at once (and
    an error can tell a retired key from a tampered value). A hash of the key: it reveals
    nothing that would help find the key."""
    return hashlib.sha256(b"trio-ruts key id\0" + key).digest()[:_KEY_ID_BYTES]


class EncryptedSerializer:
    """Wraps another serializer and encrypts what it produces with AES-GCM (the
    ``cryptography`` package: ``pip install trio-ruts[crypto]``).

    Each value is sealed with the first key and a fresh random nonce; any key of ``keys``
    opens it, so keys rotate by putting a new key first and dropping the old one once the
    values it sealed have expired or been rewritten. The field name is authenticated with the
    value (associated data): a value copied into another field, or altered, fails to decrypt,
    and the session raises :class:`~trio_ruts.SerializationError` naming the field.

    The session id is not bound: a session's values move with it when its id is regenerated.
    Encryption hides values from whoever reads the store; it does not stop a reader with
    write access from copying a whole field value between two sessions.

    Ciphertexts are randomized, so two encodings of one value differ: ``Session.incr`` (the
    store adds to the integer in place) and ``Session.update_if`` (the store compares encoded
    bytes) are refused with a :class:`~trio_ruts.SessionError` saying so.

    Args:
        inner: the serializer of the plaintext, e.g. :class:`~trio_ruts.CborSerializer`.
        keys: AES keys of 16, 24 or 32 bytes (``os.urandom(32)``), the one to encrypt with
            first. Keep them out of the code and out of the store.

    Raises:
        ValueError: ``keys`` is empty, holds a key of another size, or holds a key twice.
        ImportError: the ``cryptography`` package is not installed.
    """

    __slots__ = ("_by_id", "_inner", "_invalid", "_seal_id", "_sealer")

    #: Encodings of one value differ on every call (each has a fresh nonce), so stores can
    #: neither compare them (``update_if``) nor add to them (``incr``).
    randomized: Final = True

    def __init__(self, inner: Serializer, *, keys: Sequence[bytes]) -> None:
        try:
            from cryptography.exceptions import InvalidTag
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError as exc:
            raise ImportError(
                "EncryptedSerializer needs the cryptography package: pip install trio-ruts[crypto]"
            ) from exc
        if isinstance(keys, bytes | bytearray | str) or not keys:
            raise ValueError("keys is a non-empty list of AES keys (bytes), the current one first")
        by_id: dict[bytes, Any] = {}
        for n, key in enumerate(keys):
            if not isinstance(key, bytes | bytearray) or len(key) not in _KEY_SIZES:
                raise ValueError(
                    f"keys[{n}] is not an AES key: give 16, 24 or 32 bytes (os.urandom(32)); "
                    f"got {type(key).__name__}"
                    + (f" of {len(key)} bytes" if isinstance(key, bytes | bytearray) else "")
                )
            key_id = _key_id(bytes(key))
            if key_id in by_id:
                raise ValueError(f"keys[{n}] is given twice (or two keys share a key id)")
            by_id[key_id] = AESGCM(bytes(key))
        self._inner = inner
        self._invalid = InvalidTag  # imported here, so that only a serializer in use needs it
        self._by_id = by_id
        self._seal_id = next(iter(by_id))
        self._sealer = by_id[self._seal_id]

    def __repr__(self) -> str:
        return f"EncryptedSerializer({self._inner!r}, keys=<{len(self._by_id)} keys>)"

    def dumps_field(self, field: str, obj: Any) -> bytes:
        """Encode ``obj`` with the inner serializer and seal it for ``field``."""
        nonce = os.urandom(_NONCE_BYTES)
        header = _VERSION + self._seal_id + nonce
        sealed = self._sealer.encrypt(nonce, self._inner.dumps(obj), _associated(header, field))
        return header + sealed  # type: ignore[no-any-return]

    def loads_field(self, field: str, data: bytes) -> Any:
        """Open a value sealed for ``field`` and decode it with the inner serializer.

        Raises:
            ValueError: the value is not one this serializer wrote for ``field`` with one of
                its keys (the session turns it into ``SerializationError`` naming the field).
        """
        if len(data) < _HEADER + _TAG_BYTES or data[:1] != _VERSION:
            raise ValueError("not a value written by EncryptedSerializer")
        header = bytes(data[:_HEADER])
        opener = self._by_id.get(header[1 : 1 + _KEY_ID_BYTES])
        if opener is None:
            raise ValueError("sealed with a key that is not in keys= (a retired or a wrong key)")
        try:
            plain = opener.decrypt(
                header[-_NONCE_BYTES:], bytes(data[_HEADER:]), _associated(header, field)
            )
        except self._invalid:
            raise ValueError(
                "it fails authentication: altered, or sealed for another field"
            ) from None
        return self._inner.loads(plain)

    def dumps(self, obj: Any) -> bytes:
        raise TypeError("EncryptedSerializer binds each value to its field: call dumps_field")

    def loads(self, data: bytes) -> Any:
        raise TypeError("EncryptedSerializer binds each value to its field: call loads_field")


def _associated(header: bytes, field: str) -> bytes:
    """What the tag authenticates besides the ciphertext: the header and the field name."""
    return header + field.encode("utf-8", "surrogatepass")
