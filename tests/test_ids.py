from __future__ import annotations

import base64
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_ruts import InvalidSessionId, SessionId


@given(st.binary(min_size=16, max_size=16))
def test_round_trip(raw: bytes) -> None:
    sid = SessionId(raw)
    text = str(sid)
    assert len(text) == 22
    assert SessionId.parse(text) == sid
    assert SessionId.parse(text).bytes == raw


@given(st.text(max_size=40))
def test_parse_accepts_only_canonical_ids(text: str) -> None:
    try:
        sid = SessionId.parse(text)
    except InvalidSessionId:
        return
    assert str(sid) == text  # anything accepted is exactly what we would have issued


@given(st.binary(min_size=16, max_size=16), st.integers(1, 15))
def test_non_canonical_trailing_bits_are_rejected(raw: bytes, bits: int) -> None:
    text = str(SessionId(raw))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    bad = text[:-1] + alphabet[alphabet.index(text[-1]) | bits]
    if bad != text:
        with pytest.raises(InvalidSessionId):
            SessionId.parse(bad)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "short",
        "A" * 21,
        "A" * 23,
        "A" * 21 + "=",
        base64.urlsafe_b64encode(b"x" * 16).decode(),  # padded
        base64.b64encode(b"\xfb" * 16).decode().rstrip("="),  # '+' and '/' alphabet
        "A" * 21 + "B",  # trailing bits set
        "A" * 21 + "A\n",
        "é" * 22,
    ],
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(InvalidSessionId):
        SessionId.parse(text)


def test_parse_rejects_non_str() -> None:
    with pytest.raises(InvalidSessionId):
        SessionId.parse(b"A" * 22)  # type: ignore[arg-type]
    with pytest.raises(InvalidSessionId):
        SessionId(b"short")


def test_repr_hides_the_id() -> None:
    sid = SessionId.generate()
    assert str(sid) not in repr(sid)
    assert str(sid)[:6] not in repr(sid)
    with pytest.raises(TypeError):
        pickle.dumps(sid)


def test_generate_is_random_and_regenerate_keeps_the_tag() -> None:
    ids = {SessionId.generate() for _ in range(1000)}
    assert len(ids) == 1000
    sid = SessionId.generate()
    again = {sid.regenerate() for _ in range(1000)}
    assert len(again) == 1000
    assert all(n.tag == sid.tag and n.bytes[:3] == sid.bytes[:3] for n in again)
    assert str(sid).startswith(sid.tag)
    assert len(sid.tag) == 4
