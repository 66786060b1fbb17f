"""Cookie options, the fluent builder, signing, and the Cookie/Set-Cookie wire forms."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence
from dataclasses import FrozenInstanceError, dataclass, field, replace
from typing import Final, Literal

from ._errors import InvalidSessionId
from ._ids import ID_CHARS, SessionId

SameSite = Literal["lax", "strict", "none"]

#: The longest lifetime browsers accept for a cookie (RFC 6265bis caps Max-Age at 400 days).
MAX_COOKIE_AGE: Final = 400 * 24 * 3600
_SIG_CHARS: Final = 43  # 32 bytes of HMAC-SHA256 in unpadded base64url
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 7230 token: a valid cookie name
_ATTR_VALUE = re.compile(r"[\x21-\x3a\x3c-\x7e]*")  # printable ASCII without ';'
_EXPIRED = "Thu, 01 Jan 1970 00:00:00 GMT"


def _check_options(opts: CookieOptions) -> None:
    if not _TOKEN.fullmatch(opts.name):
        raise ValueError(f"cookie name {opts.name!r} is not an HTTP token")
    if opts.same_site not in ("lax", "strict", "none"):
        raise ValueError(f"same_site must be 'lax', 'strict' or 'none', not {opts.same_site!r}")
    if opts.same_site == "none" and not opts.secure:
        raise ValueError("same_site='none' requires secure=True (browsers reject it otherwise)")
    if type(opts.max_age) is not int or not (opts.max_age > 0 or opts.max_age == -1):
        raise ValueError(
            f"max_age must be a positive number of seconds, or -1 for persistent sessions; "
            f"got {opts.max_age!r}"
        )
    for attr in ("path", "domain"):
        value = getattr(opts, attr)
        if value is not None and not _ATTR_VALUE.fullmatch(value):
            raise ValueError(f"cookie {attr} {value!r} must be printable ASCII without ';'")
    for key in opts.signing_keys:
        if len(key) < 16:
            raise ValueError("each signing key needs at least 16 bytes (32 random bytes advised)")


@dataclass(frozen=True, slots=True)
class CookieOptions:
    """How the session cookie is named, scoped and protected.

    Args:
        name: the cookie name.
        http_only: hide the cookie from scripts.
        same_site: ``"lax"``, ``"strict"`` or ``"none"`` (``"none"`` needs ``secure``).
        secure: send only over HTTPS.
        max_age: the session's default lifetime in seconds (also its cookie Max-Age), or ``-1``
            for sessions that do not expire.
        path: cookie Path.
        domain: cookie Domain, or ``None`` for host-only.
        signing_keys: HMAC-SHA256 keys; when given, cookie values carry a signature made with
            the first key, and any of the keys verifies (rotate by prepending a new key).
    """

    name: str = "id"
    http_only: bool = True
    same_site: SameSite = "lax"
    secure: bool = True
    max_age: int = 600
    path: str = "/"
    domain: str | None = None
    signing_keys: Sequence[bytes | str] = field(default=(), repr=False)
    # The attributes after Max-Age in a Set-Cookie value, derived once: every write needs them.
    _attributes: str = field(init=False, repr=False, compare=False, default="")

    def __post_init__(self) -> None:
        keys = tuple(k.encode() if isinstance(k, str) else bytes(k) for k in self.signing_keys)
        object.__setattr__(self, "signing_keys", keys)
        _check_options(self)
        attributes = [f"; Path={self.path}"]
        if self.domain is not None:
            attributes.append(f"; Domain={self.domain}")
        if self.secure:
            attributes.append("; Secure")
        if self.http_only:
            attributes.append("; HttpOnly")
        attributes.append(f"; SameSite={self.same_site.capitalize()}")
        object.__setattr__(self, "_attributes", "".join(attributes))

    @staticmethod
    def build() -> CookieOptionsBuilder:
        """Start a fluent builder from the defaults, in the style of ruts: each step returns
        a new frozen :class:`CookieOptions` (a :class:`CookieOptionsBuilder`)."""
        return CookieOptionsBuilder()

    def finish(self) -> CookieOptions:
        """These options as a plain :class:`CookieOptions`: itself here; the settings of a
        builder chain (whose attributes are its steps)."""
        return self

    # -- wire forms --------------------------------------------------------------------------

    def encode(self, session_id: SessionId) -> str:
        """The cookie value for ``session_id``: the id, plus ``.signature`` when signing."""
        text = str(session_id)
        if not self.signing_keys:
            return text
        return f"{text}.{self._sign(self.signing_keys[0], text)}"

    def decode(self, value: str) -> SessionId | None:
        """The id in a cookie value, or ``None`` when it is malformed or badly signed."""
        if self.signing_keys:
            text, dot, sig = value.partition(".")
            if not dot or len(sig) != _SIG_CHARS:
                return None
            if not any(hmac.compare_digest(self._sign(k, text), sig) for k in self.signing_keys):
                return None
            value = text
        if len(value) != ID_CHARS:
            return None
        try:
            return SessionId.parse(value)
        except InvalidSessionId:
            return None

    def _sign(self, key: bytes | str, text: str) -> str:
        # The cookie name is signed too, so a value cannot be moved to another cookie.
        raw = key.encode() if isinstance(key, str) else key
        mac = hmac.new(raw, f"{self.name}={text}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")

    def session_id_from_header(self, header: str | bytes | None) -> SessionId | None:
        """The session id in a request's ``Cookie`` header, or ``None``.

        Malformed headers, values and signatures all read as "no session". When several
        cookies carry our name (e.g. set for different paths), the first valid one wins.
        """
        if not header:
            return None
        if isinstance(header, bytes):
            header = header.decode("latin-1")
        if len(header) > 16384 or self.name not in header:
            return None
        for pair in header.split(";"):
            name, eq, value = pair.partition("=")
            if not eq or name.strip() != self.name:
                continue
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            found = self.decode(value)
            if found is not None:
                return found
        return None

    def set_cookie_header(self, session_id: SessionId, max_age: int) -> str:
        """A ``Set-Cookie`` value carrying ``session_id`` for ``max_age`` seconds."""
        value = self.encode(session_id)
        return f"{self.name}={value}; Max-Age={live_max_age(max_age)}{self._attributes}"

    def removal_header(self) -> str:
        """A ``Set-Cookie`` value that makes browsers drop the session cookie."""
        return f"{self.name}=; Max-Age=0; Expires={_EXPIRED}{self._attributes}"


def live_max_age(ttl: int) -> int:
    """The Max-Age for a live session whose store reports ``ttl`` (``-1``: persistent)."""
    if ttl == -1:
        return MAX_COOKIE_AGE
    return min(max(ttl, 1), MAX_COOKIE_AGE)


class CookieOptionsBuilder(CookieOptions):
    """The fluent builder, in the style of ruts: each step returns a new builder, which is
    itself a frozen :class:`CookieOptions`, so a chain can be passed (or annotated) wherever
    options go::

        opts: CookieOptions = CookieOptions.build().name("session").max_age(3600)

    Each step validates at once (``.secure(False)`` after ``.same_site("none")`` raises
    ``ValueError``). The option names are the steps here, so read a setting from the plain
    options: ``opts.finish().max_age``.

    Args:
        options: the options to start from (default: the defaults).
    """

    __slots__ = ("_options",)
    _options: CookieOptions

    def __init__(self, options: CookieOptions | None = None) -> None:
        # The fields of CookieOptions are left unset: the methods below shadow them, and
        # every reader of a builder's settings asks ``finish()``.
        plain = CookieOptions() if options is None else as_cookie_options(options)
        object.__setattr__(self, "_options", plain)

    def _step(self, **change: object) -> CookieOptionsBuilder:
        return CookieOptionsBuilder(replace(self._options, **change))  # type: ignore[arg-type]

    def name(self, name: str) -> CookieOptionsBuilder:  # type: ignore[override]
        return self._step(name=name)

    def http_only(self, http_only: bool) -> CookieOptionsBuilder:  # type: ignore[override]
        return self._step(http_only=http_only)

    def same_site(self, same_site: SameSite) -> CookieOptionsBuilder:  # type: ignore[override]
        return self._step(same_site=same_site)

    def secure(self, secure: bool) -> CookieOptionsBuilder:  # type: ignore[override]
        return self._step(secure=secure)

    def max_age(self, max_age: int) -> CookieOptionsBuilder:  # type: ignore[override]
        return self._step(max_age=max_age)

    def path(self, path: str) -> CookieOptionsBuilder:  # type: ignore[override]
        return self._step(path=path)

    def domain(self, domain: str | None) -> CookieOptionsBuilder:  # type: ignore[override]
        return self._step(domain=domain)

    def signing_keys(  # type: ignore[override]
        self, keys: Iterable[bytes | str]
    ) -> CookieOptionsBuilder:
        return self._step(signing_keys=tuple(keys))

    def finish(self) -> CookieOptions:
        """The plain :class:`CookieOptions` built so far, whose attributes are the settings.
        Optional: a builder is already accepted wherever options are."""
        return self._options

    @property
    def options(self) -> CookieOptions:
        """The plain options built so far (as :meth:`finish`; kept from the earlier builder)."""
        return self._options

    # -- a builder behaves as the options it holds -----------------------------------------

    def encode(self, session_id: SessionId) -> str:
        return self._options.encode(session_id)

    def decode(self, value: str) -> SessionId | None:
        return self._options.decode(value)

    def session_id_from_header(self, header: str | bytes | None) -> SessionId | None:
        return self._options.session_id_from_header(header)

    def set_cookie_header(self, session_id: SessionId, max_age: int) -> str:
        return self._options.set_cookie_header(session_id, max_age)

    def removal_header(self) -> str:
        return self._options.removal_header()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, CookieOptionsBuilder):
            other = other._options
        return self._options == other

    def __hash__(self) -> int:
        return hash(self._options)

    def __repr__(self) -> str:
        return f"CookieOptionsBuilder({self._options!r})"

    def __reduce__(self) -> tuple[type[CookieOptionsBuilder], tuple[CookieOptions]]:
        return (CookieOptionsBuilder, (self._options,))

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")


def as_cookie_options(cookie: CookieOptions | CookieOptionsBuilder | None) -> CookieOptions:
    """Accept options, a builder, or ``None`` for the defaults."""
    if type(cookie) is CookieOptions:  # the usual case, once per request: one check
        return cookie
    if cookie is None:
        return CookieOptions()
    if isinstance(cookie, CookieOptionsBuilder):
        return cookie.finish()
    if isinstance(cookie, CookieOptions):
        return cookie
    raise TypeError(f"expected CookieOptions, got {type(cookie).__name__}")
