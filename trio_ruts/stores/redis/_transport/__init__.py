"""How RedisStore talks to Redis, one topic per module; the store logic is elsewhere.

* ``_base``: commands, error replies, the ``Transport`` and ``TransportFactory`` protocols;
* ``_endpoint``: where a server is (URL parsing);
* ``_resp``: RESP encoding (hiredis);
* ``_connection``: one pipelined connection over a trio stream (the only module that knows
  about sockets);
* ``_pool``: the connections to one server, the boundary where errors are translated;
* ``_errors``: the translation table;
* ``_single`` and ``_cluster``: commands to one server, and to a cluster (slot routing);
* ``_factory``: how a store gets its transport, cluster detection included;
* ``_subscriber``: the dedicated pub/sub connection of session notifications (one server);
* ``_sharded``: sharded pub/sub on a cluster, one connection per master node.

The redis-py bridge (``.._redispy``) is a third transport, kept apart because it needs the
``redis`` package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..._extras import lazy_attribute
from ._base import Arg as Arg
from ._base import NotOpen as NotOpen
from ._base import ReplyError as ReplyError
from ._base import Transport as Transport
from ._base import TransportFactory as TransportFactory
from ._endpoint import Endpoint as Endpoint
from ._endpoint import Subscription as Subscription
from ._endpoint import parse_url as parse_url

if TYPE_CHECKING:
    from ._cluster import Cluster as Cluster
    from ._cluster import key_slot as key_slot
    from ._factory import NativeFactory as NativeFactory
    from ._pool import Options as Options
    from ._resp import pack as pack
    from ._sharded import ShardedSubscriber as ShardedSubscriber
    from ._subscriber import subscribe as subscribe

# The native transport needs hiredis: its names load on first use (RedisStore.from_url), so
# that importing RedisStore, or using the redis-py bridge, loads no hiredis.
_LAZY: dict[str, str] = {
    "Cluster": "._cluster",
    "ShardedSubscriber": "._sharded",
    "NativeFactory": "._factory",
    "Options": "._pool",
    "key_slot": "._cluster",
    "pack": "._resp",
    "subscribe": "._subscriber",
}

__all__ = [
    "Arg",
    "Cluster",
    "Endpoint",
    "NativeFactory",
    "NotOpen",
    "Options",
    "ReplyError",
    "ShardedSubscriber",
    "Subscription",
    "Transport",
    "TransportFactory",
    "key_slot",
    "pack",
    "parse_url",
    "subscribe",
]


def __getattr__(name: str) -> Any:
    return lazy_attribute(__name__, _LAZY, globals(), name)
