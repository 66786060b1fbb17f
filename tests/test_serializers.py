from __future__ import annotations

import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_ruts import CborSerializer, JsonSerializer, Serializer

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
    | st.floats(allow_nan=False)
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
