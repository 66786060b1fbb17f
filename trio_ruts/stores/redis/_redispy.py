"""A transport over an existing redis-py asyncio client, driven through trio-asyncio."""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Any, Final

import trio
from redis import exceptions as redis_errors

from ..._errors import StoreError, StoreTimeout
from ..._store import CLOSE_TIMEOUT
from .._asyncio import bridge, open_private_loop
from ._transport import Arg, Endpoint, ReplyError, Subscription, Transport
from ._transport._errors import Table, reraise

#: redis-py's exceptions, as callers see them; the first row whose type matches wins. Error
#: replies (``ResponseError``) are not here: they are returned as ``ReplyError`` values.
_TABLE: Final[Table] = (
    ((redis_errors.TimeoutError, TimeoutError), StoreTimeout, "{where} did not answer: {exc}"),
    (
        redis_errors.MaxConnectionsError,
        StoreError,
        "{where}: the client's connection limit was reached; raise its max_connections or "
        "give it a BlockingConnectionPool",
    ),
    (
        (redis_errors.AuthenticationError, redis_errors.AuthorizationError),
        StoreError,
        "{where} refused the client's credentials: {exc}",
    ),
    ((redis_errors.ConnectionError, OSError), StoreError, "{where} is unreachable: {exc}"),
    (redis_errors.InvalidResponse, StoreError, "{where} broke the RESP protocol: {exc}"),
    (
        (redis_errors.RedisClusterException, redis_errors.ClusterError),
        StoreError,
        "{where}: the cluster failed: {exc}",
    ),
    (redis_errors.RedisError, StoreError, "{where} failed: {exc}"),
)


class RedisPyFactory:
    """Opens a :class:`RedisPyTransport` on ``client`` (see ``RedisStore.from_client``)."""

    extra = "redis-py"

    def __init__(self, client: Any, timeout: float | None) -> None:
        options = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
        encoder = client.get_encoder() if hasattr(client, "get_encoder") else None
        if options.get("decode_responses") or getattr(encoder, "decode_responses", False):
            raise ValueError("the redis-py client must be created with decode_responses=False")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout is a number of seconds > 0 or None, not {timeout}")
        self._client = client
        self._timeout = timeout

    def __str__(self) -> str:
        return f"redis via {type(self._client).__name__}"

    def subscription(self, transport: Transport) -> Subscription:
        """Where session notifications are subscribed: the client's server or cluster nodes,
        reached by the store's own connections (see :func:`client_subscription`)."""
        return client_subscription(self._client)

    async def open(self, stack: AsyncExitStack, nursery: trio.Nursery) -> Transport:
        # The loop lives on the store's exit stack: it is left after the transport closes.
        loop = await open_private_loop(stack)
        transport = RedisPyTransport(self._client, loop, self._timeout, str(self))
        try:
            await transport.execute(None, ("PING",), idempotent=True)
        except BaseException:
            with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
                await transport.aclose()
            raise
        return transport


class RedisPyTransport:
    """Runs commands on a ``redis.asyncio.Redis`` or ``RedisCluster`` in the trio-asyncio loop
    of its store. Replies are raw (the client must not decode). Every exception redis-py
    raises becomes a :class:`StoreError` (see ``_TABLE``)."""

    def __init__(self, client: Any, loop: Any, timeout: float | None, name: str) -> None:
        self._client = client
        self._loop = loop
        self._timeout = timeout
        self._name = name
        self._execute = bridge(loop, client.execute_command)
        self._open = True

    def __str__(self) -> str:
        return self._name

    async def execute(self, key: bytes | None, args: Sequence[Arg], *, idempotent: bool) -> Any:
        await trio.lowlevel.checkpoint_if_cancelled()  # nothing reaches asyncio when cancelled
        try:
            if self._timeout is None:
                return await self._execute(*args)
            # A cancelled command makes redis-py drop its connection, whose state is unknown.
            with trio.move_on_after(self._timeout):
                return await self._execute(*args)
        except redis_errors.NoScriptError as exc:
            return ReplyError(f"NOSCRIPT {exc}")
        except redis_errors.ResponseError as exc:
            return ReplyError(str(exc))
        except Exception as exc:
            reraise(exc, self, _TABLE)
        raise StoreTimeout(
            f"{self} did not answer within {self._timeout:g} s (the store's timeout)"
        )

    async def aclose(self) -> None:
        if self._open:
            self._open = False
            try:
                await bridge(self._loop, self._close_client)()
            except Exception as exc:
                reraise(exc, self, _TABLE)

    async def _close_client(self) -> None:
        # The client's connections belong to the loop the store is about to close: drop them
        # all, also those of a pool the client was given (which aclose() leaves alone).
        await self._client.aclose()
        pool = getattr(self._client, "connection_pool", None)
        if pool is not None:
            await pool.disconnect()


def client_subscription(client: Any) -> Subscription:
    """The server (or cluster nodes) of a redis-py client and its connection settings (host,
    port or unix socket, username, password, db, TLS), for the store's own subscriber.

    redis-py's pubsub is not used: driven from trio through trio-asyncio, it was seen not to
    end when cancelled (the store's close then hung).

    Raises:
        StoreError: the client's settings cannot be reproduced (a connection class of its
            own, a credential provider).
    """
    from redis.asyncio import connection as rc

    cluster = hasattr(client, "nodes_manager")
    if cluster:
        kwargs = dict(client.connection_kwargs)
        kind = kwargs.get("connection_class", rc.Connection)
        nodes = [n for n in client.get_nodes() if n.server_type in (None, "primary")]
        nodes = nodes or client.get_nodes() or client.nodes_manager.startup_nodes.values()
        addresses = [(n.host, int(n.port)) for n in nodes]
    else:
        pool = client.connection_pool
        kwargs, kind = dict(pool.connection_kwargs), pool.connection_class
        addresses = [(kwargs.get("host", "localhost"), int(kwargs.get("port", 6379)))]
    what = f"watching sessions on a {type(client).__name__} client"
    if kind not in (rc.Connection, rc.SSLConnection, rc.UnixDomainSocketConnection):
        raise StoreError(
            f"{what}: its connection class {kind.__name__} is not one whose settings the "
            "store can reproduce for its subscription connection; use redis-py's own "
            "Connection, SSLConnection or UnixDomainSocketConnection, or RedisStore.from_url"
        )
    if kwargs.get("credential_provider") is not None:
        raise StoreError(
            f"{what}: a credential_provider cannot be used by the store's subscription "
            "connection; give the client a username and password, or use RedisStore.from_url"
        )
    tls = kind is rc.SSLConnection
    context = _ssl_context(kwargs) if tls else None
    user, password = kwargs.get("username"), kwargs.get("password")
    db = 0 if cluster else int(kwargs.get("db") or 0)
    if kind is rc.UnixDomainSocketConnection:
        seeds = [Endpoint(unix_path=kwargs["path"], username=user, password=password, db=db)]
    else:
        seeds = [
            Endpoint(host, port, None, tls, context, user, password, db) for host, port in addresses
        ]
    return Subscription(tuple(seeds), cluster=cluster)


_CERT_REQS: Final = {
    "none": ssl.CERT_NONE,
    "optional": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
}


def _ssl_context(kwargs: dict[str, Any]) -> ssl.SSLContext:
    """An SSL context with redis-py's ``ssl_*`` settings."""
    context = ssl.create_default_context(
        cafile=kwargs.get("ssl_ca_certs"),
        capath=kwargs.get("ssl_ca_path"),
        cadata=kwargs.get("ssl_ca_data"),
    )
    reqs = kwargs.get("ssl_cert_reqs", "required")
    mode = _CERT_REQS.get(reqs, ssl.CERT_REQUIRED) if isinstance(reqs, str) else reqs
    context.check_hostname = bool(kwargs.get("ssl_check_hostname", True)) and (
        mode != ssl.CERT_NONE
    )
    context.verify_mode = mode
    if kwargs.get("ssl_certfile"):
        context.load_cert_chain(
            kwargs["ssl_certfile"], kwargs.get("ssl_keyfile"), kwargs.get("ssl_password")
        )
    return context
