from __future__ import annotations

import dataclasses
import pickle
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from quart_trio import QuartTrio

from trio_ruts import CookieOptions, MemoryStore, Session, SessionId
from trio_ruts._cookies import MAX_COOKIE_AGE, CookieOptionsBuilder
from trio_ruts.quart import Sessions
from trio_ruts.websocket import session_for

SID = SessionId.generate()


def test_defaults_follow_the_spec() -> None:
    c = CookieOptions()
    assert (c.name, c.http_only, c.same_site, c.secure, c.max_age, c.path, c.domain) == (
        "id",
        True,
        "lax",
        True,
        600,
        "/",
        None,
    )
    with pytest.raises(AttributeError):
        c.name = "x"  # type: ignore[misc]


def test_builder_returns_new_frozen_instances() -> None:
    base = CookieOptions.build()
    built = (
        base.name("session")
        .http_only(True)
        .same_site("strict")
        .secure(True)
        .max_age(3600)
        .path("/app")
        .domain("example.com")
    )
    assert base.finish() == CookieOptions()
    assert built.finish() == CookieOptions(
        name="session", same_site="strict", max_age=3600, path="/app", domain="example.com"
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"same_site": "none", "secure": False},
        {"same_site": "sometimes"},
        {"name": "bad name"},
        {"name": "a;b"},
        {"name": ""},
        {"max_age": 0},
        {"max_age": -5},
        {"max_age": 1.5},
        {"path": "/a;b"},
        {"domain": "evil.com; Secure"},
        {"signing_keys": [b"short"]},
    ],
)
def test_invalid_options(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        CookieOptions(**kwargs)  # type: ignore[arg-type]


def test_same_site_none_with_secure_is_fine() -> None:
    assert CookieOptions(same_site="none", secure=True).same_site == "none"


def test_set_cookie_header() -> None:
    c = CookieOptions(name="s", domain="example.com", path="/app", same_site="strict")
    header = c.set_cookie_header(SID, 120)
    assert header == (
        f"s={SID}; Max-Age=120; Path=/app; Domain=example.com; Secure; HttpOnly; SameSite=Strict"
    )
    plain = CookieOptions(secure=False, http_only=False)
    assert plain.set_cookie_header(SID, 5) == f"id={SID}; Max-Age=5; Path=/; SameSite=Lax"
    # The attributes are rendered once per options object: a builder step renders them anew.
    built = c.build().name("t").path("/x").secure(False).domain(None).finish()
    assert built.set_cookie_header(SID, 7) == f"t={SID}; Max-Age=7; Path=/x; HttpOnly; SameSite=Lax"
    moved = CookieOptionsBuilder(c).path("/y").http_only(False).finish()
    assert moved.set_cookie_header(SID, 7) == (
        f"s={SID}; Max-Age=7; Path=/y; Domain=example.com; Secure; SameSite=Strict"
    )
    assert moved.removal_header().endswith("; Path=/y; Domain=example.com; Secure; SameSite=Strict")


def test_live_max_age_is_never_zero_and_capped() -> None:
    c = CookieOptions()
    assert "Max-Age=1;" in c.set_cookie_header(SID, 0)
    assert f"Max-Age={MAX_COOKIE_AGE};" in c.set_cookie_header(SID, -1)
    assert f"Max-Age={MAX_COOKIE_AGE};" in c.set_cookie_header(SID, 10**9)
    assert MAX_COOKIE_AGE == 400 * 86400


def test_removal_repeats_scope_attributes() -> None:
    c = CookieOptions(name="s", domain="example.com", path="/app", same_site="none")
    assert c.removal_header() == (
        "s=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/app; "
        "Domain=example.com; Secure; HttpOnly; SameSite=None"
    )


@pytest.mark.parametrize(
    ("header", "found"),
    [
        (f"id={SID}", True),
        (f"other=1; id={SID}; x=y", True),
        (f'id="{SID}"', True),
        (f"id=bogus; id={SID}", True),
        (f"ID={SID}", False),
        (f"xid={SID}", False),
        (f"id={SID}x", False),
        ("id=", False),
        ("", False),
        (None, False),
        (b"id=" + str(SID).encode(), True),
        ("id=" + "A" * 10_000, False),
    ],
)
def test_session_id_from_header(header: str | bytes | None, found: bool) -> None:
    got = CookieOptions().session_id_from_header(header)
    assert (got == SID) if found else got is None


def test_signed_cookies_and_rotation() -> None:
    old = CookieOptions(signing_keys=[b"k" * 32])
    value = old.encode(SID)
    assert value.startswith(f"{SID}.")
    assert len(value) == 22 + 1 + 43
    assert old.decode(value) == SID
    assert old.decode(str(SID)) is None  # unsigned value refused
    assert old.decode(value[:-1] + ("A" if value[-1] != "A" else "B")) is None
    rotated = CookieOptions(signing_keys=[b"n" * 32, b"k" * 32])
    assert rotated.decode(value) == SID  # old signatures still accepted
    assert rotated.encode(SID) != value  # new ones use the first key
    assert old.decode(rotated.encode(SID)) is None
    renamed = CookieOptions(name="other", signing_keys=[b"k" * 32])
    assert renamed.decode(value) is None  # a value signed for another cookie name
    assert "k" * 32 not in repr(old)


@given(st.text(max_size=200))
def test_hostile_values_read_as_no_session(value: str) -> None:
    for options in (CookieOptions(), CookieOptions(signing_keys=["s" * 32])):
        got = options.decode(value)
        assert got is None or options.encode(got) == value
        header_got = options.session_id_from_header(f"id={value}")
        assert header_got is None or isinstance(header_got, SessionId)


def test_each_builder_step_is_frozen_cookie_options() -> None:
    """Issue 20: ``opts: CookieOptions = CookieOptions.build().name("s").max_age(10)``."""
    start = CookieOptions.build()
    named = start.name("s")
    opts: CookieOptions = named.max_age(10)
    for step in (start, named, opts):
        assert isinstance(step, CookieOptions)
        with pytest.raises(dataclasses.FrozenInstanceError):
            step.path = "/x"  # type: ignore[misc]
    # Each step is new: the earlier ones are unchanged.
    assert start == CookieOptions()
    assert named == CookieOptions(name="s")
    assert named.options is named.finish()  # the earlier builder's field, kept
    assert opts == CookieOptions(name="s", max_age=10) == opts
    assert hash(opts) == hash(CookieOptions(name="s", max_age=10))
    assert opts.finish() == CookieOptions(name="s", max_age=10)
    assert type(opts.finish()) is CookieOptions
    assert opts.finish().max_age == 10
    plain = CookieOptions(name="s")
    assert plain.finish() is plain
    assert CookieOptionsBuilder(plain).max_age(10) == opts
    assert pickle.loads(pickle.dumps(opts)) == opts
    assert "max_age=10" in repr(opts)
    # A step validates at once.
    with pytest.raises(ValueError, match="requires secure=True"):
        CookieOptions.build().same_site("none").secure(False)
    # A builder works as the options it holds.
    assert opts.set_cookie_header(SID, 10) == opts.finish().set_cookie_header(SID, 10)
    assert opts.session_id_from_header(f"s={SID}") == SID
    assert opts.removal_header() == opts.finish().removal_header()


async def test_a_builder_is_accepted_as_cookie_everywhere() -> None:
    opts: CookieOptions = CookieOptions.build().name("s").max_age(10).secure(False)
    async with MemoryStore() as store:
        session = Session(store, cookie=opts)
        await session.update("user", "alice")
        header = session.cookie_header()
        assert header is not None
        assert header.startswith(f"s={session.id}; Max-Age=10; Path=/;")
        assert "Secure" not in header
        again = Session.from_cookie_header(store, f"s={session.id}", cookie=opts)
        assert await again.get("user") == "alice"

        request = SimpleNamespace(headers=[(b"cookie", f"s={session.id}".encode())])
        assert await session_for(request, store, cookie=opts).get("user") == "alice"  # type: ignore[arg-type]

    app = QuartTrio(__name__)
    assert Sessions(app, MemoryStore(), cookie=opts).cookie == CookieOptions(
        name="s", max_age=10, secure=False
    )
