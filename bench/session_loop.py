"""The per-request session work of the HTTP memory app, in a loop without a web server.

One iteration is what a request of the counter app does with its session: the session from
the ``Cookie`` header, a read, a write, the ``Set-Cookie`` value. It is timed for trio-ruts on
a ``MemoryStore``, for the hand-written ``minimal`` layer (``bench/_minimal.py``), and for two
bare checkpoints (what both do besides their own work), and trio-ruts is also timed step by
step (each step's time includes the steps before it). Best of several repeats, side by side.

Usage: python bench/session_loop.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._minimal import count_visit, set_cookie
from trio_ruts import CookieOptions, MemoryStore, Session

OPTIONS = CookieOptions(name="session", max_age=3600, secure=False)


async def measure(quick: bool) -> dict[str, float]:
    calls, repeats = (5_000, 3) if quick else (30_000, 5)
    async with MemoryStore() as store:
        first = Session(store, cookie=OPTIONS)
        await first.update("count", 1)
        ours_cookie = (first.cookie_header() or "").split(";")[0]
        minimal_cookie = "session=" + (await count_visit(""))[1]

        async def checkpoints() -> None:
            await trio.lowlevel.checkpoint()
            await trio.lowlevel.checkpoint()

        async def created() -> None:
            Session.from_cookie_header(store, ours_cookie, cookie=OPTIONS)

        async def read() -> None:
            session = Session.from_cookie_header(store, ours_cookie, cookie=OPTIONS)
            await session.get("count", 0)

        async def written() -> None:
            session = Session.from_cookie_header(store, ours_cookie, cookie=OPTIONS)
            count = await session.get("count", 0) + 1
            await session.update("count", count)

        async def trio_ruts() -> None:
            session = Session.from_cookie_header(store, ours_cookie, cookie=OPTIONS)
            count = await session.get("count", 0) + 1
            await session.update("count", count)
            assert session.cookie_header() is not None

        async def by_hand() -> None:
            _, sid = await count_visit(minimal_cookie)
            assert set_cookie(sid)

        cases: dict[str, Callable[[], Awaitable[None]]] = {
            "two checkpoints": checkpoints,
            "minimal": by_hand,
            "trio-ruts": trio_ruts,
            "  from the cookie": created,
            "  + read": read,
            "  + write": written,
        }
        best = {name: float("inf") for name in cases}
        for _ in range(repeats):  # interleaved, so that drift falls on all cases alike
            for name, case in cases.items():
                start = time.perf_counter()
                for _ in range(calls):
                    await case()
                best[name] = min(best[name], (time.perf_counter() - start) / calls * 1e6)
        return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    best = trio.run(measure, args.quick)
    print("\nSession work per request, in a loop (best of repeats, us per iteration)")
    for name, us in best.items():
        print(f"  {name:20} {us:7.2f} us")
    base = best["two checkpoints"]
    own = best["trio-ruts"] - base
    print(
        f"  beyond the checkpoints: minimal {best['minimal'] - base:.2f} us, "
        f"trio-ruts {own:.2f} us; trio-ruts / minimal {best['trio-ruts'] / best['minimal']:.2f}x"
    )


if __name__ == "__main__":
    main()
