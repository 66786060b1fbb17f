"""Whatever goes wrong below RedisStore reaches its callers as ``StoreError`` (or
``StoreTimeout``), through the store's own transport and through the redis-py bridge alike:
fake servers on loopback that answer garbage, nothing, or refuse to be a cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import hiredis
import pytest
import trio

from trio_ruts import SessionId, StoreError, StoreTimeout
from trio_ruts.stores import RedisStore

pytestmark = pytest.mark.redis

GARBAGE = b"!!!garbage\r\n"


def _answer(command: list[bytes], garbage_from_start: bool) -> bytes | None:
    """What the fake server says: well-formed answers to the connection setup (redis-py's
    ``HELLO`` and ``CLIENT SETINFO``, ``PING``, ...) unless ``garbage_from_start``, garbage
    to the rest; ``None`` for silence."""
    name = command[0].upper()
    if garbage_from_start:
        return GARBAGE
    if name == b"PING":
        return b"+PONG\r\n"
    if name == b"HELLO":  # redis-py asks for RESP3
        return b"%1\r\n$5\r\nproto\r\n:3\r\n"
    if name in (b"CLIENT", b"SELECT", b"AUTH"):
        return b"+OK\r\n"
    if name == b"INFO":
        return b"$17\r\ncluster_enabled:0\r\n"
    if name == b"EVAL":  # HEXPIRE detection: yes
        return b":1\r\n"
    if name == b"HGET" and command[-1] == b"silent":
        return None
    return GARBAGE


@asynccontextmanager
async def _fake_redis(garbage_from_start: bool) -> AsyncIterator[int]:
    """A trio TCP listener that speaks just enough RESP to be connected to; yields its port."""

    async def serve(stream: trio.SocketStream) -> None:
        parser = hiredis.Reader()
        try:
            while data := await stream.receive_some(65536):
                parser.feed(data)
                while (command := parser.gets()) is not False:
                    answer = _answer(command, garbage_from_start)
                    if answer is not None:
                        await stream.send_all(answer)
        except trio.BrokenResourceError:
            pass  # the client hung up on the garbage

    async with trio.open_nursery() as nursery:
        [listener] = await nursery.start(partial(trio.serve_tcp, serve, 0, host="127.0.0.1"))
        yield listener.socket.getsockname()[1]
        nursery.cancel_scope.cancel()


def _redispy(port: int) -> Any:
    import redis.asyncio

    return redis.asyncio.Redis(host="127.0.0.1", port=port)


def _redispy_cluster(port: int) -> Any:
    from redis.asyncio.cluster import RedisCluster

    return RedisCluster(host="127.0.0.1", port=port)


def _native(port: int) -> str:
    return f"redis://127.0.0.1:{port}"


MAKERS: dict[str, Callable[[int], RedisStore]] = {
    "from_client(Redis)": lambda port: RedisStore.from_client(_redispy(port)),
    "from_client(RedisCluster)": lambda port: RedisStore.from_client(_redispy_cluster(port)),
    "from_url": lambda port: RedisStore.from_url(_native(port)),
}


def _assert_store_error(exc: BaseException) -> None:
    assert isinstance(exc, StoreError), f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
    assert "127.0.0.1" in str(exc) or "redis via" in str(exc), str(exc)


@pytest.mark.parametrize("via", list(MAKERS))
async def test_garbage_when_opening_is_a_store_error(via: str) -> None:
    """The server answers garbage from its first reply: opening the store fails with a
    ``StoreError`` (redis-py's ``InvalidResponse`` and ``RedisClusterException`` included)."""
    async with _fake_redis(garbage_from_start=True) as port:
        with trio.fail_after(10):
            try:
                async with MAKERS[via](port):
                    pass
            except Exception as exc:
                _assert_store_error(exc)
            else:
                raise AssertionError("the store opened on a server that answers garbage")


@pytest.mark.parametrize("via", ["from_client(Redis)", "from_url"])
async def test_garbage_later_is_a_store_error_and_the_store_still_works(via: str) -> None:
    """The setup went well; then a command gets garbage back: that call fails with a
    ``StoreError``, and the store can still be used (the next call gets garbage too)."""
    async with _fake_redis(garbage_from_start=False) as port:
        with trio.fail_after(10):
            async with MAKERS[via](port) as store:
                for _ in range(2):
                    with pytest.raises(Exception) as info:  # noqa: PT011 - checked below
                        await store.get(SessionId.generate(), "a")
                    _assert_store_error(info.value)


@pytest.mark.parametrize("via", ["from_client(Redis)", "from_url"])
async def test_no_answer_is_a_store_timeout(via: str) -> None:
    """A command the server never answers: ``StoreTimeout`` after the store's timeout."""
    async with _fake_redis(garbage_from_start=False) as port:
        if via == "from_url":
            store = RedisStore.from_url(_native(port), timeout=0.3)
        else:
            store = RedisStore.from_client(_redispy(port), timeout=0.3)
        with trio.fail_after(10):
            async with store:
                with pytest.raises(StoreTimeout, match=r"0\.3 s"):
                    await store.get(SessionId.generate(), "silent")


async def test_redispy_own_timeouts_are_store_timeouts() -> None:
    """redis-py's ``TimeoutError`` (its ``socket_timeout``) is a ``StoreTimeout`` too."""
    import redis.asyncio
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    async with _fake_redis(garbage_from_start=False) as port:
        client = redis.asyncio.Redis(
            host="127.0.0.1", port=port, socket_timeout=0.2, retry=Retry(NoBackoff(), 0)
        )
        with trio.fail_after(10):
            async with RedisStore.from_client(client, timeout=None) as store:
                with pytest.raises(StoreTimeout):
                    await store.get(SessionId.generate(), "silent")


async def test_redispy_unreachable_is_a_store_error() -> None:
    from tests import servers

    port = servers.free_port()
    for make in (_redispy, _redispy_cluster):
        with pytest.raises(StoreError, match=r"unreachable|cluster"):
            async with RedisStore.from_client(make(port)):
                pass
