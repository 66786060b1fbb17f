"""Shared fixtures. Stores plug into the contract suite by adding a ``StoreKit`` to ``KITS``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from trio_ruts.stores import MemoryStore, SessionStore


@dataclass(frozen=True)
class StoreKit:
    """How to make one kind of store for the contract suite.

    Attributes:
        id: test id.
        factory: returns a new, unopened store; it gets the pytest ``request`` so it can ask
            for server fixtures.
        mock_clock: the store's clock is trio's, so tests may run on an autojump clock.
    """

    id: str
    factory: Callable[[pytest.FixtureRequest], SessionStore]
    mock_clock: bool = False
    marks: tuple[Any, ...] = field(default=())


KITS: list[StoreKit] = [
    StoreKit("memory", lambda request: MemoryStore(), mock_clock=True),
]


@pytest.fixture(params=[pytest.param(k, id=k.id, marks=k.marks) for k in KITS])
def kit(request: pytest.FixtureRequest) -> StoreKit:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def clock(kit: StoreKit) -> MockClock | None:
    """Tests of the contract suite take this so trio-clocked stores run on an autojump clock."""
    return MockClock(autojump_threshold=0) if kit.mock_clock else None


@pytest.fixture
async def store(kit: StoreKit, request: pytest.FixtureRequest) -> AsyncIterator[SessionStore]:
    async with kit.factory(request) as opened:
        yield opened


async def pass_time(seconds: float) -> None:
    """Let ``seconds`` pass on the store's clock, with a margin for real servers' clocks."""
    await trio.sleep(seconds + 0.3)
