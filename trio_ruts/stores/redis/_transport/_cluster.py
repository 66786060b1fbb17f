"""Redis Cluster routing: slot map from ``CLUSTER SLOTS``, ``MOVED`` and ``ASK`` handling."""

from __future__ import annotations

import binascii
from collections.abc import Sequence
from typing import Any, Final

import trio

from ...._errors import StoreError
from ._base import Arg, ReplyError
from ._endpoint import Endpoint
from ._pool import Options, Pool
from ._resp import pack

SLOTS: Final = 16384
_MAX_REDIRECTS: Final = 5


def key_slot(key: bytes) -> int:
    """The cluster slot of ``key``: CRC16 (XMODEM, as Redis uses) of its hash tag."""
    start = key.find(b"{")
    if start != -1:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return binascii.crc_hqx(key, 0) % SLOTS


class Cluster:
    """A :class:`~trio_ruts.stores.redis._transport.Transport` to a Redis Cluster.

    Commands go to the master owning their key's slot, each node through a :class:`Pool` of
    its own. ``MOVED`` updates the slot map (and schedules a full refresh), ``ASK`` sends
    ``ASKING`` and the command once to the named node. Call :meth:`refresh` once before use.
    """

    def __init__(self, seeds: Sequence[Endpoint], options: Options, nursery: trio.Nursery) -> None:
        if not seeds:
            raise ValueError("a cluster needs at least one seed node")
        self._seeds = list(seeds)
        self._template = seeds[0]
        self._options = options
        self._nursery = nursery
        self._pools: dict[tuple[str, int], Pool] = {}
        self._slots: list[tuple[str, int] | None] = [None] * SLOTS
        self._refresh_lock = trio.Lock()
        self._stale = False

    def __str__(self) -> str:
        return f"redis cluster via {self._template}"

    def _pool(self, address: tuple[str, int]) -> Pool:
        pool = self._pools.get(address)
        if pool is None:
            endpoint = self._template.moved_to(*address)
            pool = self._pools[address] = Pool(endpoint, self._options, self._nursery)
        return pool

    async def refresh(self) -> None:
        """Reload the slot map from the first seed or known node that answers.

        Raises:
            StoreError: no node answered.
        """
        async with self._refresh_lock:
            errors: list[str] = []
            known = [(e.host, e.port) for e in self._seeds] + list(self._pools)
            for address in dict.fromkeys(known):
                try:
                    reply = await self._pool(address).request(
                        pack(("CLUSTER", "SLOTS")), idempotent=True
                    )
                except StoreError as exc:
                    errors.append(str(exc))
                    continue
                if isinstance(reply, ReplyError):
                    errors.append(f"{address[0]}:{address[1]}: {reply}")
                    continue
                self._apply_slots(reply, default_host=address[0])
                self._stale = False
                return
            raise StoreError("no Redis Cluster node answered CLUSTER SLOTS: " + "; ".join(errors))

    def _apply_slots(self, reply: list[Any], default_host: str) -> None:
        slots: list[tuple[str, int] | None] = [None] * SLOTS
        for entry in reply:
            start, end, master = entry[0], entry[1], entry[2]
            host = master[0].decode() if master[0] else default_host
            for slot in range(start, end + 1):
                slots[slot] = (host, int(master[1]))
        self._slots = slots

    def owner(self, slot: int) -> tuple[str, int] | None:
        """The master that serves ``slot``, as last seen (``None``: unknown)."""
        return self._slots[slot]

    def moved(self, slot: int, address: tuple[str, int]) -> None:
        """A ``MOVED`` seen elsewhere (the subscriber's): record it, reload the map soon."""
        self._slots[slot] = address
        self._stale = True

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()

    async def execute(self, key: bytes | None, args: Sequence[Arg], *, idempotent: bool) -> Any:
        await trio.lowlevel.checkpoint_if_cancelled()  # before a refresh, too
        if self._stale:
            await self.refresh()
        slot = key_slot(key) if key is not None else 0
        address = self._slots[slot]
        if address is None:
            await self.refresh()
            address = self._slots[slot]
            if address is None:
                raise StoreError(f"{self}: no node serves slot {slot} (is the cluster complete?)")
        packed = pack(args)
        for _ in range(_MAX_REDIRECTS):
            reply = await self._pool(address).request(packed, idempotent=idempotent)
            if not isinstance(reply, ReplyError):
                return reply
            kind, _, rest = str(reply).partition(" ")
            if kind == "MOVED":
                address = _address(rest)
                self._slots[slot] = address
                self._stale = True  # a resharding moves many slots: reload the map soon
            elif kind == "ASK":
                asking = pack(("ASKING",)) + packed
                replies = await self._pool(_address(rest)).request(asking, 2, idempotent=idempotent)
                return replies[1]
            elif kind in ("TRYAGAIN", "CLUSTERDOWN"):
                await trio.sleep(0.05)
            else:
                return reply
        raise StoreError(f"{self}: too many redirections for one command")


def _address(text: str) -> tuple[str, int]:
    """``"3999 127.0.0.1:6381"`` -> ``("127.0.0.1", 6381)``."""
    target = text.split(" ")[-1]
    host, _, port = target.rpartition(":")
    return host, int(port)
