"""How a store gets its transport: connecting, and finding out whether it reached a cluster."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack

import trio

from ._base import Transport
from ._cluster import Cluster
from ._endpoint import Endpoint, Subscription
from ._pool import Options
from ._single import SingleNode


class NativeFactory:
    """Opens the store's own transport (trio streams, hiredis): to one server, to the cluster
    a server belongs to, or to a cluster given by seed nodes.

    Args:
        seeds: the server, or the cluster's seed nodes.
        cluster: ``True`` for a cluster's seeds; ``False`` for one server; ``None`` for one
            server unless it turns out to be a cluster node (asked when opening), in which
            case the whole cluster is used.
    """

    extra = "redis"

    def __init__(
        self, seeds: Sequence[Endpoint], options: Options, *, cluster: bool | None
    ) -> None:
        if not seeds:
            raise ValueError("give at least one Redis URL")
        self._seeds = list(seeds)
        self._options = options
        self._cluster = cluster

    def __str__(self) -> str:
        if self._cluster:
            return f"redis cluster via {self._seeds[0]}"
        return str(self._seeds[0])

    def subscription(self, transport: Transport) -> Subscription:
        """Where session notifications are subscribed: the server, or the cluster (sharded,
        at each channel's node) when ``transport`` turned out to be one."""
        return Subscription(tuple(self._seeds), cluster=isinstance(transport, Cluster))

    async def open(self, stack: AsyncExitStack, nursery: trio.Nursery) -> Transport:
        if self._cluster:
            return await _open_cluster(self._seeds, self._options, nursery)
        single = SingleNode(self._seeds[0], self._options, nursery)
        try:
            # Connect now, so that a wrong address or password fails at start-up.
            await single.execute(None, ("PING",), idempotent=True)
            if self._cluster is None and await _is_cluster_node(single):
                single.close()
                return await _open_cluster(self._seeds, self._options, nursery)
        except BaseException:
            single.close()
            raise
        return single


async def _is_cluster_node(single: SingleNode) -> bool:
    info = await single.execute(None, ("INFO", "cluster"), idempotent=True)
    return isinstance(info, bytes) and b"cluster_enabled:1" in info


async def _open_cluster(
    seeds: Sequence[Endpoint], options: Options, nursery: trio.Nursery
) -> Cluster:
    cluster = Cluster(seeds, options, nursery)
    try:
        await cluster.refresh()
    except BaseException:
        cluster.close()
        raise
    return cluster
