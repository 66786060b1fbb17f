"""A private trio-asyncio loop per store, for drivers that only speak asyncio.

trio-asyncio (and with it asyncio) is imported by these functions, which run once a store is
built, never by importing this module."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

from .._errors import StoreNotOpen


async def open_private_loop(stack: AsyncExitStack) -> Any:
    """Open a trio-asyncio loop that lives on ``stack`` and return it.

    ``open_loop()`` also makes the loop the task's current one; that is undone here, so two
    stores in one task never run on each other's loop and the caller's own trio-asyncio code
    keeps its loop. Call into the store's loop with :func:`bridge`.
    """
    import trio_asyncio

    previous = trio_asyncio.current_loop.get()
    loop = await stack.enter_async_context(trio_asyncio.open_loop())
    trio_asyncio.current_loop.set(previous)
    return loop


def current_loop_or_fail(what: str) -> Any:
    """The trio-asyncio loop the caller runs in (for drivers objects the caller made)."""
    import trio_asyncio

    loop = trio_asyncio.current_loop.get()
    if loop is None:
        raise StoreNotOpen(
            f"{what} belongs to asyncio: open the store inside "
            f"`async with trio_asyncio.open_loop():`, where it was created"
        )
    return loop


def bridge(loop: Any, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """``fn`` (an asyncio coroutine function) callable from trio, on ``loop``."""
    import trio_asyncio

    return trio_asyncio.aio_as_trio(fn, loop=loop)  # type: ignore[no-any-return]
