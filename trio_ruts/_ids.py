"""Session ids: 128 random bits, rendered as 22 characters of unpadded base64url."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import importlib
import re
import secrets
from collections.abc import Callable
from typing import Any, Final, NamedTuple

from ._errors import InvalidSessionId


def _fastest_sha256() -> Callable[[bytes], Any]:
    """CPython's own SHA-256 where it has one: for 16 bytes it costs a fraction of OpenSSL
    3's, whose per-call setup dominates such small inputs (bench/at_rest.py measured ~7 us
    against ~2 us per store call on a loaded machine), and every store operation hashes an
    id. The digests are the same."""
    for module in ("_sha2", "_sha256"):  # CPython >= 3.12, 3.11
        with contextlib.suppress(ImportError, AttributeError):
            return importlib.import_module(module).sha256  # type: ignore[no-any-return]
    return hashlib.sha256  # pragma: no cover - another Python


_sha256: Final = _fastest_sha256()

ID_BYTES: Final = 16
ID_CHARS: Final = 22
#: Bytes of an id that :meth:`SessionId.regenerate` keeps. Three bytes are exactly the first four
#: characters of the text form, which stores use as a cluster hash tag; the other 13 bytes
#: (104 bits) are always fresh.
TAG_BYTES: Final = 3
TAG_CHARS: Final = 4

# 21 free characters, then one whose low 4 bits must be zero: 16 bytes are 128 bits and the
# 22 characters carry 132, so a canonical encoding pads with zero bits.
_CANONICAL = re.compile(r"[A-Za-z0-9_-]{21}[AQgw]")


class SessionId:
    """An opaque session id.

    ``str(id)`` gives the cookie value; ``repr(id)`` never shows it, because the id is a
    credential and reprs end up in logs and tracebacks.
    """

    __slots__ = ("_bytes", "_digest", "_text")

    _bytes: bytes
    _text: str | None  # rendered on first use: most ids never need it
    _digest: bytes | None  # id_digest(), computed on first use

    def __init__(self, raw: bytes) -> None:
        if type(raw) is not bytes or len(raw) != ID_BYTES:
            raise InvalidSessionId(f"a session id is exactly {ID_BYTES} bytes")
        self._bytes = raw
        self._text = None
        self._digest = None

    @classmethod
    def generate(cls) -> SessionId:
        """Return a new id made of 128 bits from :mod:`secrets`."""
        return cls(secrets.token_bytes(ID_BYTES))

    def regenerate(self) -> SessionId:
        """Return a new id that keeps this id's hash-tag part and draws 104 fresh bits.

        Keeping the tag lets a rename stay inside one Redis Cluster hash slot.
        """
        fresh = object.__new__(SessionId)  # 3 + 13 bytes: valid by construction
        fresh._bytes = self._bytes[:TAG_BYTES] + secrets.token_bytes(ID_BYTES - TAG_BYTES)
        fresh._text = None
        fresh._digest = None
        return fresh

    @classmethod
    def parse(cls, text: str) -> SessionId:
        """Parse the cookie form of an id.

        Raises:
            InvalidSessionId: ``text`` is not 22 canonical base64url characters.
        """
        if not isinstance(text, str) or _CANONICAL.fullmatch(text) is None:
            raise InvalidSessionId(
                "a session id is 22 characters of unpadded base64url (A-Z a-z 0-9 - _)"
            )
        # The pattern admits only canonical base64url, so this decodes to exactly 16 bytes
        # (binascii directly: this runs on every request that carries a cookie).
        parsed = object.__new__(cls)
        parsed._bytes = binascii.a2b_base64(text.replace("-", "+").replace("_", "/") + "==")
        parsed._text = text  # canonical, so it is exactly what __str__ would render
        parsed._digest = None
        return parsed

    @property
    def bytes(self) -> bytes:
        """The 16 raw bytes."""
        return self._bytes

    @property
    def tag(self) -> str:
        """The first four characters, kept across :meth:`regenerate` (a cluster hash tag)."""
        return str(self)[:TAG_CHARS]

    def __str__(self) -> str:
        text = self._text
        if text is None:
            text = self._text = base64.urlsafe_b64encode(self._bytes).rstrip(b"=").decode("ascii")
        return text

    def __repr__(self) -> str:
        return "SessionId(<redacted>)"

    def __eq__(self, other: object) -> bool:
        if other is self:
            return True
        if not isinstance(other, SessionId):
            return NotImplemented
        return secrets.compare_digest(self._bytes, other._bytes)

    def __hash__(self) -> int:
        return hash(self._bytes)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("session ids are credentials and are not pickled")


class SessionRef(NamedTuple):
    """How a store that holds no ids addresses a session: its hash tag (the id's first four
    characters: 24 bits, shared by every id a session is renamed to, so not usable as a
    cookie) and :func:`id_digest`. A per-user index hands these to a LayeredStore, which
    drops the revoked sessions' hot copies by them."""

    tag: str
    digest: bytes


def session_ref(id: SessionId) -> SessionRef:
    """The :class:`SessionRef` of ``id``."""
    return SessionRef(id.tag, id_digest(id))


def id_digest(id: SessionId) -> bytes:
    """The 32 bytes by which stores address a session at rest: SHA-256 of the id's bytes.

    Stores that outlive the process (Redis, PostgreSQL) key sessions by this digest, never by
    the id, so a dump, a replica or a ``MONITOR`` shows nothing that works as a cookie. It is
    not keyed: the id has 128 random bits, so the digest cannot be reversed or guessed, and
    PostgreSQL computes the same with ``sha256(id)`` when it migrates old rows. Every store
    and index that persists an id goes through this one function.
    """
    digest = id._digest
    if digest is None:  # computed once per id object: a request's operations share it
        digest = id._digest = _sha256(id._bytes).digest()
    return digest
