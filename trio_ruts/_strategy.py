"""Per-call write strategies for layered stores, passed as the value of insert/update."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._store import Placement


class _Strategy:
    """The base of the strategies: lets :func:`unwrap` tell plain values with one check."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class WriteThrough(_Strategy):
    """Write to both layers; the hot copy lives at most ``hot_ttl`` seconds (never longer than
    the cold one). This is what a plain value means."""

    value: Any
    hot_ttl: int | None = None

    def __post_init__(self) -> None:
        if self.hot_ttl is not None and (type(self.hot_ttl) is not int or self.hot_ttl <= 0):
            raise ValueError("hot_ttl must be a positive number of seconds or None")


@dataclass(frozen=True, slots=True)
class HotOnly(_Strategy):
    """Write to the hot layer only (e.g. short-lived data that need not survive the cache)."""

    value: Any


@dataclass(frozen=True, slots=True)
class ColdOnly(_Strategy):
    """Write to the cold layer only, drop any hot copy, and never warm this field into hot."""

    value: Any


def unwrap(value: Any) -> tuple[Any, Placement, int | None]:
    """Split a possibly wrapped value into (value, placement, hot_ttl policy)."""
    if not isinstance(value, _Strategy):
        return value, Placement.BOTH, None
    if isinstance(value, WriteThrough):
        return value.value, Placement.BOTH, value.hot_ttl
    if isinstance(value, HotOnly):
        return value.value, Placement.HOT, None
    assert isinstance(value, ColdOnly)
    return value.value, Placement.COLD, 0
