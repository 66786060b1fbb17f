from __future__ import annotations

import datetime
from typing import Any

import cbor2
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from trio_ruts import CborSerializer, JsonSerializer, Serializer
from trio_ruts._ints import decode_int, encode_int
from trio_ruts._serializers import MAX_DEPTH

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
cbor_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.binary()
    | st.datetimes(timezones=st.just(datetime.UTC)),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)


@given(cbor_values)
def test_cbor_round_trip(value: Any) -> None:
    s = CborSerializer()
    assert s.loads(s.dumps(value)) == value


@given(json_values)
def test_json_round_trip(value: Any) -> None:
    s = JsonSerializer()
    assert s.loads(s.dumps(value)) == value


@given(st.binary(max_size=64))
def test_cbor_garbage_raises_or_decodes_exactly(data: bytes) -> None:
    s = CborSerializer()
    try:
        value = s.loads(data)
    except Exception:
        return
    # Whatever decodes must be exactly one item: re-decoding with trailing bytes fails.
    with pytest.raises(ValueError, match="left after"):
        s.loads(data + b"\x00")
    del value


def test_cbor_rejects_trailing_bytes() -> None:
    with pytest.raises(ValueError, match="left after"):
        CborSerializer().loads(b"\x01\x02")


def test_json_refuses_non_json() -> None:
    with pytest.raises(ValueError, match="JSON compliant"):
        JsonSerializer().dumps(float("nan"))
    with pytest.raises(TypeError):
        JsonSerializer().dumps(b"bytes")


def test_protocol() -> None:
    assert isinstance(CborSerializer(), Serializer)
    assert isinstance(JsonSerializer(), Serializer)


# -- nesting depth: what is written can be read back, and nothing crashes the process ------------


def nested(depth: int, kind: str = "list") -> Any:
    """A value whose containers nest ``depth`` deep, built without recursion."""
    value: Any = 0
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    return value


SERIALIZERS: list[Serializer] = [CborSerializer(), JsonSerializer()]


@pytest.mark.parametrize("serializer", SERIALIZERS, ids=repr)
@pytest.mark.parametrize("kind", ["list", "dict"])
@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 300, 500, 100_000])
def test_too_deep_is_refused_when_encoding(serializer: Serializer, kind: str, depth: int) -> None:
    with pytest.raises(ValueError, match=f"more than {MAX_DEPTH} levels"):
        serializer.dumps(nested(depth, kind))


@pytest.mark.parametrize("serializer", SERIALIZERS, ids=repr)
@pytest.mark.parametrize("kind", ["list", "dict"])
def test_max_depth_round_trips(serializer: Serializer, kind: str) -> None:
    value = nested(MAX_DEPTH, kind)
    assert serializer.loads(serializer.dumps(value)) == value


def test_a_value_that_contains_itself_is_refused() -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    for serializer in SERIALIZERS:
        with pytest.raises(ValueError, match="contains itself"):
            serializer.dumps(loop)


KINDS = ["list", "tuple", "dict", "tag"]


def build(kinds: list[str], sets: int = 0) -> tuple[Any, int]:
    """A value nesting ``sets`` frozensets, then the given containers (outermost last),
    and its depth as CBOR's decoder counts it: a set is a tagged array, two levels."""
    value: Any = 0
    depth = 0
    for kind in ["frozenset"] * sets + kinds:
        if kind == "list":
            value = [value, "x"]
        elif kind == "tuple":
            value = (value,)
        elif kind == "dict":
            value = {"k": value}
        elif kind == "frozenset":
            value = frozenset([value])
        else:
            value = cbor2.CBORTag(4000, value)
        depth += 2 if kind == "frozenset" else 1
    return value, depth


def test_containers_as_keys_count_too() -> None:
    key, _ = build(["tuple"] * 300)
    with pytest.raises(ValueError, match="levels deep"):
        CborSerializer().dumps({key: 1})


@given(st.lists(st.sampled_from(KINDS), max_size=MAX_DEPTH + 60), st.integers(0, 140))
@example(["list", "tuple", "dict", "tag"] * 64, 0)
@example(["list"] * (MAX_DEPTH + 1), 0)
@example(["tag"] * (MAX_DEPTH - 56), 28)
@example(["tag"] * (MAX_DEPTH - 56), 29)
@example([], MAX_DEPTH // 2 + 1)
def test_cbor_writes_exactly_what_it_can_read_back(kinds: list[str], sets: int) -> None:
    s = CborSerializer()
    value, depth = build(kinds, sets)
    if depth > MAX_DEPTH:
        with pytest.raises(ValueError, match="levels deep"):
            s.dumps(value)
    else:
        data = s.dumps(value)
        assert s.dumps(s.loads(data)) == data  # tuples come back as lists


@given(st.lists(st.sampled_from(["list", "dict"]), max_size=MAX_DEPTH + 60))
@example(["list", "dict"] * (MAX_DEPTH // 2))
@example(["dict"] * (MAX_DEPTH + 1))
def test_json_writes_exactly_what_it_can_read_back(kinds: list[str]) -> None:
    s = JsonSerializer()
    value, depth = build(kinds)
    if depth > MAX_DEPTH:
        with pytest.raises(ValueError, match="levels deep"):
            s.dumps(value)
    else:
        assert s.loads(s.dumps(value)) == value


# -- the integer encodings stores apply incr to ------------------------------------------------

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@given(INT64)
@example(23)
@example(24)
@example(-24)
@example(-25)
@example(2**32)
def test_incr_codec_matches_the_serializers(number: int) -> None:
    for serializer in (CborSerializer(), JsonSerializer()):
        encoded = serializer.dumps(number)
        assert encode_int(number, serializer.int_format) == encoded
        assert decode_int(encoded, serializer.int_format) == number


SCALARS = st.one_of(
    st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(), st.booleans()
)


@given(st.one_of(SCALARS, st.none()))
def test_incr_codec_refuses_what_is_not_an_int64(value: Any) -> None:
    is_int64 = type(value) is int and -(2**63) <= value < 2**63
    for serializer in (CborSerializer(), JsonSerializer()):
        found = decode_int(serializer.dumps(value), serializer.int_format)
        assert found == (value if is_int64 else None)
