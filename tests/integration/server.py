"""Run apps under a real Hypercorn (trio worker) on a loopback port."""

from __future__ import annotations

import http.cookiejar
import queue
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart_trio import QuartTrio


def no_cookie_jar() -> http.cookiejar.CookieJar:
    """A jar that keeps nothing, so a client sends only the Cookie header a test gives it."""
    return http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))


def _config() -> Config:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    return config


@asynccontextmanager
async def served(app: QuartTrio) -> AsyncIterator[str]:
    """Serve ``app`` in this trio run; yields its base URL; shuts down gracefully on exit."""
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(serve, app, _config(), shutdown_trigger=stop.wait))
        try:
            yield binds[0]
        finally:
            stop.set()


@contextmanager
def served_in_thread(app: QuartTrio) -> Iterator[str]:
    """Serve ``app`` from a trio run in a thread, for synchronous (e.g. Hypothesis) tests."""
    handoff: queue.Queue[Any] = queue.Queue()

    async def main() -> None:
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(partial(serve, app, _config(), shutdown_trigger=stop.wait))
            handoff.put((binds[0], trio.lowlevel.current_trio_token(), stop))

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # report start-up failures to the waiting test
            handoff.put(exc)

    thread = threading.Thread(target=run, name="hypercorn", daemon=True)
    thread.start()
    got = handoff.get(timeout=60)
    if isinstance(got, BaseException):
        raise RuntimeError("the test server did not start") from got
    url, token, stop = got
    try:
        yield url
    finally:
        trio.from_thread.run_sync(stop.set, trio_token=token)
        thread.join(60)
