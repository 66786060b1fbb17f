"""A plain trio-websocket server (no web framework) with sessions.

Each connection counts its visits in the session; a new visitor gets its cookie with the
handshake response. Try: ``python examples/trio_websocket_server.py --port 8001``; Ctrl-C or
SIGTERM stops it cleanly (open connections are closed, the store is closed, exit status 0).
"""

from __future__ import annotations

import argparse
import signal

import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

from trio_ruts import CookieOptions, MemoryStore
from trio_ruts.stores import SessionStore
from trio_ruts.websocket import accept, session_for

COOKIE = CookieOptions(name="sid", max_age=3600, secure=False)


async def handler(store: SessionStore, request: WebSocketRequest) -> None:
    session = session_for(request, store, cookie=COOKIE)
    visits = await session.incr("visits")  # before accept: the cookie rides the handshake
    ws = await accept(request, session)
    await ws.send_message(f"visit {visits}")
    try:
        while True:
            message = await ws.get_message()
            await ws.send_message(f"echo: {message}")
    except ConnectionClosed:
        pass


async def main(host: str, port: int) -> None:
    # Catch the signals before saying where we listen: one sent right after is not missed.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with MemoryStore() as store, trio.open_nursery() as nursery:
            server = await nursery.start(
                serve_websocket, lambda r: handler(store, r), host, port, None
            )
            print(
                f"trio-websocket server listening on ws://{host}:{server.port}/ (Ctrl-C stops it)",
                flush=True,
            )
            async for signum in signals:
                print(f"{signal.Signals(signum).name}: shutting down", flush=True)
                break
            nursery.cancel_scope.cancel()  # the server and its connections
    print("stopped", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    trio.run(main, args.host, args.port)
