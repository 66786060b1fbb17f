"""EncryptedSerializer: AES-GCM values bound to their field, keys that rotate."""

from __future__ import annotations

import os
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import StoreKit
from trio_ruts import (
    CborSerializer,
    CookieOptions,
    EncryptedSerializer,
    JsonSerializer,
    MemoryStore,
    SerializationError,
    Session,
    SessionError,
    SessionId,
)
from trio_ruts.stores import SessionStore

COOKIE = CookieOptions(max_age=600)
K1, K2, K3 = os.urandom(32), os.urandom(16), os.urandom(24)


class Raw:
    """Passes stored bytes through: what someone with access to the store reads and writes."""

    def dumps(self, obj: bytes) -> bytes:
        return obj

    def loads(self, data: bytes) -> bytes:
        return data


def sealed(*keys: bytes, inner: Any = None) -> EncryptedSerializer:
    return EncryptedSerializer(inner or CborSerializer(), keys=list(keys))


async def session_with(store: SessionStore, serializer: Any, **fields: Any) -> SessionId:
    s = Session(store, cookie=COOKIE, serializer=serializer)
    for name, value in fields.items():
        await s.update(name, value)
    assert s.id is not None
    return s.id


def assert_names_field_not_id(exc: BaseException, field: str, sid: SessionId) -> None:
    assert isinstance(exc, SerializationError)
    assert exc.field == field
    assert repr(field) in str(exc)
    seen: BaseException | None = exc
    while seen is not None:
        for form in (str(sid), sid.bytes.hex(), repr(sid.bytes)):
            assert form not in f"{seen!s}{seen!r}"
        seen = seen.__cause__ or seen.__context__


async def test_values_round_trip_and_are_not_stored_in_clear(kit: StoreKit, store: Any) -> None:
    """On every store: get, get_all and pop decode what was sealed; the stored bytes hold
    no plaintext."""
    enc = sealed(K1)
    sid = await session_with(store, enc, secret="plaintext-visible?", n=[1, {"a": b"\x00"}])
    s = Session(store, sid, serializer=enc)
    assert await s.get("secret") == "plaintext-visible?"
    everything = await s.get_all()
    assert everything is not None
    assert dict(everything) == {"secret": "plaintext-visible?", "n": [1, {"a": b"\x00"}]}
    raw = await Session(store, sid, serializer=Raw()).get("secret")
    assert b"plaintext" not in raw
    assert await s.pop("n") == [1, {"a": b"\x00"}]


@settings(max_examples=50, deadline=None)
@given(
    value=st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.text()
        | st.floats(allow_nan=False, allow_infinity=False),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=10,
    ),
    field=st.text(min_size=1, max_size=20),
)
def test_round_trip_json(value: Any, field: str) -> None:
    enc = sealed(K1, inner=JsonSerializer())
    data = enc.dumps_field(field, value)
    assert enc.loads_field(field, data) == value
    assert enc.dumps_field(field, value) != data  # a fresh nonce each time


async def test_key_rotation() -> None:
    async with MemoryStore() as store:
        sid = await session_with(store, sealed(K1), old="by k1")
        rotated = sealed(K2, K1)  # the new key first, the old one still accepted
        assert await Session(store, sid, serializer=rotated).get("old") == "by k1"
        await Session(store, sid, serializer=rotated).update("new", "by k2")
        only_new = sealed(K2)
        assert await Session(store, sid, serializer=only_new).get("new") == "by k2"
        with pytest.raises(SerializationError, match="not in keys=") as info:
            await Session(store, sid, serializer=only_new).get("old")  # k1 retired too early
        assert_names_field_not_id(info.value, "old", sid)
        # Rewriting under the new key is how old values leave the retired key.
        await Session(store, sid, serializer=rotated).update("old", "again")
        assert await Session(store, sid, serializer=only_new).get("old") == "again"


async def test_wrong_key_is_refused() -> None:
    async with MemoryStore() as store:
        sid = await session_with(store, sealed(K1), a=1)
        with pytest.raises(SerializationError) as info:
            await Session(store, sid, serializer=sealed(K3)).get("a")
        assert_names_field_not_id(info.value, "a", sid)


async def test_a_value_moved_to_another_field_is_refused() -> None:
    """Swapped ciphertexts: each value is authenticated with its field name."""
    async with MemoryStore() as store:
        sid = await session_with(store, sealed(K1), role="user", wanted="admin")
        raw = Session(store, sid, serializer=Raw())
        role, wanted = await raw.get("role"), await raw.get("wanted")
        await raw.update("role", wanted)
        await raw.update("wanted", role)
        s = Session(store, sid, serializer=sealed(K1))
        for field in ("role", "wanted"):
            with pytest.raises(SerializationError, match="authentication") as info:
                await s.get(field)
            assert_names_field_not_id(info.value, field, sid)
        await raw.update("role", role)  # put back, it reads again: the check is the field
        assert await s.get("role") == "user"


@pytest.mark.parametrize("where", [0, 1, 5, 17, 20, -1])
async def test_tampered_values_are_refused(where: int) -> None:
    """Any altered byte: format, key id, nonce, ciphertext or tag."""
    async with MemoryStore() as store:
        sid = await session_with(store, sealed(K1), a="value")
        raw = Session(store, sid, serializer=Raw())
        data = bytearray(await raw.get("a"))
        data[where] ^= 0x01
        await raw.update("a", bytes(data))
        with pytest.raises(SerializationError) as info:
            await Session(store, sid, serializer=sealed(K1)).get("a")
        assert_names_field_not_id(info.value, "a", sid)
        for cut in (b"", b"\x01", bytes(data[:30])):
            await raw.update("a", cut)
            with pytest.raises(SerializationError):
                await Session(store, sid, serializer=sealed(K1)).get("a")


async def test_incr_and_update_if_are_refused_clearly() -> None:
    async with MemoryStore() as store:
        enc = sealed(K1)
        sid = await session_with(store, enc, n=1)
        s = Session(store, sid, serializer=enc)
        with pytest.raises(SessionError, match=r"incr\(\) is not supported") as info:
            await s.incr("n")
        assert str(sid) not in str(info.value)
        with pytest.raises(SessionError, match=r"update_if\(\) is not supported"):
            await s.update_if("n", 1, 2)
        assert await s.get("n") == 1  # nothing written
        assert not await s.insert("n", 5)


def test_keys_are_validated_and_never_shown() -> None:
    with pytest.raises(ValueError, match="non-empty list"):
        EncryptedSerializer(CborSerializer(), keys=[])
    with pytest.raises(ValueError, match="non-empty list"):
        EncryptedSerializer(CborSerializer(), keys=K1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"keys\[1\] is not an AES key.*of 31 bytes"):
        EncryptedSerializer(CborSerializer(), keys=[K1, os.urandom(31)])
    with pytest.raises(ValueError, match=r"keys\[0\] is not an AES key: .* got str"):
        EncryptedSerializer(CborSerializer(), keys=["a" * 32])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"keys\[1\] is given twice"):
        EncryptedSerializer(CborSerializer(), keys=[K1, K1])
    enc = sealed(K1, K2)
    assert repr(enc) == "EncryptedSerializer(CborSerializer(), keys=<2 keys>)"
    with pytest.raises(TypeError, match="dumps_field"):
        enc.dumps(1)
    with pytest.raises(TypeError, match="loads_field"):
        enc.loads(b"")


def test_needs_the_crypto_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.ciphers.aead", None)
    with pytest.raises(ImportError, match=r"trio-ruts\[crypto\]"):
        sealed(K1)
