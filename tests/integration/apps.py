"""Apps shared by the integration tests, on a real MemoryStore that counts its calls."""

from __future__ import annotations

from collections import Counter

from quart import websocket
from quart_trio import QuartTrio

from trio_ruts import CookieOptions, Expiry, MemoryStore, SessionId, SessionStateError
from trio_ruts.quart import Sessions, session
from trio_ruts.stores import Read, Removal, SessionRecord, Touch, Write, WriteResult


class CountingStore(MemoryStore):
    """A real MemoryStore that counts the calls it receives (to prove "no store round trip")."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    async def get(self, id: SessionId, field: str) -> bytes | None:
        self.calls["get"] += 1
        return await super().get(id, field)

    async def get_all(self, id: SessionId) -> SessionRecord | None:
        self.calls["get_all"] += 1
        return await super().get_all(id)

    async def touch_get(self, id: SessionId, field: str, touch: Touch) -> Read:
        self.calls["get"] += 1
        return await super().touch_get(id, field, touch)

    async def touch_get_all(self, id: SessionId, touch: Touch) -> SessionRecord | None:
        self.calls["get_all"] += 1
        return await super().touch_get_all(id, touch)

    async def touch(self, id: SessionId, touch: Touch) -> int | None:
        self.calls["touch"] += 1
        return await super().touch(id, touch)

    async def expire_capped(self, id: SessionId, seconds: int, absolute: int) -> int | None:
        self.calls["expire"] += 1
        return await super().expire_capped(id, seconds, absolute)

    async def write(self, write: Write) -> WriteResult:
        self.calls["write"] += 1
        return await super().write(write)

    async def remove(self, id: SessionId, field: str) -> Removal:
        self.calls["remove"] += 1
        return await super().remove(id, field)

    async def delete(self, id: SessionId) -> bool:
        self.calls["delete"] += 1
        return await super().delete(id)

    async def expire(self, id: SessionId, seconds: int) -> bool:
        self.calls["expire"] += 1
        return await super().expire(id, seconds)

    async def rename(self, old: SessionId, new: SessionId) -> int | None:
        self.calls["rename"] += 1
        return await super().rename(old, new)


def make_app(
    cookie: CookieOptions, store: MemoryStore | None = None, expiry: Expiry | None = None
) -> QuartTrio:
    app = QuartTrio("trio-ruts-tests")
    app.config["PROPAGATE_EXCEPTIONS"] = False
    Sessions(app, store if store is not None else CountingStore(), cookie=cookie, expiry=expiry)

    @app.get("/count")
    async def count() -> str:
        n = await session.get("count", 0) + 1
        await session.update("count", n)
        return str(n)

    @app.get("/peek")
    async def peek() -> str:
        return str(await session.get("count"))

    @app.get("/untouched")
    async def untouched() -> str:
        return "no session here"

    @app.get("/remove-missing")
    async def remove_missing() -> str:
        return str(await session.remove("never-set"))

    @app.get("/logout")
    async def logout() -> str:
        return str(await session.delete())

    @app.get("/login")
    async def login() -> str:
        session.prepare_regenerate()
        await session.update("user", "alice")
        return str(session.id is not None)

    @app.get("/expire/<int:seconds>")
    async def expire(seconds: int) -> str:
        return str(await session.expire(seconds))

    @app.get("/boom")
    async def boom() -> str:
        await session.update("half", "done")
        raise RuntimeError("handler failed")

    @app.get("/teapot")
    async def teapot() -> tuple[str, int]:
        await session.update("tea", True)
        return "short and stout", 418

    @app.websocket("/ws")
    async def ws() -> None:
        # Report the user, then change the id before accepting if asked to.
        user = await session.get("user")
        if websocket.args.get("login"):
            session.prepare_regenerate()
            await session.update("user", websocket.args["login"])
        await websocket.accept()
        await websocket.send(f"user={user}")
        try:
            await session.regenerate()
        except SessionStateError as exc:
            await websocket.send(f"refused: {exc}")
        await session.update("seen", True)  # the existing session is still writable
        await websocket.send(f"seen={await session.get('seen')}")

    @app.websocket("/ws-implicit")
    async def ws_implicit() -> None:
        await session.update("visits", await session.get("visits", 0) + 1)
        await websocket.send("implicitly accepted")  # send() accepts with the cookie

    return app
