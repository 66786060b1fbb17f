"""Session ids carried in a request header (API clients) instead of a cookie."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from ._cookies import CookieOptions
from ._ids import SessionId

_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 7230 token: a header name
_MAX_VALUE: Final = 1024  # longer header values are not ours: no parsing, no store call
_RESERVED: Final = frozenset({"cookie", "set-cookie", "host", "content-length"})


@dataclass(frozen=True, slots=True)
class IdHeader:
    """Where a session id travels when it does not travel in a cookie.

    Attributes:
        name: the request (and response) header, e.g. ``"X-Session-Id"``.
        bearer: the header is ``Authorization`` and carries ``Bearer <id>``.
    """

    name: str
    bearer: bool

    def session_id(self, values: Iterable[str], cookie: CookieOptions) -> SessionId | None:
        """The id in the request's header values, or ``None`` (malformed, badly signed, or
        another ``Authorization`` scheme: "no session", as for a cookie)."""
        for value in values:
            if len(value) > _MAX_VALUE:
                continue
            value = value.strip()
            if self.bearer:
                scheme, _, value = value.partition(" ")
                if scheme.lower() != "bearer":
                    continue
                value = value.strip()
            found = cookie.decode(value)
            if found is not None:
                return found
        return None

    def value(self, cookie: CookieOptions, session_id: SessionId | None) -> str:
        """The response header's value: the (signed) id, or empty when the session ended."""
        if session_id is None:
            return ""
        token = cookie.encode(session_id)
        return f"Bearer {token}" if self.bearer else token


def as_id_header(name: object) -> IdHeader:
    """Check an ``id_header=`` argument: a header name other than ``Cookie``/``Set-Cookie``."""
    if not isinstance(name, str) or not _TOKEN.fullmatch(name):
        raise ValueError(
            f"id_header must be an HTTP header name, e.g. 'X-Session-Id'; got {name!r}"
        )
    if name.lower() in _RESERVED:
        raise ValueError(
            f"id_header={name!r} is reserved: leave id_header=None to use the session cookie"
        )
    return IdHeader(name, bearer=name.lower() == "authorization")
