"""Code as a user writes it, checked by ``mypy --strict`` (tests/test_typing.py, and the mypy
run of the test command): the public API must type-check without casts or ignores."""

from __future__ import annotations

import trio

from trio_ruts import CookieOptions, Expiry, MemoryStore, Session
from trio_ruts.stores import LayeredStore, PostgresStore, RedisStore, SessionStore

# The builder's steps are frozen CookieOptions: annotate and pass them as options.
opts: CookieOptions = CookieOptions.build().name("s").max_age(10)
signed: CookieOptions = (
    CookieOptions.build()
    .name("session")
    .http_only(True)
    .same_site("strict")
    .secure(True)
    .path("/app")
    .domain(None)
    .signing_keys([b"0123456789abcdef"])
)
lifetime: int = opts.finish().max_age
plain: CookieOptions = CookieOptions(name="s", max_age=10)
assert opts == plain


def stores(redis_url: str, dsn: str) -> list[SessionStore]:
    redis = RedisStore.from_url(redis_url, prefix="app:")
    postgres = PostgresStore.from_dsn(dsn, table="sessions")
    return [redis, postgres, LayeredStore(redis, postgres)]


async def visit(store: SessionStore) -> int:
    session = Session(store, cookie=opts, expiry=Expiry(idle=600, absolute=86400))
    count: int = await session.incr("visits")
    user: object = await session.get("user", default=None)
    await session.update("user", {"name": "alice", "seen": [1, 2]}, ttl=60)
    header: str | None = session.cookie_header()
    assert user is None or header is not None
    return count


async def main() -> None:
    async with MemoryStore() as store:
        await visit(store)
        from_header = Session.from_cookie_header(store, "s=abc", cookie=signed)
        assert from_header.id is None


if __name__ == "__main__":
    trio.run(main)
