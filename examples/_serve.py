"""Serve a Quart-trio app with Hypercorn's trio worker and say where it listens."""

from __future__ import annotations

import argparse
import os
import signal
from functools import partial

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart_trio import QuartTrio


async def _serve(app: QuartTrio, host: str, port: int) -> None:
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    # Catch the signals before saying where we listen: one sent right after is not missed
    # (it would otherwise raise KeyboardInterrupt, or end the process silently on SIGTERM).
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:

        async def until_signalled() -> None:
            async for signum in signals:
                print(f"{signal.Signals(signum).name}: shutting down", flush=True)
                return

        async with trio.open_nursery() as nursery:
            # A graceful shutdown (Ctrl-C or SIGTERM) lets the app close its session store.
            binds = await nursery.start(
                partial(serve, app, config, shutdown_trigger=until_signalled)
            )
            for url in binds:
                print(f"{app.name} listening on {url}/ (Ctrl-C stops it)", flush=True)
    print("stopped", flush=True)


def run(app: QuartTrio, description: str) -> None:
    """Parse ``--host``/``--port`` (defaults: 127.0.0.1, $PORT or 8000) and serve ``app``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    args = parser.parse_args()
    trio.run(_serve, app, args.host, args.port)
