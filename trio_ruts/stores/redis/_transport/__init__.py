"""How RedisStore talks to Redis, one topic per module; the store logic is elsewhere.

* ``_base``: commands, error replies, the ``Transport`` and ``TransportFactory`` protocols;
* ``_endpoint``: where a server is (URL parsing);
* ``_connection``: one pipelined connection over a trio stream (the only module that knows
  about sockets);
* ``_pool``: the connections to one server, the boundary where errors are translated;
* ``_errors``: the translation table;
* ``_single`` and ``_cluster``: commands to one server, and to a cluster (slot routing);
* ``_factory``: how a store gets its transport, cluster detection included.

The redis-py bridge (``.._redispy``) is a third transport, kept apart because it needs the
``redis`` package.
"""

from ._base import Arg as Arg
from ._base import ReplyError as ReplyError
from ._base import Transport as Transport
from ._base import TransportFactory as TransportFactory
from ._base import pack as pack
from ._cluster import key_slot as key_slot
from ._endpoint import Endpoint as Endpoint
from ._endpoint import parse_url as parse_url
from ._factory import NativeFactory as NativeFactory
from ._factory import NotOpen as NotOpen
from ._pool import Options as Options

__all__ = [
    "Arg",
    "Endpoint",
    "NativeFactory",
    "NotOpen",
    "Options",
    "ReplyError",
    "Transport",
    "TransportFactory",
    "key_slot",
    "pack",
    "parse_url",
]
