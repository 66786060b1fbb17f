"""The live-revocation app of tests/integration/test_watch_websockets.py; run as a separate
app process with ``python -m tests.integration.watch_app REDIS_URL PREFIX`` (prints its URL)."""

from __future__ import annotations

import sys
from functools import partial

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import websocket
from quart_trio import QuartTrio

from trio_ruts import CookieOptions, Expiry
from trio_ruts.quart import Sessions, session
from trio_ruts.stores import RedisStore, SessionStore

COOKIE = CookieOptions(name="sid", secure=False, max_age=600)


def make_watch_app(
    store: SessionStore, *, expiry: Expiry | None = None, watch_websockets: bool = True
) -> QuartTrio:
    app = QuartTrio(__name__)
    Sessions(app, store, cookie=COOKIE, expiry=expiry, watch_websockets=watch_websockets)

    @app.get("/login")
    async def login() -> str:
        session.prepare_regenerate()
        await session.update("user", "ada")
        return "logged in"

    @app.get("/logout")
    async def logout() -> str:
        return str(await session.delete())

    @app.get("/revoke")
    async def revoke() -> str:
        # Stands in for revoke_others() (the users index): the store's delete with its reason.
        sid = session.id
        assert sid is not None
        return str(await session.store._end_session(sid, "revoked"))

    @app.get("/expire/<int:seconds>")
    async def expire(seconds: int) -> str:
        return str(await session.expire(seconds))

    @app.get("/alive")
    async def alive() -> str:
        return str(session.id is not None and await session.store.get_all(session.id) is not None)

    @app.websocket("/feed")
    async def feed() -> None:
        await websocket.accept()
        while True:
            message = await websocket.receive()
            await websocket.send(f"echo:{message!s}")

    return app


async def main(url: str, prefix: str) -> None:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    app = make_watch_app(RedisStore.from_url(url, prefix=prefix))
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(serve, app, config))
        print(binds[0], flush=True)


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2])
