"""The store contract: every store must pass every test here, through the Session API and the
store interface. Lifetimes are short (seconds) so that real servers' clocks can decide them.

Each test takes ``clock`` so that stores on trio's clock run with an autojump clock.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import trio

from tests.conftest import pass_time
from trio_ruts import (
    CborSerializer,
    CookieChange,
    CookieOptions,
    InvalidField,
    JsonSerializer,
    SerializationError,
    Session,
    SessionError,
    SessionId,
    SessionIdCollision,
)
from trio_ruts.stores import ColdOnly, HotOnly, SessionStore, Write, WriteThrough

COOKIE = CookieOptions(max_age=600)
SHORT = CookieOptions(max_age=2)


def new(
    store: SessionStore, id: SessionId | None = None, cookie: CookieOptions = COOKIE
) -> Session:
    return Session(store, id, cookie=cookie)


async def make(store: SessionStore, cookie: CookieOptions = COOKIE, **fields: Any) -> SessionId:
    s = new(store, cookie=cookie)
    for name, value in fields.items():
        assert await s.update(name, value)
    assert s.id is not None
    return s.id


def raw_write(id: SessionId | None, field: str, value: bytes, **kw: Any) -> Write:
    defaults: dict[str, Any] = {
        "only_if_absent": False,
        "field_ttl": None,
        "key_ttl": 600,
        "fresh_id": SessionId.generate() if id is None else id.regenerate(),
    }
    defaults.update(kw)
    return Write(id=id, field=field, value=value, **defaults)


async def make_beside(store: SessionStore, other: SessionId, **fields: Any) -> SessionId:
    """A session whose id shares ``other``'s hash tag (as a regenerated id would), so that
    collisions between the two stay inside one cluster slot."""
    sid = other.regenerate()
    for name, value in fields.items():
        await store.write(raw_write(None, name, CborSerializer().dumps(value), fresh_id=sid))
    return sid


# -- reads --------------------------------------------------------------------------------------


async def test_no_session_reads_default(store: SessionStore, clock: Any) -> None:
    s = new(store)
    assert await s.get("user") is None
    assert await s.get("user", 42) == 42
    assert await s.get_all() is None
    assert s.id is None
    assert s.cookie_header() is None


async def test_unknown_id_reads_nothing(store: SessionStore, clock: Any) -> None:
    s = new(store, SessionId.generate())
    assert await s.get("user", "none") == "none"
    assert await s.get_all() is None
    assert s.cookie_change is CookieChange.NONE


async def test_get_all_returns_every_live_field(store: SessionStore, clock: Any) -> None:
    sid = await make(store, a=1, b="two", c={"x": [1, 2]})
    everything = await new(store, sid).get_all()
    assert everything is not None
    assert dict(everything) == {"a": 1, "b": "two", "c": {"x": [1, 2]}}
    assert set(everything) == {"a", "b", "c"}
    assert len(everything) == 3


async def test_read_only_request_changes_no_cookie(store: SessionStore, clock: Any) -> None:
    sid = await make(store, a=1)
    s = new(store, sid)
    assert await s.get("a") == 1
    assert await s.get("missing") is None
    assert await s.get_all() is not None
    assert s.cookie_change is CookieChange.NONE
    assert s.cookie_header() is None


# -- insert / update ----------------------------------------------------------------------------


async def test_insert_creates_a_session_and_sets_cookie(store: SessionStore, clock: Any) -> None:
    s = new(store)
    assert await s.insert("count", 1) is True
    assert s.id is not None
    assert s.cookie_change is CookieChange.SET
    header = s.cookie_header()
    assert header is not None
    assert header.startswith(f"id={s.id}; Max-Age=")
    assert 598 <= int(header.split("Max-Age=")[1].split(";")[0]) <= 600
    assert await new(store, s.id).get("count") == 1


async def test_insert_only_if_absent(store: SessionStore, clock: Any) -> None:
    sid = await make(store, count=1)
    s = new(store, sid)
    assert await s.insert("count", 2) is False
    assert s.cookie_change is CookieChange.NONE
    assert await s.get("count") == 1
    assert await s.insert("other", 3) is True
    assert s.cookie_change is CookieChange.SET
    assert s.id == sid


async def test_update_upserts(store: SessionStore, clock: Any) -> None:
    s = new(store)
    assert await s.update("count", 1) is True
    assert await s.update("count", 2) is True
    assert await s.get("count") == 2


async def test_values_round_trip(store: SessionStore, clock: Any) -> None:
    s = new(store)
    values = {"none": None, "bytes": b"\x00\xff", "list": [1, "a", 2.5], "big": "x" * 100_000}
    for name, value in values.items():
        await s.update(name, value)
    for name, value in values.items():
        assert await new(store, s.id).get(name, "absent") == value


async def test_invalid_field_names_and_ttls(store: SessionStore, clock: Any) -> None:
    s = new(store)
    for bad in ["", "x" * 257, "a\nb", "\x00"]:
        with pytest.raises(InvalidField):
            await s.update(bad, 1)
    for ttl in [-2, 1.5, True, "10"]:
        with pytest.raises(InvalidField):
            await s.update("ok", 1, ttl=ttl)  # type: ignore[arg-type]
    assert s.id is None


async def test_unencodable_value_names_field(store: SessionStore, clock: Any) -> None:
    s = new(store)
    with pytest.raises(SerializationError) as info:
        await s.update("obj", object())
    assert info.value.field == "obj"
    assert "'obj'" in str(info.value)
    assert s.id is None


# -- session fixation ---------------------------------------------------------------------------


async def test_no_bit_of_an_unknown_id_reaches_the_new_one(store: SessionStore, clock: Any) -> None:
    """A fresh id used to keep the unknown id's hash tag (its first 4 characters): a client
    picked 24 bits of its victim's id, and its cluster slot."""
    tags = set()
    for _ in range(20):
        claimed = SessionId.parse("AAAAAAAAAAAAAAAAAAAAAA")
        s = new(store, claimed)
        assert await s.update("a", 1)
        assert s.id is not None
        tags.add(s.id.tag)
    assert "AAAA" not in tags
    assert len(tags) > 15  # fresh randomness, not one derived value


async def test_unknown_id_is_never_adopted(store: SessionStore, clock: Any) -> None:
    claimed = SessionId.generate()
    s = new(store, claimed)
    assert await s.insert("user", "alice") is True
    assert s.id is not None
    assert s.id != claimed
    assert await store.get_all(claimed) is None
    assert await new(store, s.id).get("user") == "alice"
    assert s.cookie_header() is not None
    assert str(s.id) in (s.cookie_header() or "")


async def test_store_write_refuses_taken_fresh_id(store: SessionStore, clock: Any) -> None:
    taken = await make(store, owner="victim")
    with pytest.raises(SessionIdCollision):
        await store.write(raw_write(None, "owner", b"x", fresh_id=taken))
    mine = await make_beside(store, taken, owner="me")
    with pytest.raises(SessionIdCollision):
        await store.write(raw_write(mine, "owner", b"x", fresh_id=taken, rename=True))
    assert await new(store, mine).get("owner") == "me"
    assert await new(store, taken).get("owner") == "victim"


# -- update_if ----------------------------------------------------------------------------------


async def test_update_if_writes_only_on_a_match(store: SessionStore, clock: Any) -> None:
    sid = await make(store, state="draft", other=1)
    s = new(store, sid)
    assert await s.update_if("state", "published", "archived") is False
    assert s.cookie_change is CookieChange.NONE
    assert await s.get("state") == "draft"
    assert await s.update_if("state", "draft", "published") is True
    assert s.cookie_change is CookieChange.SET
    assert await new(store, sid).get("state") == "published"
    assert await s.update_if("missing", None, 1) is False  # absent matches nothing
    assert await s.get("missing") is None
    assert await s.update_if("state", "published", {"v": [1]}, ttl=1) is True
    await pass_time(1.5)
    assert await s.get("state") is None
    assert await s.update_if("state", {"v": [1]}, "again") is False  # expired: absent


async def test_update_if_compares_encoded_bytes(store: SessionStore, clock: Any) -> None:
    sid = await make(store, n=1)
    s = new(store, sid)
    assert await s.update_if("n", 1.0, 2) is False  # CBOR encodes 1.0 and 1 differently
    assert await s.update_if("n", 1, 2) is True
    assert await s.get("n") == 2


async def test_update_if_creates_nothing(store: SessionStore, clock: Any) -> None:
    s = new(store)
    assert await s.update_if("a", 1, 2) is False
    assert s.id is None
    assert s.cookie_change is CookieChange.NONE
    claimed = SessionId.generate()
    s = new(store, claimed)
    assert await s.update_if("a", 1, 2) is False
    assert s.cookie_change is CookieChange.NONE
    assert await store.get_all(claimed) is None
    with pytest.raises(InvalidField):
        await new(store).update_if("a", 1, 2, ttl=0)
    with pytest.raises(InvalidField, match="HotOnly"):
        await new(store).update_if("a", 1, HotOnly(2))


async def test_update_if_consumes_a_pending_rename(store: SessionStore, clock: Any) -> None:
    sid = await make(store, state="a")
    s = new(store, sid)
    pending = s.prepare_regenerate()
    assert await s.update_if("state", "zzz", "b") is False
    assert s.id == pending
    assert await store.get_all(sid) is None
    pending = s.prepare_regenerate()
    assert await s.update_if("state", "a", "b") is True
    assert s.id == pending
    assert await new(store, pending).get("state") == "b"


async def test_update_if_races_have_one_winner_per_round(store: SessionStore, clock: Any) -> None:
    sid = await make(store, version=0)
    for round in range(20):
        wins: list[int] = []

        async def contend(i: int, into: list[int], expected: int) -> None:
            if await new(store, sid).update_if("version", expected, expected + 1):
                into.append(i)

        async with trio.open_nursery() as nursery:
            for i in range(10):
                nursery.start_soon(contend, i, wins, round)
        assert len(wins) == 1, wins
        assert await new(store, sid).get("version") == round + 1


# -- incr ---------------------------------------------------------------------------------------

INT64_MAX = 2**63 - 1


def json_session(store: SessionStore, id: SessionId | None = None) -> Session:
    return Session(store, id, cookie=COOKIE, serializer=JsonSerializer())


@pytest.mark.parametrize("serializer", ["cbor", "json"])
async def test_incr_counts_from_absent(store: SessionStore, clock: Any, serializer: str) -> None:
    s = new(store) if serializer == "cbor" else json_session(store)
    assert await s.incr("n") == 1
    assert s.id is not None
    assert s.cookie_change is CookieChange.SET
    assert await s.incr("n", 41) == 42
    assert await s.incr("n", -50) == -8
    assert await s.get("n") == -8
    assert type(await s.get("n")) is int
    # Every argument size of CBOR's integer encoding, both signs, both ways.
    for target in (23, 24, 255, 256, 65_536, 2**32, INT64_MAX, 0, -25, -257, -(2**63), -1):
        assert await s.incr("n", target - await s.get("n")) == target
        assert await s.get("n") == target
    await s.update("m", 2**40)
    assert await s.incr("m", 1) == 2**40 + 1


@pytest.mark.parametrize("serializer", ["cbor", "json"])
async def test_incr_refuses_non_integers_and_overflow(
    store: SessionStore, clock: Any, serializer: str
) -> None:
    s = new(store) if serializer == "cbor" else json_session(store)
    await s.update("name", "alice")
    await s.update("f", 1.5)
    await s.update("flag", True)
    await s.update("big", INT64_MAX)
    await s.update("small", -(2**63))
    sid = s.id
    assert sid is not None
    before = await store.get_all(sid)
    for field in ("name", "f", "flag"):
        with pytest.raises(SessionError, match=f"field '{field}'.*not a signed 64-bit integer"):
            await new(store, sid).incr(field)
    with pytest.raises(SessionError, match=r"field 'big'.*signed 64 bits"):
        await s.incr("big")
    with pytest.raises(SessionError, match=r"field 'small'.*signed 64 bits"):
        await s.incr("small", -1)
    after = await store.get_all(sid)
    assert before is not None
    assert after is not None
    assert {k: f.value for k, f in after.fields.items()} == {
        k: f.value for k, f in before.fields.items()
    }
    assert await s.get("big") == INT64_MAX
    assert await s.get("name") == "alice"


async def test_incr_error_changes_nothing_even_a_rename(store: SessionStore, clock: Any) -> None:
    sid = await make(store, name="alice")
    s = new(store, sid)
    s.prepare_regenerate()
    with pytest.raises(SessionError, match="field 'name'"):
        await s.incr("name")
    assert s.id == sid
    assert await new(store, sid).get("name") == "alice"
    other = new(store)
    assert await other.incr("name", -(2**63)) == -(2**63)
    created = other.id
    with pytest.raises(SessionError, match=r"field 'name'.*signed 64 bits"):
        await other.incr("name", -1)
    assert other.id == created
    assert await other.get("name") == -(2**63)


async def test_incr_arguments_are_checked(store: SessionStore, clock: Any) -> None:
    s = new(store)
    for by in (1.5, True, "1", 2**63):
        with pytest.raises(InvalidField):
            await s.incr("n", by)  # type: ignore[arg-type]
    with pytest.raises(InvalidField):
        await s.incr("n", ttl=0)

    class Opaque:
        def dumps(self, obj: Any) -> bytes:
            return repr(obj).encode()

        def loads(self, data: bytes) -> Any:
            return data

    with pytest.raises(SessionError, match="int_format"):
        await Session(store, serializer=Opaque()).incr("n")
    assert s.id is None


async def test_incr_on_an_unknown_id_starts_a_fresh_session(
    store: SessionStore, clock: Any
) -> None:
    claimed = SessionId.generate()
    s = new(store, claimed)
    assert await s.incr("n", 5) == 5
    assert s.id is not None
    assert s.id != claimed
    assert s.id.bytes[:3] != claimed.bytes[:3] or s.id.bytes[3:] != claimed.bytes[3:]
    assert await store.get_all(claimed) is None
    assert await new(store, s.id).get("n") == 5


async def test_incr_follows_ttl_rules(store: SessionStore, clock: Any) -> None:
    sid = await make(store, cookie=SHORT, keep=1)
    s = new(store, sid, cookie=SHORT)
    assert await s.incr("n", ttl=1) == 1
    await pass_time(1.5)
    assert await s.get("n") is None
    assert await s.incr("n") == 1  # the expired value counts as absent
    assert await s.incr("p", ttl=-1) == 1
    record = await store.get_all(sid)
    assert record is not None
    assert record.ttl == -1


async def test_incr_consumes_a_pending_rename(store: SessionStore, clock: Any) -> None:
    sid = await make(store, n=1)
    s = new(store, sid)
    pending = s.prepare_regenerate()
    assert await s.incr("n") == 2
    assert s.id == pending
    assert await store.get_all(sid) is None
    assert await new(store, pending).get("n") == 2


@pytest.mark.parametrize("serializer", ["cbor", "json"])
async def test_incr_agrees_with_python_over_random_steps(
    store: SessionStore, clock: Any, serializer: str
) -> None:
    """Stores do the arithmetic themselves (Lua, PL/pgSQL): exact across signed 64 bits."""
    rng = random.Random(16)
    s = new(store) if serializer == "cbor" else json_session(store)
    total = 0
    for _ in range(60):
        bits = rng.choice((3, 8, 16, 31, 33, 52, 54, 62))
        by = rng.randrange(-(2**bits), 2**bits)
        if not -(2**63) <= total + by <= INT64_MAX:
            by = -by
        total += by
        assert await s.incr("n", by) == total
    assert await s.get("n") == total


async def test_concurrent_incr_loses_nothing(store: SessionStore, clock: Any) -> None:
    sid = await make(store, other="x")
    results: list[int] = []

    async def bump(into: list[int]) -> None:
        into.append(await new(store, sid).incr("hits"))

    async with trio.open_nursery() as nursery:
        for _ in range(200):
            nursery.start_soon(bump, results)
    assert sorted(results) == list(range(1, 201))
    assert await new(store, sid).get("hits") == 200


# -- remove / delete ----------------------------------------------------------------------------


async def test_remove(store: SessionStore, clock: Any) -> None:
    sid = await make(store, a=1, b=2)
    s = new(store, sid)
    assert await s.remove("a") is True
    assert s.cookie_change is CookieChange.SET
    assert await s.get("a") is None
    assert await s.get("b") == 2


async def test_remove_missing_field_changes_nothing(store: SessionStore, clock: Any) -> None:
    sid = await make(store, a=1)
    s = new(store, sid)
    assert await s.remove("nope") is False
    assert s.cookie_change is CookieChange.NONE
    assert await s.get("a") == 1
    assert await new(store).remove("a") is False


async def test_remove_last_field_ends_session(store: SessionStore, clock: Any) -> None:
    sid = await make(store, a=1)
    s = new(store, sid)
    assert await s.remove("a") is True
    assert s.id is None
    assert s.cookie_change is CookieChange.CLEAR
    assert "Max-Age=0" in (s.cookie_header() or "")
    assert await store.get_all(sid) is None


async def test_pop_returns_and_removes(store: SessionStore, clock: Any) -> None:
    sid = await make(store, flash="saved", b=2)
    s = new(store, sid)
    assert await s.pop("flash") == "saved"
    assert s.cookie_change is CookieChange.SET
    assert await s.get("flash") is None
    assert await new(store, sid).get("flash", "gone") == "gone"
    assert await s.get("b") == 2


async def test_pop_missing_field_returns_default_and_changes_nothing(
    store: SessionStore, clock: Any
) -> None:
    sid = await make(store, a=1)
    s = new(store, sid)
    assert await s.pop("nope") is None
    assert await s.pop("nope", "dflt") == "dflt"
    assert s.cookie_change is CookieChange.NONE
    assert await s.get("a") == 1
    assert await new(store).pop("a", 7) == 7
    unknown = new(store, SessionId.generate())
    assert await unknown.pop("a", 8) == 8
    assert unknown.cookie_change is CookieChange.NONE


async def test_pop_last_field_ends_session(store: SessionStore, clock: Any) -> None:
    sid = await make(store, flash=[1, "x"])
    s = new(store, sid)
    assert await s.pop("flash") == [1, "x"]
    assert s.id is None
    assert s.cookie_change is CookieChange.CLEAR
    assert "Max-Age=0" in (s.cookie_header() or "")
    assert await store.get_all(sid) is None


async def test_pop_of_an_expired_field_returns_default(store: SessionStore, clock: Any) -> None:
    sid = await make(store, keep=1)
    s = new(store, sid)
    await s.update("flash", "old", ttl=1)
    await pass_time(1.5)
    assert await s.pop("flash", "none") == "none"
    assert await s.get("keep") == 1


async def test_store_remove_returns_the_value(store: SessionStore, clock: Any) -> None:
    sid = await make(store, a=1, b=2)
    removal = await store.remove(sid, "a")
    assert removal.removed
    assert removal.value == CborSerializer().dumps(1)
    missing = await store.remove(sid, "a")
    assert not missing.removed
    assert missing.value is None
    last = await store.remove(sid, "b")
    assert last.removed
    assert last.ttl is None
    assert last.value == CborSerializer().dumps(2)


async def test_concurrent_pops_hand_the_value_to_exactly_one(
    store: SessionStore, clock: Any
) -> None:
    sid = await make(store, keep=0)
    for round in range(3):
        await new(store, sid).update("flash", f"hello {round}")
        got: list[Any] = []

        async def pop_one(into: list[Any]) -> None:
            into.append(await new(store, sid).pop("flash"))

        async with trio.open_nursery() as nursery:
            for _ in range(50):
                nursery.start_soon(pop_one, got)
        assert len(got) == 50
        assert [g for g in got if g is not None] == [f"hello {round}"]
        assert await new(store, sid).get("flash") is None


async def test_delete(store: SessionStore, clock: Any) -> None:
    sid = await make(store, a=1, b=2)
    s = new(store, sid)
    assert await s.delete() is True
    assert s.id is None
    assert s.cookie_change is CookieChange.CLEAR
    assert await store.get_all(sid) is None
    assert await s.update("c", 3) is True
    assert s.id is not None
    assert s.id != sid
    assert s.cookie_change is CookieChange.SET
    assert dict(await new(store, s.id).get_all() or {}) == {"c": 3}
    assert await store.get_all(sid) is None


async def test_delete_without_session(store: SessionStore, clock: Any) -> None:
    s = new(store)
    assert await s.delete() is False
    assert s.cookie_change is CookieChange.NONE
    assert await new(store, SessionId.generate()).delete() is False


# -- lifetimes ----------------------------------------------------------------------------------


async def test_session_expires_after_default_lifetime(store: SessionStore, clock: Any) -> None:
    sid = await make(store, SHORT, a=1)
    assert await new(store, sid, SHORT).get("a") == 1
    await pass_time(2)
    assert await new(store, sid, SHORT).get("a") is None
    assert await store.get_all(sid) is None


async def test_field_ttl_expires_alone(store: SessionStore, clock: Any) -> None:
    s = new(store)
    await s.update("stays", 1)
    await s.update("brief", 2, ttl=1)
    record = await store.get_all(s.id)  # type: ignore[arg-type]
    assert record is not None
    assert record.fields["brief"].ttl in (1,)
    assert record.fields["stays"].ttl is None
    await pass_time(1)
    fresh = new(store, s.id)
    assert await fresh.get("brief") is None
    assert await fresh.get("stays") == 1
    assert dict(await fresh.get_all() or {}) == {"stays": 1}


async def test_insert_over_an_expired_field_writes(store: SessionStore, clock: Any) -> None:
    s = new(store)
    await s.update("stays", 1)
    await s.update("brief", 2, ttl=1)
    await pass_time(1)
    again = new(store, s.id)
    assert await again.insert("brief", 3)  # expired counts as absent, stored row or not
    assert not await again.insert("brief", 4)
    assert await new(store, s.id).get("brief") == 3


async def test_field_ttl_longer_than_default_extends_session(
    store: SessionStore, clock: Any
) -> None:
    s = new(store, cookie=SHORT)
    await s.update("short", 1)
    await s.update("long", 2, ttl=4)
    assert 3 <= int((s.cookie_header() or "").split("Max-Age=")[1].split(";")[0]) <= 4
    await pass_time(2)
    fresh = new(store, s.id, SHORT)
    assert await fresh.get("long") == 2
    # A field without a TTL of its own lives as long as the session does.
    assert await fresh.get("short") == 1
    await pass_time(2)
    assert await store.get_all(s.id) is None  # type: ignore[arg-type]


async def test_write_never_shrinks_session(store: SessionStore, clock: Any) -> None:
    s = new(store, cookie=SHORT)
    await s.update("long", 1, ttl=4)
    later = new(store, s.id, SHORT)
    await later.update("other", 2)  # default lifetime 2 < remaining 4
    assert int((later.cookie_header() or "").split("Max-Age=")[1].split(";")[0]) >= 3
    await pass_time(2)
    assert await new(store, s.id, SHORT).get("other") == 2


async def test_persistent_field_makes_session_persistent(store: SessionStore, clock: Any) -> None:
    s = new(store, cookie=SHORT)
    await s.update("remember", "me", ttl=-1)
    assert "Max-Age=34560000" in (s.cookie_header() or "")
    record = await store.get_all(s.id)  # type: ignore[arg-type]
    assert record is not None
    assert record.ttl == -1
    assert record.fields["remember"].ttl == -1
    await pass_time(2)
    assert await new(store, s.id).get("remember") == "me"
    # Later writes keep it persistent.
    await new(store, s.id, SHORT).update("x", 1, ttl=1)
    record = await store.get_all(s.id)  # type: ignore[arg-type]
    assert record is not None
    assert record.ttl == -1


async def test_ttl_zero(store: SessionStore, clock: Any) -> None:
    sid = await make(store, a=1, b=2)
    s = new(store, sid)
    assert await s.insert("c", 3, ttl=0) is False
    assert await s.get("c") is None
    assert await s.update("a", 9, ttl=0) is True
    assert await s.get("a") is None
    assert await s.get("b") == 2


async def test_expire_sets_exact_lifetime(store: SessionStore, clock: Any) -> None:
    sid = await make(store, a=1)
    s = new(store, sid)
    assert await s.expire(1) is True
    assert "Max-Age=1;" in (s.cookie_header() or "")
    await pass_time(1)
    assert await store.get_all(sid) is None


async def test_expire_zero_deletes_and_minus_one_persists(store: SessionStore, clock: Any) -> None:
    sid = await make(store, SHORT, a=1)
    s = new(store, sid, SHORT)
    assert await s.expire(-1) is True
    assert "Max-Age=34560000" in (s.cookie_header() or "")
    await pass_time(2)
    assert await new(store, sid).get("a") == 1
    assert await s.expire(0) is True
    assert s.id is None
    assert s.cookie_change is CookieChange.CLEAR
    assert await store.get_all(sid) is None


async def test_expire_without_session(store: SessionStore, clock: Any) -> None:
    assert await new(store).expire(10) is False
    s = new(store, SessionId.generate())
    assert await s.expire(10) is False
    assert s.cookie_change is CookieChange.NONE
    with pytest.raises(InvalidField):
        await s.expire(-5)


async def test_set_expiration_changes_only_the_cookie(store: SessionStore, clock: Any) -> None:
    sid = await make(store, a=1)
    s = new(store, sid)
    s.set_expiration(30)
    assert "Max-Age=30;" in (s.cookie_header() or "")
    await s.update("b", 2)  # the override holds for the rest of the request
    assert "Max-Age=30;" in (s.cookie_header() or "")
    record = await store.get_all(sid)
    assert record is not None
    assert record.ttl > 500


# -- renames ------------------------------------------------------------------------------------


async def test_regenerate_moves_data(store: SessionStore, clock: Any) -> None:
    s = new(store)
    await s.update("user", "alice")
    await s.update("brief", 1, ttl=100)
    old = s.id
    assert old is not None
    new_id = await s.regenerate()
    assert new_id is not None
    assert new_id != old
    assert s.id == new_id
    assert new_id.tag == old.tag  # same hash slot in a cluster
    assert str(new_id) in (s.cookie_header() or "")
    assert await store.get_all(old) is None
    record = await store.get_all(new_id)
    assert record is not None
    assert set(record.fields) == {"user", "brief"}
    assert record.fields["brief"].ttl is not None
    assert 95 <= record.fields["brief"].ttl <= 100


async def test_regenerate_without_session(store: SessionStore, clock: Any) -> None:
    assert await new(store).regenerate() is None
    s = new(store, SessionId.generate())
    assert await s.regenerate() is None
    assert s.cookie_change is CookieChange.NONE


async def test_rename_refuses_existing_target(store: SessionStore, clock: Any) -> None:
    a = await make(store, who="a")
    b = await make_beside(store, a, who="b")
    with pytest.raises(SessionIdCollision):
        await store.rename(a, b)
    assert await new(store, a).get("who") == "a"
    assert await new(store, b).get("who") == "b"
    absent = SessionId.generate()
    assert await store.rename(absent, absent.regenerate()) is None


async def test_regenerate_collision_leaves_both(
    store: SessionStore, clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = await make(store, who="a")
    b = await make_beside(store, a, who="b")
    monkeypatch.setattr(SessionId, "regenerate", lambda self: b)
    s = new(store, a)
    with pytest.raises(SessionIdCollision):
        await s.regenerate()
    assert s.id == a
    assert await new(store, a).get("who") == "a"
    assert await new(store, b).get("who") == "b"


async def test_prepare_regenerate_renames_on_next_write(store: SessionStore, clock: Any) -> None:
    sid = await make(store, cart=[1])
    s = new(store, sid)
    first = s.prepare_regenerate()
    pending = s.prepare_regenerate()  # the last one wins
    assert first != pending
    assert s.id == sid
    assert await s.update("user", "alice") is True
    assert s.id == pending
    assert await store.get_all(sid) is None
    assert await store.get_all(first) is None
    assert dict(await new(store, pending).get_all() or {}) == {"cart": [1], "user": "alice"}
    # Consumed: the next write does not rename again.
    await s.update("x", 1)
    assert s.id == pending


async def test_prepare_regenerate_with_insert_not_written(store: SessionStore, clock: Any) -> None:
    sid = await make(store, user="alice")
    s = new(store, sid)
    pending = s.prepare_regenerate()
    assert await s.insert("user", "mallory") is False
    assert s.id == pending
    assert s.cookie_change is CookieChange.SET
    assert await new(store, pending).get("user") == "alice"


async def test_prepare_regenerate_without_session(store: SessionStore, clock: Any) -> None:
    s = new(store)
    pending = s.prepare_regenerate()
    await s.insert("a", 1)
    assert s.id == pending
    claimed = SessionId.generate()
    s = new(store, claimed)
    pending = s.prepare_regenerate()
    await s.insert("a", 1)
    # The claimed id was unknown: nothing moved, and the new session's id owes nothing to
    # it (the pending id kept the claimed id's hash tag).
    assert s.id is not None
    assert s.id not in (claimed, pending)
    assert await store.get_all(claimed) is None
    assert await store.get_all(pending) is None
    assert await new(store, s.id).get("a") == 1


async def test_failed_write_drops_pending_id(
    store: SessionStore, clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = await make(store, who="a")
    b = await make_beside(store, a, who="b")
    s = new(store, a)
    monkeypatch.setattr(SessionId, "regenerate", lambda self: b)
    s.prepare_regenerate()
    with pytest.raises(SessionIdCollision):
        await s.update("who", "hijack")
    assert s.id == a
    monkeypatch.undo()
    await s.update("n", 1)  # no longer renames
    assert s.id == a
    assert await new(store, a).get("who") == "a"
    assert await new(store, b).get("who") == "b"
    # An encoding failure also consumes the pending id.
    s.prepare_regenerate()
    with pytest.raises(SerializationError):
        await s.update("bad", object())
    await s.update("n", 2)
    assert s.id == a


# -- concurrency and corruption -----------------------------------------------------------------


async def test_concurrent_writers_to_distinct_fields(store: SessionStore, clock: Any) -> None:
    sid = await make(store, seed=0)

    async def writer(i: int) -> None:
        assert await new(store, sid).update(f"f{i}", i) is True

    async with trio.open_nursery() as nursery:
        for i in range(200):
            nursery.start_soon(writer, i)
    everything = await new(store, sid).get_all()
    assert everything is not None
    assert dict(everything) == {"seed": 0, **{f"f{i}": i for i in range(200)}}


async def test_concurrent_first_writes_share_one_session(store: SessionStore, clock: Any) -> None:
    s = new(store)

    async def writer(i: int) -> None:
        await s.update(f"f{i}", i)

    async with trio.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(writer, i)
    assert s.id is not None
    everything = await new(store, s.id).get_all()
    assert everything is not None
    assert len(everything) == 50


async def test_corrupt_bytes_name_the_field(store: SessionStore, clock: Any) -> None:
    sid = await make(store, good="fine")
    await store.write(raw_write(sid, "bad", b"\xff\xfe not cbor"))
    s = new(store, sid)
    with pytest.raises(SerializationError) as info:
        await s.get("bad")
    assert info.value.field == "bad"
    assert await s.get("good") == "fine"
    everything = await s.get_all()
    assert everything is not None
    assert everything["good"] == "fine"
    with pytest.raises(SerializationError):
        everything["bad"]
    assert everything.raw("bad") == b"\xff\xfe not cbor"
    await s.update("bad", "repaired")
    assert await s.get("bad") == "repaired"


# -- store interface details --------------------------------------------------------------------


async def test_strategies_write_the_value(store: SessionStore, clock: Any) -> None:
    s = new(store)
    await s.update("a", WriteThrough(1, hot_ttl=60))
    await s.update("b", ColdOnly(2))
    await s.update("c", HotOnly(3))
    record = await store.get_all(s.id)  # type: ignore[arg-type]
    assert record is not None
    assert record.fields["a"].hot_ttl == 60
    assert record.fields["b"].hot_ttl == 0
    assert await s.get("a") == 1
    assert await s.get("b") == 2
    assert await s.get("c") == 3


async def test_rename_keeps_lifetimes(store: SessionStore, clock: Any) -> None:
    s = new(store, cookie=SHORT)
    await s.update("a", 1, ttl=-1)
    await s.update("b", 2, ttl=50)
    new_id = s.id.regenerate()  # type: ignore[union-attr]
    assert await store.rename(s.id, new_id) == -1  # type: ignore[arg-type]
    record = await store.get_all(new_id)
    assert record is not None
    assert record.ttl == -1
    assert record.fields["a"].ttl == -1
    assert record.fields["b"].ttl is not None
    assert 45 <= record.fields["b"].ttl <= 50


async def test_write_result_reports_lifetime(store: SessionStore, clock: Any) -> None:
    result = await store.write(raw_write(None, "a", b"\x01", key_ttl=100, field_ttl=300))
    assert result.written
    assert 299 <= result.ttl <= 300
    again = await store.write(raw_write(result.id, "a", b"\x02", key_ttl=100, only_if_absent=True))
    assert not again.written
    assert again.id == result.id
    assert 298 <= again.ttl <= 300
    assert await store.get(result.id, "a") == b"\x01"


async def test_a_write_to_an_id_the_store_does_not_hold_writes_nothing(
    store: SessionStore, clock: Any
) -> None:
    """An id the store does not hold is never adopted, nor is its session created elsewhere:
    the store reports it absent (the Session then starts afresh under a wholly new id)."""
    unknown = SessionId.generate()
    for kw in ({}, {"fresh_id": unknown}, {"rename": True}):
        result = await store.write(raw_write(unknown, "a", b"\x01", **kw))
        assert result.absent
        assert not result.written
        assert await store.get_all(unknown) is None
    held = await make(store, a=1)
    result = await store.write(raw_write(held, "b", b"\x02"))
    assert not result.absent
    assert result.id == held
