"""Hostile Cookie headers against a real server: never a 5xx, never a store lookup for a
malformed value, never an adopted id."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.apps import CountingStore, make_app
from tests.integration.server import no_cookie_jar, served_in_thread
from trio_ruts import CookieOptions, SessionId

PLAIN = CookieOptions(name="sid", secure=False)
SIGNED = CookieOptions(name="sid", secure=False, signing_keys=[b"k" * 32])

header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=120,
)
near_ids = st.builds(
    lambda raw, cut, extra: base64.urlsafe_b64encode(raw).decode()[:cut] + extra,
    st.binary(min_size=16, max_size=16),
    st.integers(0, 24),
    st.sampled_from(["", "=", "==", "A", ".", ".sig", "%3D", " ", '"']),
)
cookie_values = st.one_of(header_text, near_ids, st.builds(lambda: str(SessionId.generate())))
cookie_headers = st.one_of(
    cookie_values.map(lambda v: f"sid={v}"),
    cookie_values,
    st.tuples(cookie_values, cookie_values).map(lambda p: f"sid={p[0]}; sid={p[1]}"),
    st.tuples(header_text, cookie_values).map(lambda p: f"{p[0]}; sid={p[1]}"),
).map(lambda h: h.strip(" \t"))  # HTTP trims a field value's edges; clients refuse them


class Harness:
    def __init__(self, cookie: CookieOptions) -> None:
        self.cookie = cookie
        self.store = CountingStore()
        self.app = make_app(cookie, self.store)

    def check(self, client: httpx.Client, header: str) -> None:
        before = self.store.total
        claimed = self.cookie.session_id_from_header(header)
        response = client.get("/count", headers=[(b"cookie", header.encode("latin-1"))])
        assert response.status_code == 200, response.text
        if claimed is None:
            # Malformed: no lookup, only the write that starts a new session.
            assert self.store.total - before == 1
            assert self.store.calls["write"] >= 1
            assert response.text == "1"
        issued = response.headers["set-cookie"].split(";")[0].removeprefix("sid=")
        assert self.cookie.decode(issued) is not None
        if claimed is not None and response.text == "1":
            assert self.cookie.decode(issued) != claimed  # an unknown id is never adopted


@pytest.fixture(scope="module")
def harnesses() -> Iterator[dict[str, tuple[Harness, httpx.Client]]]:
    plain, signed = Harness(PLAIN), Harness(SIGNED)
    with (
        served_in_thread(plain.app) as plain_url,
        served_in_thread(signed.app) as signed_url,
        httpx.Client(base_url=plain_url, cookies=no_cookie_jar()) as a,
        httpx.Client(base_url=signed_url, cookies=no_cookie_jar()) as b,
    ):
        yield {"plain": (plain, a), "signed": (signed, b)}


@settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
@given(header=cookie_headers)
def test_hostile_cookies_plain(
    harnesses: dict[str, tuple[Harness, httpx.Client]], header: str
) -> None:
    harness, client = harnesses["plain"]
    harness.check(client, header)


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(header=cookie_headers)
def test_hostile_cookies_signed(
    harnesses: dict[str, tuple[Harness, httpx.Client]], header: str
) -> None:
    harness, client = harnesses["signed"]
    harness.check(client, header)


def test_valid_cookie_still_works(harnesses: dict[str, tuple[Harness, httpx.Client]]) -> None:
    for _harness, client in harnesses.values():
        first = client.get("/count")
        value = first.headers["set-cookie"].split(";")[0]
        assert client.get("/count", headers={"Cookie": value}).text == "2"
