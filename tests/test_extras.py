"""Drivers load when a store is built, not when its class is imported, and a missing one is
reported with the pip extra that installs it (SPEC section 1). Each check runs in a fresh
interpreter: this test process has long imported every driver."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests import servers

DRIVERS = ("hiredis", "asyncpg", "trio_asyncio", "asyncio", "redis")


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


LOADED = f"""
import sys
def loaded():
    return sorted({{m.split(".")[0] for m in sys.modules}} & set({DRIVERS!r}))
"""


def test_importing_the_stores_loads_no_driver() -> None:
    out = _run(
        LOADED
        + """
        import trio_ruts, trio_ruts.stores
        from trio_ruts.stores import RedisStore, PostgresStore, LayeredStore
        from trio_ruts.stores import WriteThrough, HotOnly, ColdOnly, MemoryStore
        LayeredStore(MemoryStore(), MemoryStore())
        print("imported:", loaded())
        RedisStore.from_url("redis://127.0.0.1:1")
        print("redis built:", loaded())
        PostgresStore.from_dsn("postgresql://127.0.0.1:1/db")
        print("postgres built:", loaded())
        """.replace("\n        ", "\n")
    )
    assert "imported: []" in out
    # The check above can fail: building a store does load its driver.
    assert "redis built: ['hiredis']" in out
    assert "postgres built: ['asyncio', 'asyncpg', 'hiredis', 'trio_asyncio']" in out


def _without(modules: tuple[str, ...], code: str) -> str:
    """Run ``code`` in an interpreter where ``modules`` cannot be imported, as in an install
    without their extra."""
    block = "".join(f"sys.modules[{m!r}] = None\n" for m in modules)
    return _run("import sys\n" + block + textwrap.dedent(code))


MISSING = """
from trio_ruts.stores import RedisStore, PostgresStore
try:
    {call}
except ModuleNotFoundError as exc:
    print("error:", exc)
else:
    print("no error")
"""


@pytest.mark.parametrize(
    ("blocked", "call", "message"),
    [
        (
            ("hiredis",),
            'RedisStore.from_url("redis://127.0.0.1:1")',
            'RedisStore needs hiredis: pip install "trio-ruts[redis]"',
        ),
        (
            ("hiredis",),
            'RedisStore.cluster(["redis://127.0.0.1:1"])',
            'RedisStore needs hiredis: pip install "trio-ruts[redis]"',
        ),
        (
            ("redis",),
            "RedisStore.from_client(object())",
            'RedisStore.from_client needs redis: pip install "trio-ruts[redis-py]"',
        ),
        (
            ("trio_asyncio",),
            "RedisStore.from_client(object())",
            'RedisStore.from_client needs trio_asyncio: pip install "trio-ruts[redis-py]"',
        ),
        (
            ("asyncpg",),
            'PostgresStore.from_dsn("postgresql://127.0.0.1:1/db")',
            'PostgresStore needs asyncpg: pip install "trio-ruts[postgres]"',
        ),
        (
            ("trio_asyncio",),
            "PostgresStore.from_pool(object())",
            'PostgresStore needs trio_asyncio: pip install "trio-ruts[postgres]"',
        ),
    ],
)
def test_a_missing_driver_names_its_extra(
    blocked: tuple[str, ...], call: str, message: str
) -> None:
    out = _without(blocked, MISSING.format(call=call))
    assert out.strip() == f"error: {message}"


@pytest.mark.redis
def test_the_redis_py_bridge_needs_no_hiredis(redis70: servers.RedisServer) -> None:
    """redis-py and trio-asyncio are enough for ``from_client``'s commands; its watches
    (the store's own subscriber) need hiredis, and say which extra brings it."""
    out = _without(
        ("hiredis",),
        f"""
        import redis.asyncio, trio
        from trio_ruts import Session
        from trio_ruts.stores import RedisStore

        async def main():
            client = redis.asyncio.Redis.from_url({redis70.url!r})
            async with RedisStore.from_client(client, prefix="extras:") as store:
                session = Session(store)
                await session.update("user", "alice")
                print("read back:", await Session(store, id=session.id).get("user"))
                try:
                    async with Session(store, id=session.id).watch():
                        pass
                except ModuleNotFoundError as exc:
                    print("watch:", exc)
            print("hiredis loaded:", sys.modules.get("hiredis") is not None)

        trio.run(main)
        """,
    )
    assert "read back: alice" in out
    assert 'watch: RedisStore.watch() needs hiredis: pip install "trio-ruts[redis-py]"' in out
    assert "hiredis loaded: False" in out
