"""Live revocation on a Redis Cluster is sharded pub/sub (SPEC section 10), and redis-py clients
subscribe for real.

On a cluster the scripts ``SPUBLISH`` on the session's channel (its key's slot) and the store
``SSUBSCRIBE``s to the exact channel of each watched session at the master owning the slot,
one connection per master. Checked on the servers: who receives what, ``PUBSUB
SHARDNUMSUB``, ``CLIENT LIST``; and through a slot migration and a node's restart.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
import trio

from tests import servers
from tests.contract.test_watch import Running, a_session, new, task_names, watching
from trio_ruts import SessionId
from trio_ruts.stores import RedisStore
from trio_ruts.stores.redis._transport import key_slot, parse_url, subscribe

pytestmark = pytest.mark.redis

WITHIN = 1.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[list[servers.RedisServer]]:
    """A cluster of this module's own: tests below migrate slots and restart nodes, and
    count every connection."""
    with servers.redis_cluster(servers.system_redis_binary()) as nodes:
        yield nodes


def prefix() -> str:
    return f"s{uuid.uuid4().hex[:6]}:"


def native(nodes: list[servers.RedisServer], pfx: str) -> RedisStore:
    return RedisStore.cluster([n.url for n in nodes], prefix=pfx)


def owner(nodes: list[servers.RedisServer], key: bytes) -> servers.RedisServer:
    slot = key_slot(key)
    for node in nodes:
        for entry in _slots(node):
            if entry[0] <= slot <= entry[1]:
                return next(n for n in nodes if n.port == entry[2])
    raise AssertionError(f"no node serves slot {slot}")


def _slots(node: servers.RedisServer) -> list[tuple[int, int, int]]:
    """This node's own slot ranges, from CLUSTER NODES (myself)."""
    for line in node.cli("CLUSTER", "NODES").splitlines():
        parts = line.split()
        if "myself" in parts[2]:
            ranges = []
            for r in parts[8:]:
                if r.startswith("["):
                    continue
                low, _, high = r.partition("-")
                ranges.append((int(low), int(high or low), node.port))
            return ranges
    return []


def shard_subscribers(nodes: list[servers.RedisServer], channel: bytes) -> dict[int, int]:
    """PUBSUB SHARDNUMSUB on every node: {port: subscribers} (non-zero ones only)."""
    found = {}
    for node in nodes:
        count = int(node.cli("PUBSUB", "SHARDNUMSUB", channel.decode()).split()[-1])
        if count:
            found[node.port] = count
    return found


def shard_connections(node: servers.RedisServer) -> list[str]:
    """The node's connections that hold sharded subscriptions (CLIENT LIST ssub=)."""
    return [c for c in node.cli("CLIENT", "LIST").splitlines() if " ssub=0 " not in f" {c} "]


@asynccontextmanager
async def two_stores(nodes: list[servers.RedisServer]) -> AsyncIterator[tuple[RedisStore, ...]]:
    pfx = prefix()
    async with native(nodes, pfx) as store, native(nodes, pfx) as other:
        yield store, other


# -- what the servers see --------------------------------------------------------------------


async def test_a_cluster_ends_sessions_with_spublish_not_publish(
    cluster: list[servers.RedisServer],
) -> None:
    heard: list[bytes] = []
    async with two_stores(cluster) as (store, other), trio.open_nursery() as nursery:
        # A classic subscriber on every node, for every channel: SPUBLISH reaches none.
        for node in cluster:
            ready = trio.Event()
            nursery.start_soon(
                lambda e, r: subscribe(
                    parse_url(e), b"*", lambda c, p: heard.append(c), r.set, connect_timeout=5
                ),
                node.url,
                ready,
            )
            await ready.wait()
        sid = await a_session(store)
        async with watching(new(store, sid)) as running:
            assert await new(other, sid).delete()
            assert await running.ended() == "deleted"
        await trio.sleep(0.2)
        assert heard == []
        nursery.cancel_scope.cancel()


async def test_one_shard_subscription_per_watched_session_and_none_after(
    cluster: list[servers.RedisServer],
) -> None:
    async with two_stores(cluster) as (store, other):
        sid = await a_session(store)
        channel = store.watch_channel(sid)
        home = owner(cluster, store.key(sid))
        async with watching(new(store, sid)) as first, watching(new(store, sid)) as second:
            # Two watches of one session share its channel, at the slot's owner.
            assert shard_subscribers(cluster, channel) == {home.port: 1}
            assert await new(other, sid).delete()
            assert await first.ended() == "deleted"
            assert await second.ended() == "deleted"
        with trio.fail_after(2):
            while shard_subscribers(cluster, channel):
                await trio.sleep(0.02)
        # A watch whose body ends first releases the channel too.
        sid = await a_session(store)
        channel = store.watch_channel(sid)
        async with new(store, sid).watch():
            assert shard_subscribers(cluster, channel) == {home_of(cluster, store, sid): 1}
        with trio.fail_after(2):
            while shard_subscribers(cluster, channel):
                await trio.sleep(0.02)
        assert store._watch_hub().channels.subscriber.subscription_count() == 0  # type: ignore[union-attr]


def home_of(nodes: list[servers.RedisServer], store: RedisStore, sid: SessionId) -> int:
    return owner(nodes, store.key(sid)).port


async def test_a_thousand_watchers_use_one_connection_per_master(
    cluster: list[servers.RedisServer],
) -> None:
    count = 1000
    async with two_stores(cluster) as (store, other):
        ids = [await a_session(store) for _ in range(count)]
        ended: dict[SessionId, str | None] = {}

        async def watch(sid: SessionId, *, task_status: trio.TaskStatus[None]) -> None:
            async with new(store, sid).watch() as w:
                task_status.started()
                await trio.sleep_forever()
            ended[sid] = w.reason

        async with trio.open_nursery() as nursery:
            for sid in ids:
                await nursery.start(watch, sid)
            per_node = {n.port: shard_connections(n) for n in cluster}
            assert all(len(c) == 1 for c in per_node.values()), per_node
            channels = sum(int(c[0].split(" ssub=")[1].split()[0]) for c in per_node.values())
            assert channels == count
            async with trio.open_nursery() as deleters:
                for sid in ids:
                    deleters.start_soon(other.delete, sid)
            with trio.fail_after(10):
                while len(ended) < count:
                    await trio.sleep(0.05)
        assert set(ended.values()) == {"deleted"}
        assert sum(shard_subscribers_total(n) for n in cluster) == 0


def shard_subscribers_total(node: servers.RedisServer) -> int:
    return sum(int(c.split(" ssub=")[1].split()[0]) for c in shard_connections(node))


# -- the cluster changes under the watches ---------------------------------------------------


def migrate_slot(
    nodes: list[servers.RedisServer], slot: int, source: servers.RedisServer
) -> servers.RedisServer:
    """Move ``slot`` from ``source`` to another master, keys included, as redis-cli's
    resharding does."""
    target = next(n for n in nodes if n.port != source.port)
    source_id = source.cli("CLUSTER", "MYID").strip()
    target_id = target.cli("CLUSTER", "MYID").strip()
    target.cli("CLUSTER", "SETSLOT", str(slot), "IMPORTING", source_id)
    source.cli("CLUSTER", "SETSLOT", str(slot), "MIGRATING", target_id)
    while keys := source.cli("CLUSTER", "GETKEYSINSLOT", str(slot), "100").split():
        source.cli("MIGRATE", "127.0.0.1", str(target.port), "", "0", "5000", "KEYS", *keys)
    for node in [target, source, *[n for n in nodes if n not in (target, source)]]:
        node.cli("CLUSTER", "SETSLOT", str(slot), "NODE", target_id)
    return target


async def test_a_slot_migration_moves_the_subscription_with_it(
    cluster: list[servers.RedisServer],
) -> None:
    async with two_stores(cluster) as (store, other):
        sid = await a_session(store)
        channel = store.watch_channel(sid)
        source = owner(cluster, store.key(sid))
        async with watching(new(store, sid)) as running:
            assert shard_subscribers(cluster, channel) == {source.port: 1}
            target = migrate_slot(cluster, key_slot(store.key(sid)), source)
            # The old owner dropped the channel; the store subscribes at the new one.
            with trio.fail_after(2):
                while shard_subscribers(cluster, channel) != {target.port: 1}:
                    await trio.sleep(0.02)
            assert not running.done.is_set()  # the session lives: its recheck found it
            assert await new(other, sid).delete()  # the other store follows MOVED
            assert await running.ended(WITHIN) == "deleted"


async def test_a_node_killed_and_restarted_while_watching(
    cluster: list[servers.RedisServer],
) -> None:
    async with two_stores(cluster) as (store, other):
        sid = await a_session(store)
        channel = store.watch_channel(sid)
        node = owner(cluster, store.key(sid))
        async with watching(new(store, sid)) as running:
            node.cli("SAVE")  # the session survives the restart (nothing is on disk else)
            node.stop()
            await trio.sleep(0.3)
            node.start()
            with trio.fail_after(10):
                while shard_subscribers(cluster, channel) != {node.port: 1}:
                    await trio.sleep(0.05)
            await trio.sleep(0.3)  # the recheck after the resubscription found it alive
            assert not running.done.is_set()
            with trio.fail_after(10):  # the cluster takes the node back
                while "cluster_state:ok" not in node.cli("CLUSTER", "INFO"):
                    await trio.sleep(0.1)
            assert await new(other, sid).delete()
            assert await running.ended(WITHIN) == "deleted"


# -- cancellations while subscribing and unsubscribing ---------------------------------------


async def test_random_cancellations_leave_no_subscription_behind(
    cluster: list[servers.RedisServer],
) -> None:
    rng = random.Random(18)
    steps = 3000
    violations: list[str] = []
    async with two_stores(cluster) as (store, _):
        ids = [await a_session(store) for _ in range(20)]

        async def churn(n: int) -> None:
            for _ in range(n):
                sid = rng.choice(ids)
                with trio.move_on_after(rng.choice((0, 0.0005, 0.001, 0.003, 0.01))):
                    async with new(store, sid).watch():
                        await trio.sleep(rng.random() * 0.01)

        async with trio.open_nursery() as nursery:
            for _ in range(30):
                nursery.start_soon(churn, steps // 30)
        subscriber = store._watch_hub().channels.subscriber  # type: ignore[union-attr]
        if subscriber.subscription_count():
            violations.append(f"{subscriber.subscription_count()} channels still wanted")
        if len(store._watch_hub()):
            violations.append(f"{len(store._watch_hub())} watches still registered")
        with trio.move_on_after(3):
            while any(shard_subscribers(cluster, store.watch_channel(s)) for s in ids):
                await trio.sleep(0.05)
        for sid in ids:
            left = shard_subscribers(cluster, store.watch_channel(sid))
            if left:
                violations.append(f"a session's channel still has subscribers: {left}")
        # Still in service: a new watch ends when its session does.
        async with watching(new(store, ids[0])) as running:
            assert await new(store, ids[0]).delete()
            assert await running.ended() == "deleted"
    assert violations == []


# -- redis-py clients subscribe (no polling) -------------------------------------------------


@asynccontextmanager
async def redispy_stores(
    kind: str, single: servers.RedisServer, nodes: list[servers.RedisServer]
) -> AsyncIterator[tuple[RedisStore, RedisStore]]:
    import redis.asyncio
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    pfx = prefix()
    client: object
    if kind == "single":
        client = redis.asyncio.Redis.from_url(single.url)
        other = RedisStore.from_url(single.url, prefix=pfx)
    else:
        client = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", n.port) for n in nodes])
        other = native(nodes, pfx)
    async with RedisStore.from_client(client, prefix=pfx) as store, other:
        yield store, other


@pytest.mark.parametrize("kind", ["single", "cluster"])
async def test_redispy_watches_end_promptly_with_their_reason(
    kind: str, redis70: servers.RedisServer, cluster: list[servers.RedisServer]
) -> None:
    latencies: list[float] = []
    async with redispy_stores(kind, redis70, cluster) as (store, other):
        for i in range(30):
            s = await a_session(store)
            async with watching(new(store, s)) as running:
                start = trio.current_time()
                if i % 3 == 0:
                    assert await new(other, s).delete()
                    expected = "deleted"
                elif i % 3 == 1:
                    assert await new(other, s).regenerate() is not None
                    expected = "renamed"
                else:
                    assert await other._end_session(s, "revoked")
                    expected = "revoked"
                assert await running.ended() == expected
                latencies.append(trio.current_time() - start)
        # The old poll took up to 0.5 s; a subscription takes a round trip or two.
        assert max(latencies) < 0.2, latencies
        # The subscription connection is on the server(s).
        nodes = [redis70] if kind == "single" else cluster
        async with watching(new(store, await a_session(store))):
            flag = " psub=1 " if kind == "single" else " ssub=1 "
            subs = [c for n in nodes for c in n.cli("CLIENT", "LIST").splitlines() if flag in c]
            assert subs


@pytest.mark.parametrize("kind", ["single", "cluster"])
async def test_a_redispy_store_closed_with_watches_open_leaves_no_task(
    kind: str, redis70: servers.RedisServer, cluster: list[servers.RedisServer]
) -> None:
    keys = ("trio_ruts._watch.", "._watch_listen", "_subscriber.", "_sharded.")
    async with redispy_stores(kind, redis70, cluster) as (store, _):
        sid = await a_session(store)
        running = Running()
        async with trio.open_nursery() as nursery:
            await nursery.start(running.run, new(store, sid), 3600)
            with trio.fail_after(5):
                await store.aclose()
            await trio.sleep(0.05)
            assert [n for n in task_names() if any(k in n for k in keys)] == []
            nursery.cancel_scope.cancel()


async def test_a_lost_subscription_connection_makes_its_watches_recheck(
    cluster: list[servers.RedisServer],
) -> None:
    """An end the store could not hear (here a plain DEL, as while the connection was down)
    is found by the recheck that follows the resubscription."""
    async with two_stores(cluster) as (store, _):
        sid = await a_session(store)
        node = owner(cluster, store.key(sid))
        async with watching(new(store, sid)) as running:
            node.cli("DEL", store.key(sid).decode())  # announces nothing
            await trio.sleep(0.2)
            assert not running.done.is_set()
            for line in shard_connections(node):
                node.cli("CLIENT", "KILL", "ID", line.split()[0].removeprefix("id="))
            assert await running.ended(WITHIN) == "deleted"


async def test_a_redispy_client_whose_settings_cannot_be_reproduced_cannot_watch(
    redis70: servers.RedisServer,
) -> None:
    import redis.asyncio

    from trio_ruts import StoreError

    class Custom(redis.asyncio.Connection):
        pass

    pool = redis.asyncio.ConnectionPool(connection_class=Custom, port=redis70.port)
    async with RedisStore.from_client(redis.asyncio.Redis(connection_pool=pool)) as store:
        sid = await a_session(store)  # its other operations work
        with pytest.raises(StoreError, match="connection class Custom"):
            async with new(store, sid).watch():
                pass
        assert await new(store, sid).delete()
