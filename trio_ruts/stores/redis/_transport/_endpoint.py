"""Where a Redis server is and how to reach it: :class:`Endpoint` and URL parsing."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass(frozen=True)
class Endpoint:
    """Where and how to connect. ``str()`` names the server without credentials."""

    host: str = "127.0.0.1"
    port: int = 6379
    unix_path: str | None = None
    tls: bool = False
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    db: int = 0

    def __str__(self) -> str:
        if self.unix_path is not None:
            return f"redis at unix:{self.unix_path}"
        scheme = "rediss" if self.tls else "redis"
        return f"redis at {scheme}://{self.host}:{self.port}"

    def moved_to(self, host: str, port: int) -> Endpoint:
        """The same credentials and TLS settings, for another node of a cluster."""
        return Endpoint(host, port, None, self.tls, self.ssl_context, self.username, self.password)


@dataclass(frozen=True)
class Subscription:
    """Where a store hears of sessions ending: one server (``seeds[0]``), or the cluster the
    ``seeds`` belong to."""

    seeds: tuple[Endpoint, ...]
    cluster: bool


def parse_url(url: str, ssl_context: ssl.SSLContext | None = None) -> Endpoint:
    """Parse ``redis://``, ``rediss://`` and ``unix://`` URLs (user, password, db).

    Raises:
        ValueError: another scheme, or a database that is not a number.
    """
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    if "password" in query:
        password = query["password"][0]
    db_text = query.get("db", [parts.path.lstrip("/") if parts.scheme != "unix" else ""])[0]
    try:
        db = int(db_text or 0)
    except ValueError:
        raise ValueError(f"the database in a Redis URL is a number, not {db_text!r}") from None
    if parts.scheme == "unix":
        return Endpoint(unix_path=parts.path, username=username, password=password, db=db)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(
            f"Redis URLs start with redis://, rediss:// or unix://, not {parts.scheme}://"
        )
    return Endpoint(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 6379,
        tls=parts.scheme == "rediss",
        ssl_context=ssl_context,
        username=username,
        password=password,
        db=db,
    )
