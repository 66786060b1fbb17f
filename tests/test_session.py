"""Session behaviour that does not depend on the store: cookie state, frozen ids."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from trio_ruts import (
    CborSerializer,
    CookieChange,
    CookieOptions,
    JsonSerializer,
    MemoryStore,
    SerializationError,
    Serializer,
    Session,
    SessionId,
    SessionStateError,
)
from trio_ruts._serializers import MAX_DEPTH
from trio_ruts.stores import Write

SIGNED = CookieOptions(signing_keys=[b"x" * 32])


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    async with MemoryStore() as opened:
        yield opened


async def test_from_cookie_header(store: MemoryStore) -> None:
    s = Session(store, cookie=SIGNED)
    await s.update("a", 1)
    header = s.cookie_header()
    assert header is not None
    value = header.split(";")[0]
    again = Session.from_cookie_header(store, f"x=1; {value}", cookie=SIGNED)
    assert again.id == s.id
    assert await again.get("a") == 1
    forged = Session.from_cookie_header(store, f"id={s.id}", cookie=SIGNED)
    assert forged.id is None
    assert Session.from_cookie_header(store, "id=%%%").id is None


async def test_cookie_state_follows_the_last_change(store: MemoryStore) -> None:
    s = Session(store)
    assert s.cookie_change is CookieChange.NONE
    await s.update("a", 1)
    assert s.cookie_change is CookieChange.SET
    await s.delete()
    assert s.cookie_change is CookieChange.CLEAR
    assert (s.cookie_header() or "").startswith("id=; Max-Age=0")
    await s.update("b", 2)
    assert s.cookie_change is CookieChange.SET
    s.set_expiration(-1)
    assert "Max-Age=34560000" in (s.cookie_header() or "")


async def test_set_expiration_without_session_sends_nothing(store: MemoryStore) -> None:
    s = Session(store)
    s.set_expiration(100)
    assert s.cookie_header() is None
    await s.update("a", 1)
    assert "Max-Age=100;" in (s.cookie_header() or "")


async def test_frozen_id_refuses_id_changes(store: MemoryStore) -> None:
    s = Session(store)
    await s.update("user", "alice")
    sid = s.id
    s.freeze_id("the websocket handshake was already answered")
    # Writes to the existing session still work, without reading first.
    assert await Session(store, sid).get("user") == "alice"
    late = Session(store, sid)
    late.freeze_id("accepted")
    assert await late.update("seen", True) is True
    with pytest.raises(SessionStateError, match="already answered"):
        await s.regenerate()
    with pytest.raises(SessionStateError):
        s.prepare_regenerate()
    fresh = Session(store)
    fresh.freeze_id("accepted")
    with pytest.raises(SessionStateError):
        await fresh.update("a", 1)
    assert fresh.id is None
    unknown = Session(store, SessionId.generate())
    unknown.freeze_id("accepted")
    with pytest.raises(SessionStateError):
        await unknown.update("a", 1)
    assert s.id == sid


async def test_repr_hides_id(store: MemoryStore) -> None:
    s = Session(store)
    await s.update("a", 1)
    assert str(s.id) not in repr(s)
    everything = await s.get_all()
    assert repr(everything) == "SessionMap(fields=['a'])"


def test_id_must_be_a_session_id() -> None:
    with pytest.raises(TypeError, match=r"SessionId\.parse"):
        Session(MemoryStore(), "A" * 22)  # type: ignore[arg-type]


# -- values that could not be read back are refused at write time --------------------------------


def nested(depth: int, kind: str) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    return value


@pytest.mark.parametrize("serializer", [CborSerializer(), JsonSerializer()], ids=repr)
@pytest.mark.parametrize("kind", ["list", "dict"])
@pytest.mark.parametrize("depth", [300, 500, 100_000])
async def test_too_deep_values_are_refused_and_nothing_is_stored(
    store: MemoryStore, serializer: Serializer, kind: str, depth: int
) -> None:
    value = nested(depth, kind)
    fresh = Session(store, serializer=serializer)
    with pytest.raises(SerializationError, match=r"'deep'.*levels deep") as caught:
        await fresh.update("deep", value)
    assert caught.value.field == "deep"
    assert fresh.id is None
    assert len(store) == 0

    s = Session(store, serializer=serializer)
    await s.update("deep", "before")
    sid = s.id
    for write in (s.update, s.insert):
        with pytest.raises(SerializationError, match="'deep'"):
            await write("deep", value)
    s.prepare_regenerate()
    with pytest.raises(SerializationError, match="'deep'"):
        await s.update("deep", value)
    assert s.id == sid  # the pending rename was dropped with the write
    assert await Session(store, sid, serializer=serializer).get("deep") == "before"
    assert len(store) == 1


@pytest.mark.parametrize("serializer", [CborSerializer(), JsonSerializer()], ids=repr)
async def test_the_deepest_value_allowed_round_trips(
    store: MemoryStore, serializer: Serializer
) -> None:
    s = Session(store, serializer=serializer)
    for kind in ("list", "dict"):
        value = nested(MAX_DEPTH, kind)
        assert await s.update(kind, value)
        assert await Session(store, s.id, serializer=serializer).get(kind) == value


@pytest.mark.parametrize(
    ("serializer", "data"),
    [
        (CborSerializer(), b"\x81" * 100_000 + b"\x00"),  # cbor2 stops at 400 levels
        (JsonSerializer(), b"[" * 100_000 + b"]" * 100_000),  # RecursionError in json
    ],
    ids=["cbor", "json"],  # short: the test id goes into the environment of servers started
)
async def test_stored_values_too_deep_to_decode_raise_serialization_error(
    store: MemoryStore, serializer: Serializer, data: bytes
) -> None:
    s = Session(store, serializer=serializer)
    await s.update("ok", 1)
    assert s.id is not None
    await store.write(
        Write(s.id, s.id, "deep", data, only_if_absent=False, field_ttl=None, key_ttl=60)
    )
    with pytest.raises(SerializationError, match="'deep'") as caught:
        await s.get("deep")
    assert caught.value.field == "deep"
    everything = await s.get_all()
    assert everything is not None
    assert everything["ok"] == 1
    with pytest.raises(SerializationError, match="'deep'"):
        everything["deep"]
