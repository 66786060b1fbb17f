"""What the store and every transport agree on: commands, error replies, the two protocols."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import trio

from ...._errors import StoreNotOpen

if TYPE_CHECKING:
    from ._endpoint import Subscription

Arg = bytes | str | int | float


class ReplyError(Exception):
    """An error reply from the server (``-ERR ...``), returned as a value, never raised by a
    transport: the caller decides what it means (e.g. ``NOSCRIPT``, ``MOVED``)."""


class Transport(Protocol):
    """An open way of talking to Redis: one server, a cluster, or a redis-py client.

    ``str()`` names the server(s) for error messages, never with credentials.
    """

    async def execute(self, key: bytes | None, args: Sequence[Arg], *, idempotent: bool) -> Any:
        """Send one command (routed by ``key`` in a cluster) and return its reply; an error
        reply comes back as a :class:`ReplyError` value.

        A checkpoint: under a cancelled scope nothing is sent and :class:`trio.Cancelled` is
        raised. ``idempotent`` commands are retried once on a fresh connection if an
        established connection turns out to be broken.

        Raises:
            StoreTimeout: no reply within the configured operation deadline.
            StoreError: the server is unreachable or the connection broke.
        """
        ...

    async def aclose(self) -> None:
        """Release every connection; waiting callers fail with :class:`StoreError`."""
        ...


class TransportFactory(Protocol):
    """What a store holds before it opens: it asks for its transport when it opens.

    ``str()`` names the server(s), as the transport will. ``extra`` is the pip extra that
    installs what it needs.
    """

    extra: str

    async def open(self, stack: AsyncExitStack, nursery: trio.Nursery) -> Transport:
        """Connect and return the transport. Contexts that must live as long as the store go
        on ``stack``; background tasks (connection readers) run in the store's ``nursery``.
        If opening fails, whatever was opened is released before the error propagates."""
        ...

    def subscription(self, transport: Transport) -> Subscription:
        """Where the store subscribes to session notifications, once ``transport`` is open.

        Raises:
            StoreError: the store cannot subscribe with these settings.
        """
        ...


class NotOpen:
    """The transport of a store that has not opened yet: it names the server(s), and refuses
    commands."""

    def __init__(self, factory: object) -> None:
        self._factory = factory

    def __str__(self) -> str:
        return str(self._factory)

    async def execute(
        self, key: bytes | None, args: Sequence[Arg], *, idempotent: bool
    ) -> NoReturn:
        raise StoreNotOpen("RedisStore is not open: use `async with store:` around its use")

    async def aclose(self) -> Any:
        await trio.lowlevel.checkpoint()
