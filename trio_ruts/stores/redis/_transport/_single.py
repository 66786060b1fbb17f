"""Commands to one Redis server."""

from __future__ import annotations

from collections.abc import Coroutine, Sequence
from typing import Any

import trio

from ._base import Arg
from ._endpoint import Endpoint
from ._pool import Options, Pool
from ._resp import pack


class SingleNode:
    """A :class:`~trio_ruts.stores.redis._transport.Transport` to one Redis server."""

    def __init__(self, endpoint: Endpoint, options: Options, nursery: trio.Nursery) -> None:
        self.pool = Pool(endpoint, options, nursery)

    def __str__(self) -> str:
        return str(self.pool.endpoint)

    def execute(
        self, key: bytes | None, args: Sequence[Arg], *, idempotent: bool
    ) -> Coroutine[Any, Any, Any]:
        # Not a coroutine itself: returning the pool's saves one frame on every command.
        return self.pool.request(pack(args), idempotent=idempotent)

    def close(self) -> None:
        self.pool.close()

    async def aclose(self) -> None:
        await self.pool.aclose()
