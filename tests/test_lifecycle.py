"""Store lifetimes: closing stores in any order, from any task, inside other stores' blocks.

Each case runs its own ``trio.run``, so that a store that corrupts trio's cancel scope stack
(a nursery left out of nesting order) fails its own case, and the check that nothing escapes
``trio.run`` is literal.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from trio_ruts import CookieOptions, Session, SessionId
from trio_ruts.stores import LayeredStore, MemoryStore, SessionStore

COOKIE = CookieOptions(max_age=60)

FACTORIES: dict[str, Callable[[], SessionStore]] = {
    "memory": MemoryStore,
    "layered": lambda: LayeredStore(MemoryStore(), MemoryStore()),
}
PAIRS = [(a, b) for a in FACTORIES for b in FACTORIES]


def layers(store: SessionStore) -> list[SessionStore]:
    """The store and, for a layered store that opened them, its layers."""
    if isinstance(store, LayeredStore):
        return [store, store.hot, store.cold]
    return [store]


async def assert_closed(store: SessionStore) -> None:
    for each in layers(store):
        assert not each.is_open, f"{each!r} is still open"
        with pytest.raises(trio.ClosedResourceError):
            await each.get(SessionId.generate(), "a")


async def assert_usable(store: SessionStore) -> None:
    s = Session(store, cookie=COOKIE)
    assert await s.update("a", 1)
    assert await Session(store, s.id, cookie=COOKIE).get("a") == 1


def run_cleanly(main: Callable[[], Awaitable[None]]) -> None:
    """Run ``main`` in a fresh trio run; nothing may escape, and no task may outlive it."""

    async def wrapper() -> int:
        before = trio.lowlevel.current_statistics().tasks_living
        await main()
        await trio.testing.wait_all_tasks_blocked()
        return trio.lowlevel.current_statistics().tasks_living - before

    assert trio.run(wrapper) == 0


# Each order: (name, body run inside both blocks, body run after the inner block only).
Close = Callable[[SessionStore, SessionStore], Awaitable[None]]


async def outer_inside(a: SessionStore, b: SessionStore) -> None:
    await a.aclose()
    await assert_closed(a)
    await assert_usable(b)  # the inner store and the block's body carry on


async def inner_inside(a: SessionStore, b: SessionStore) -> None:
    await b.aclose()
    await assert_closed(b)
    await assert_usable(a)


async def outer_then_inner(a: SessionStore, b: SessionStore) -> None:
    await a.aclose()
    await b.aclose()


async def inner_then_outer(a: SessionStore, b: SessionStore) -> None:
    await b.aclose()
    await a.aclose()


async def outer_twice(a: SessionStore, b: SessionStore) -> None:
    await a.aclose()
    await a.aclose()  # idempotent
    await assert_usable(b)


async def outer_from_another_task(a: SessionStore, b: SessionStore) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.aclose)
    await assert_closed(a)
    await assert_usable(b)


async def outer_when_cancelled(a: SessionStore, b: SessionStore) -> None:
    with trio.CancelScope() as scope:
        scope.cancel()
        await a.aclose()  # releases, then raises Cancelled at its checkpoint
    assert scope.cancelled_caught
    await assert_closed(a)
    await assert_usable(b)


async def nothing(a: SessionStore, b: SessionStore) -> None:
    pass


ORDERS: list[Close] = [
    outer_inside,
    inner_inside,
    outer_then_inner,
    inner_then_outer,
    outer_twice,
    outer_from_another_task,
    outer_when_cancelled,
    nothing,
]


@pytest.mark.parametrize(("outer", "inner"), PAIRS)
@pytest.mark.parametrize("close", ORDERS, ids=lambda f: f.__name__)
def test_close_inside_nested_blocks(outer: str, inner: str, close: Close) -> None:
    a, b = FACTORIES[outer](), FACTORIES[inner]()

    async def main() -> None:
        async with a:
            await assert_usable(a)
            async with b:
                await assert_usable(b)
                await close(a, b)
        await assert_closed(a)
        await assert_closed(b)

    run_cleanly(main)


@pytest.mark.parametrize(("outer", "inner"), PAIRS)
def test_close_outer_between_the_blocks(outer: str, inner: str) -> None:
    a, b = FACTORIES[outer](), FACTORIES[inner]()

    async def main() -> None:
        async with a:
            async with b:
                pass
            await a.aclose()
            await assert_closed(a)
            await assert_closed(b)
        await assert_closed(a)

    run_cleanly(main)


@pytest.mark.parametrize("which", ["hot", "cold", "both"])
def test_close_the_layers_of_an_open_layered_store(which: str) -> None:
    """Layers closed by hand inside the layered store's block: reads fall back or fail
    cleanly, and everything ends closed."""

    async def main() -> None:
        async with LayeredStore(MemoryStore(), MemoryStore()) as layered:
            s = Session(layered, cookie=COOKIE)
            await s.update("a", 1)
            for layer in (layered.hot, layered.cold):
                if which in ("both", "hot" if layer is layered.hot else "cold"):
                    await layer.aclose()
                    assert not layer.is_open
            if which == "hot":
                assert await Session(layered, s.id, cookie=COOKIE).get("a") == 1
            assert layered.is_open
        await assert_closed(layered)

    run_cleanly(main)


def test_aclose_of_a_layered_store_releases_the_layers_it_opened() -> None:
    async def main() -> None:
        async with MemoryStore() as kept:
            owned = MemoryStore()
            async with LayeredStore(owned, kept) as layered, MemoryStore() as other:
                await layered.aclose()
                assert not owned.is_open  # released now, not at the end of the block
                assert kept.is_open  # opened by the caller: the caller closes it
                await assert_usable(other)
                await assert_usable(kept)
            assert kept.is_open
        assert not kept.is_open

    run_cleanly(main)


def test_background_tasks_stop_at_aclose() -> None:
    async def main() -> None:
        store = MemoryStore(sweep_interval=0.01)
        async with store, MemoryStore() as other:
            swept = 0
            real = store.delete_expired

            async def counting() -> int:
                nonlocal swept
                swept += 1
                return await real()

            store.delete_expired = counting  # type: ignore[method-assign]
            await trio.sleep(0.05)
            assert swept > 0
            await store.aclose()
            swept = 0
            await trio.sleep(0.05)
            assert swept == 0, "the sweeper kept running after aclose()"
            await assert_usable(other)

    run_cleanly(main)


def test_store_closed_while_opening() -> None:
    class Slow(MemoryStore):
        async def _open(self, nursery: trio.Nursery) -> None:
            await super()._open(nursery)
            await trio.sleep(0.01)

    async def main() -> None:
        store = Slow()

        async def close_soon() -> None:
            await trio.sleep(0.001)
            await store.aclose()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(close_soon)
            with pytest.raises(trio.ClosedResourceError, match="closed while opening"):
                async with store:
                    pytest.fail("a store closed while opening must not be entered")
        assert not store.is_open

    run_cleanly(main)
