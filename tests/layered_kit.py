"""Test tools for the layered store: a real store behind switches.

``Faulty`` wraps a real store (a MemoryStore unless given another, e.g. a PostgresStore or a
RedisStore over real servers) and can delay a call before it reaches the store and after it
returned (so a cancellation can land with the change applied but its reply not yet seen),
fail it before it reaches the store, or raise any exception type. It never fakes data: every
call that goes through is the real store's.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, TypeVar

import trio

from trio_ruts import SessionId, StoreError
from trio_ruts._ids import SessionRef
from trio_ruts.stores import (
    CacheEntry,
    CacheRead,
    HotLayer,
    LayeredStore,
    MemoryStore,
    Read,
    Removal,
    SessionRecord,
    SessionStore,
    Settled,
    Touch,
    Write,
    WriteResult,
)

T = TypeVar("T")


class Faulty(SessionStore, HotLayer):
    """A real store behind switches.

    Attributes:
        delay: seconds before each call reaches the store.
        after: seconds after the store answered, before the caller sees it.
        jitter: up to this many extra seconds, drawn at random, before and after.
        stall_rate: the share of calls held up before they reach the store by up to
            ``stall`` seconds more, drawn at random (a mark that lands after its own commit).
        fail: raise ``error`` (before touching the store) on every call.
        fail_rate: the share of writes (write, remove) that fail that way, at random.
        error: the exception type raised.
        failed: values of writes that failed before reaching the store.
        calls: calls by method name.
    """

    def __init__(self, inner: SessionStore | None = None, *, seed: int = 0) -> None:
        self.inner = MemoryStore() if inner is None else inner
        self.delay = 0.0
        self.after = 0.0
        self.jitter = 0.0
        self.stall_rate = 0.0
        self.stall = 0.0
        self.fail = False
        self.fail_rate = 0.0
        self.error: type[Exception] = StoreError
        self.failed: set[bytes] = set()
        self.calls: Counter[str] = Counter()
        self._rng = random.Random(seed)

    async def _open(self, nursery: trio.Nursery) -> None:
        if not self.inner.is_open:
            await self._exit_stack.enter_async_context(self.inner)

    async def _call(self, name: str, fn: Callable[[], Awaitable[T]], value: Any = None) -> T:
        self.calls[name] += 1
        wait = self.delay + self._rng.random() * self.jitter
        if self.stall_rate and self._rng.random() < self.stall_rate:
            wait += self._rng.random() * self.stall
        await trio.sleep(wait)
        if self.fail or (value is not None and self._rng.random() < self.fail_rate):
            if isinstance(value, bytes):
                self.failed.add(value)
            raise self.error("injected failure")
        result = await fn()
        await trio.sleep(self.after + self._rng.random() * self.jitter)
        return result

    async def get(self, id: SessionId, field: str) -> bytes | None:
        return await self._call("get", partial(self.inner.get, id, field))

    async def get_all(self, id: SessionId) -> SessionRecord | None:
        return await self._call("get_all", partial(self.inner.get_all, id))

    async def write(self, write: Write) -> WriteResult:
        return await self._call("write", partial(self.inner.write, write), write.value)

    async def remove(self, id: SessionId, field: str) -> Removal:
        return await self._call("remove", partial(self.inner.remove, id, field), True)

    async def delete(self, id: SessionId) -> bool:
        return await self._call("delete", partial(self.inner.delete, id))

    async def expire(self, id: SessionId, seconds: int) -> bool:
        return await self._call("expire", partial(self.inner.expire, id, seconds))

    async def rename(self, old: SessionId, new: SessionId) -> int | None:
        return await self._call("rename", partial(self.inner.rename, old, new))

    async def touch_get(self, id: SessionId, field: str, touch: Touch) -> Read:
        return await self._call("touch_get", partial(self.inner.touch_get, id, field, touch))

    async def touch_get_all(self, id: SessionId, touch: Touch) -> SessionRecord | None:
        return await self._call("touch_get_all", partial(self.inner.touch_get_all, id, touch))

    async def touch(self, id: SessionId, touch: Touch) -> int | None:
        return await self._call("touch", partial(self.inner.touch, id, touch))

    async def expire_capped(self, id: SessionId, seconds: int, absolute: int) -> int | None:
        capped = partial(self.inner.expire_capped, id, seconds, absolute)
        return await self._call("expire_capped", capped)

    @property
    def _hot(self) -> HotLayer:
        assert isinstance(self.inner, HotLayer)
        return self.inner

    async def cache_read(self, id: SessionId, field: str) -> CacheRead:
        return await self._call("cache_read", partial(self._hot.cache_read, id, field))

    async def cache_mark(self, id: SessionId, field: str | None, hold: float) -> int:
        return await self._call("cache_mark", partial(self._hot.cache_mark, id, field, hold))

    async def cache_settle(self, *args: Any, **kw: Any) -> Settled:
        if not kw.get("ordered", True):  # a change whose mark ran beside its cold write
            self.calls["cache_settle beside"] += 1
        return await self._call("cache_settle", partial(self._hot.cache_settle, *args, **kw))

    async def cache_forget(self, ref: SessionRef) -> None:
        await self._call("cache_forget", partial(self._hot.cache_forget, ref))

    async def cache_fill(
        self, id: SessionId, lease: int, entries: Sequence[CacheEntry], ttl: int
    ) -> bool:
        fill = partial(self._hot.cache_fill, id, lease, entries, ttl)
        return await self._call("cache_fill", fill)

    async def cache_put(self, *args: Any, **kw: Any) -> bool | None:
        return await self._call("cache_put", partial(self._hot.cache_put, *args, **kw))


async def settled(store: LayeredStore) -> None:
    """Wait until the layered store's background hot endings (settles) have run."""
    while store._settling:
        await trio.sleep(0.001)
