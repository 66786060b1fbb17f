"""Session notifications on a Redis Cluster: sharded pub/sub, one channel per watched session.

The scripts end a session and ``SPUBLISH`` on its channel (``prefix watch:{tag}digest``, in
the session key's slot) in one atomic step; only the master owning the slot delivers it. The
store's :class:`~trio_ruts.stores.redis._transport.ShardedSubscriber` holds one
``SSUBSCRIBE`` per watched session at that master (a session's first watch subscribes, its
last one unsubscribes), over one connection per master node.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from ..._ids import SessionId
from ..._watch import WatchHub
from ._transport import Cluster, Options, ShardedSubscriber, Subscription

if TYPE_CHECKING:
    from ._store import RedisStore


class _Channels:
    """The hub's per-session source (``trio_ruts._watch.Channels``) over the subscriber."""

    def __init__(self, store: RedisStore, subscriber: ShardedSubscriber) -> None:
        self._store = store
        self.subscriber = subscriber

    def want(self, id: SessionId) -> None:
        self.subscriber.want(self._store.watch_channel(id))

    def drop(self, id: SessionId) -> None:
        self.subscriber.drop(self._store.watch_channel(id))

    async def subscribed(self, id: SessionId) -> None:
        await self.subscriber.subscribed(self._store.watch_channel(id))


async def listen(
    store: RedisStore,
    hub: WatchHub,
    plan: Subscription,
    on_message: Callable[[bytes, bytes], None],
    connect_timeout: float,
) -> None:
    """Run the store's sharded subscription until cancelled (the hub's source task)."""

    def on_resubscribed(channel: bytes) -> None:
        digest = store._watch_digest(channel)
        if digest is not None:
            hub.recheck(digest)

    async with trio.open_nursery() as nursery:
        transport = store._transport
        if isinstance(transport, Cluster):
            slots = transport
        else:
            # A redis-py cluster client: a slot map of the store's own (one connection, for
            # CLUSTER SLOTS), since the subscription connections are the store's too. The
            # subscriber loads it before it places the first channel.
            slots = Cluster(plan.seeds, Options(1, connect_timeout, connect_timeout), nursery)
        subscriber = ShardedSubscriber(
            plan.seeds[0], slots, on_message, on_resubscribed, connect_timeout=connect_timeout
        )
        try:
            await nursery.start(subscriber.run)
            hub.channels = _Channels(store, subscriber)
            hub.connected()
            await trio.sleep_forever()
        finally:
            hub.channels = None
            if slots is not transport:
                slots.close()
