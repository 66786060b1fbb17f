"""A transport over an existing redis-py asyncio client, driven through trio-asyncio."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Any

import trio
from redis import exceptions as redis_errors

from ..._errors import StoreError, StoreTimeout
from .._asyncio import bridge, open_private_loop
from ._transport import Arg, ReplyError


class RedisPyTransport:
    """Runs commands on a ``redis.asyncio.Redis`` or ``RedisCluster`` in a trio-asyncio loop
    that this transport owns while open. Replies are raw (the client must not decode)."""

    def __init__(self, client: Any) -> None:
        options = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
        encoder = client.get_encoder() if hasattr(client, "get_encoder") else None
        if options.get("decode_responses") or getattr(encoder, "decode_responses", False):
            raise ValueError("the redis-py client must be created with decode_responses=False")
        self._client = client
        self._open = False
        self._execute: Any = None

    def __str__(self) -> str:
        return f"redis via {type(self._client).__name__}"

    async def open(self, stack: AsyncExitStack, nursery: trio.Nursery) -> None:
        # The loop lives on the store's exit stack: it is left after aclose(), in order.
        self._loop = await open_private_loop(stack)
        self._execute = bridge(self._loop, self._client.execute_command)
        self._open = True
        await self.execute(None, ("PING",), idempotent=True)

    async def aclose(self) -> None:
        if self._open:
            self._open = False
            await bridge(self._loop, self._close_client)()

    async def _close_client(self) -> None:
        # The client's connections belong to the loop the store is about to close: drop them
        # all, also those of a pool the client was given (which aclose() leaves alone).
        await self._client.aclose()
        pool = getattr(self._client, "connection_pool", None)
        if pool is not None:
            await pool.disconnect()

    async def execute(self, key: bytes | None, args: Sequence[Arg], *, idempotent: bool) -> Any:
        try:
            return await self._execute(*args)
        except redis_errors.NoScriptError as exc:
            return ReplyError(f"NOSCRIPT {exc}")
        except redis_errors.ResponseError as exc:
            return ReplyError(str(exc))
        except redis_errors.TimeoutError as exc:
            raise StoreTimeout(f"{self}: timed out ({exc})") from exc
        except redis_errors.MaxConnectionsError as exc:
            raise StoreError(
                f"{self}: the client's connection limit was reached; raise its "
                f"max_connections or give it a BlockingConnectionPool"
            ) from exc
        except (redis_errors.ConnectionError, OSError) as exc:
            raise StoreError(f"{self} is unreachable: {exc!r}") from exc
