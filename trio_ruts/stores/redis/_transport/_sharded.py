"""Sharded pub/sub on a Redis Cluster: ``SSUBSCRIBE`` to exact channels, one connection per
master node.

A sharded channel lives in the slot of its name (the session key's hash tag), and only the
master that owns the slot delivers its messages; there are no patterns. So the subscriber
holds the channels its watches want and places each one on the connection to its slot's
owner: one ``SSUBSCRIBE`` command per channel, pipelined, however many channels a node has.
A connection runs no other command and is not one of the pools'.

What moves a channel elsewhere, and how it comes back:

* a node's connection is lost (or the node restarted): its channels wait, unacknowledged,
  until the connection is re-established (or the slot map names another owner) and are
  subscribed again;
* a slot migrated: the old owner pushes ``sunsubscribe`` for the slot's channels; a
  ``MOVED`` reply names the new owner (the slot map is reloaded);

and each time, once the channel is acknowledged again, ``on_resubscribed(channel)`` lets its
watches recheck the store (a notification may have been lost meanwhile).
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol

import hiredis
import trio

from ...._errors import StoreError
from ._base import ReplyError
from ._cluster import key_slot
from ._connection import _connect
from ._endpoint import Endpoint
from ._resp import pack
from ._subscriber import (
    LOST,
    MAX_BACKOFF,
    PING_INTERVAL,
    _Refused,
    auth_command,
    log_lost,
    next_delay,
)

_log = logging.getLogger("trio_ruts.redis")

Address = tuple[str, int]

#: Seconds before a channel the server refused for a moment (``ASK``, ``TRYAGAIN``, a
#: cluster still settling) is tried again.
RETRY_DELAY: Final = 0.05


class SlotMap(Protocol):
    """Who owns a slot: the cluster transport's map, shared with the subscriber."""

    def owner(self, slot: int) -> Address | None: ...

    def moved(self, slot: int, address: Address) -> None: ...

    async def refresh(self) -> None: ...


class _Channel:
    """A wanted channel: where it is subscribed and whether the server acknowledged it."""

    __slots__ = ("acked", "lost", "name", "node", "slot")

    def __init__(self, name: bytes) -> None:
        self.name = name
        self.slot = key_slot(name)
        self.node: _Node | None = None  # None: waiting for a place (the slot map)
        self.acked = trio.Event()
        self.lost = False  # it was acknowledged once: its watches recheck on the next ack

    def unacknowledge(self) -> None:
        if self.acked.is_set():
            self.acked = trio.Event()
            self.lost = True


class _Node:
    """The subscription connection to one master and the channels placed on it."""

    def __init__(self, address: Address) -> None:
        self.address = address
        self.channels: set[_Channel] = set()
        self.connected = False
        self.outbox: list[bytes] = []
        # What each reply answers, in the order the commands were written: ("s" | "u",
        # channel) for SSUBSCRIBE and SUNSUBSCRIBE, ("p", None) for PING and AUTH.
        self.sent: deque[tuple[str, _Channel | None]] = deque()
        self.wake = trio.Event()

    def queue(self, kind: str, channel: _Channel | None, command: tuple[Any, ...]) -> None:
        if self.connected:  # otherwise the next connection subscribes what is placed here
            self.sent.append((kind, channel))
            self.outbox.append(pack(command))
            self.wake.set()


class ShardedSubscriber:
    """The channels wanted, each ``SSUBSCRIBE``'d at its slot's owner (see the module).

    Args:
        template: credentials and TLS settings for every node.
        slots: the slot map.
        on_message: ``(channel, payload)`` for each message.
        on_resubscribed: a channel acknowledged again after it was lost.
        connect_timeout: seconds to connect to a node.
    """

    def __init__(
        self,
        template: Endpoint,
        slots: SlotMap,
        on_message: Callable[[bytes, bytes], None],
        on_resubscribed: Callable[[bytes], None],
        *,
        connect_timeout: float,
    ) -> None:
        self._template = template
        self._slots = slots
        self._on_message = on_message
        self._on_resubscribed = on_resubscribed
        self._connect_timeout = connect_timeout
        self._channels: dict[bytes, _Channel] = {}
        self._nodes: dict[Address, _Node] = {}
        self._homeless: set[_Channel] = set()  # wanted, waiting for the slot map
        self._stale = False  # the slot map is to be reloaded before placing them
        self._placer_wake = trio.Event()
        self._nursery: trio.Nursery | None = None

    # -- what watches want (synchronous: decided here, written by the node tasks) -------------

    def want(self, name: bytes) -> None:
        if name in self._channels:
            return
        channel = self._channels[name] = _Channel(name)
        self._place(channel)

    def drop(self, name: bytes) -> None:
        channel = self._channels.pop(name, None)
        if channel is None:
            return
        self._homeless.discard(channel)
        node = channel.node
        if node is not None:
            node.channels.discard(channel)
            node.queue("u", channel, ("SUNSUBSCRIBE", name))
        channel.node = None

    async def subscribed(self, name: bytes) -> None:
        while (channel := self._channels.get(name)) is not None and not channel.acked.is_set():
            await channel.acked.wait()
        await trio.lowlevel.checkpoint()

    def subscription_count(self) -> int:
        """Channels wanted (for tests: every one is released when its last watch stops)."""
        return len(self._channels)

    def connection_count(self) -> int:
        """Node connections open (or opening)."""
        return len(self._nodes)

    # -- placing channels -------------------------------------------------------------------

    def _place(self, channel: _Channel) -> None:
        address = None if self._stale else self._slots.owner(channel.slot)
        if address is None:
            self._homeless.add(channel)
            self._placer_wake.set()
            return
        self._put(channel, address)

    def _put(self, channel: _Channel, address: Address) -> None:
        self._homeless.discard(channel)
        node = self._nodes.get(address)
        if node is None:
            node = self._nodes[address] = _Node(address)
            assert self._nursery is not None
            self._nursery.start_soon(self._run_node, node)
        channel.node = node
        node.channels.add(channel)
        node.queue("s", channel, ("SSUBSCRIBE", channel.name))

    def _evict(self, channel: _Channel, *, stale: bool) -> None:
        """Take ``channel`` off its node to place it again (after the slot map's refresh)."""
        if channel.node is not None:
            channel.node.channels.discard(channel)
            channel.node = None
        channel.unacknowledge()
        self._stale = self._stale or stale
        self._homeless.add(channel)
        self._placer_wake.set()

    async def _placer(self) -> None:
        """Place the channels that wait for the slot map, reloading it first if stale."""
        while True:
            await self._placer_wake.wait()
            self._placer_wake = trio.Event()
            if not self._homeless:
                continue
            if self._stale or any(self._slots.owner(c.slot) is None for c in self._homeless):
                try:
                    await self._slots.refresh()
                    self._stale = False
                except (StoreError, trio.ClosedResourceError) as exc:
                    _log.warning("session notifications: no slot map: %s", exc)
                    await trio.sleep(MAX_BACKOFF)
                    self._placer_wake.set()
                    continue
            for channel in list(self._homeless):
                address = self._slots.owner(channel.slot)
                if address is not None:
                    self._put(channel, address)
            if self._homeless:  # the cluster does not serve their slots (yet)
                await trio.sleep(MAX_BACKOFF)
                self._placer_wake.set()

    # -- running ------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the node connections until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._placer)
            task_status.started()
            await trio.sleep_forever()

    async def _run_node(self, node: _Node) -> None:
        delay = 0.0
        while True:
            try:
                await self._serve(node)
            except LOST as exc:
                log_lost(node.address, exc)
            node.connected = False
            node.outbox.clear()
            node.sent.clear()
            for channel in node.channels:
                channel.unacknowledge()
            if not node.channels:
                break
            await trio.sleep(delay)
            delay = next_delay(delay)
            # The node may be gone for good (a failover): ask the cluster who owns what now.
            with contextlib.suppress(StoreError, trio.ClosedResourceError):
                await self._slots.refresh()
            for channel in list(node.channels):
                if self._slots.owner(channel.slot) not in (None, node.address):
                    self._evict(channel, stale=False)
            if not node.channels:
                break
        del self._nodes[node.address]

    async def _serve(self, node: _Node) -> None:
        endpoint = self._template.moved_to(*node.address)
        with trio.fail_after(self._connect_timeout):
            stream = await _connect(endpoint)
        async with stream, trio.open_nursery() as nursery:
            node.connected = True
            auth = auth_command(endpoint)
            if auth is not None:
                node.queue("p", None, auth)
            for channel in node.channels:
                node.queue("s", channel, ("SSUBSCRIBE", channel.name))
            failed: list[BaseException] = []
            nursery.start_soon(self._guard, self._writer, node, stream, failed, nursery)
            await self._guard(self._reader, node, stream, failed, nursery)
        if failed:
            raise failed[0]

    @staticmethod
    async def _guard(
        part: Callable[[_Node, trio.abc.Stream], Awaitable[None]],
        node: _Node,
        stream: trio.abc.Stream,
        failed: list[BaseException],
        nursery: trio.Nursery,
    ) -> None:
        """Run the reader or the writer; its failure ends both (raised by ``_serve``)."""
        try:
            await part(node, stream)
        except LOST as exc:
            failed.append(exc)
            nursery.cancel_scope.cancel()

    async def _writer(self, node: _Node, stream: trio.abc.Stream) -> None:
        while True:
            if node.outbox:
                data = b"".join(node.outbox)
                node.outbox.clear()
                await stream.send_all(data)
                continue
            node.wake = trio.Event()
            with trio.move_on_after(PING_INTERVAL) as idle:
                await node.wake.wait()
            if idle.cancelled_caught:
                node.queue("p", None, ("PING",))

    async def _reader(self, node: _Node, stream: trio.abc.Stream) -> None:
        reader = hiredis.Reader(replyError=ReplyError)
        while True:
            with trio.move_on_after(2 * PING_INTERVAL) as silent:
                data = await stream.receive_some(65536)
            if silent.cancelled_caught:
                raise trio.TooSlowError("the subscription went silent")
            if not data:
                raise trio.BrokenResourceError("the server closed the connection")
            reader.feed(bytes(data))
            while (reply := reader.gets()) is not False:
                self._dispatch(node, reply)

    def _dispatch(self, node: _Node, reply: Any) -> None:
        if isinstance(reply, list) and reply:
            kind = reply[0]
            if kind == b"smessage" and len(reply) == 3:
                self._on_message(reply[1], reply[2])
            elif kind == b"ssubscribe":
                self._acknowledged(node, _answered(node)[1])
            elif kind == b"sunsubscribe":
                if node.sent and node.sent[0] == ("u", self._sent_channel(node, reply[1])):
                    node.sent.popleft()  # the reply to our SUNSUBSCRIBE
                else:
                    self._slot_left(node, reply[1])
            elif kind == b"pong":
                _answered(node)
            return
        kind, channel = _answered(node)
        if isinstance(reply, ReplyError):
            if kind == "p":
                raise _Refused(str(reply))  # the server's words: never the password
            if kind == "s" and channel is not None:
                self._refused(node, channel, str(reply))
        # +OK (AUTH), +PONG (a connection with no channel left), or a refused SUNSUBSCRIBE.

    @staticmethod
    def _sent_channel(node: _Node, name: bytes) -> _Channel | None:
        head = node.sent[0][1]
        return head if head is not None and head.name == name else None

    def _acknowledged(self, node: _Node, channel: _Channel | None) -> None:
        if channel is None or self._channels.get(channel.name) is not channel:
            return  # dropped meanwhile: its SUNSUBSCRIBE follows
        if channel.node is not node:
            return  # moved meanwhile
        channel.acked.set()
        if channel.lost:
            channel.lost = False
            self._on_resubscribed(channel.name)

    def _slot_left(self, node: _Node, name: bytes) -> None:
        """The server unsubscribed us: the channel's slot now belongs to another node."""
        channel = self._channels.get(name)
        if channel is not None and channel.node is node:
            self._evict(channel, stale=True)

    def _refused(self, node: _Node, channel: _Channel, message: str) -> None:
        if self._channels.get(channel.name) is not channel or channel.node is not node:
            return
        kind, _, rest = message.partition(" ")
        node.channels.discard(channel)
        channel.node = None
        if kind == "MOVED":
            target = rest.split(" ")[-1]
            host, _, port = target.rpartition(":")
            self._slots.moved(channel.slot, (host, int(port)))
            self._stale = True  # a resharding moves many slots: reload the map
            self._put(channel, (host, int(port)))
            return
        if kind not in ("ASK", "TRYAGAIN", "CLUSTERDOWN"):
            _log.warning(
                "session notifications: %s refused a subscription: %s", node.address, message
            )
        self._homeless.add(channel)
        assert self._nursery is not None
        self._nursery.start_soon(self._retry_later)

    async def _retry_later(self) -> None:
        await trio.sleep(RETRY_DELAY)
        self._stale = True
        self._placer_wake.set()


def _answered(node: _Node) -> tuple[str, _Channel | None]:
    """The command the reply at hand answers."""
    if not node.sent:  # the connection's state is not what we think: start afresh
        raise hiredis.ProtocolError("a reply to no command")
    return node.sent.popleft()
