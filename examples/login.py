"""Login and logout: the id is regenerated at login, so a planted id is worthless.

``prepare_regenerate()`` + ``update()`` writes the user and moves the session to a fresh id
in one atomic store call; a flash message is shown exactly once with ``pop()``; logout
deletes the session and clears the cookie. ``create_app(store)`` builds the app on a given
store (tests give each test its own: see ``test_login_example.py`` and docs/testing.md).
"""

from __future__ import annotations

import hmac

from quart import abort, request, websocket
from quart_trio import QuartTrio

from trio_ruts import CookieOptions, MemoryStore
from trio_ruts.quart import Sessions, session
from trio_ruts.stores import SessionStore

USERS = {"alice": "wonderland", "bob": "builder"}  # demo credentials


async def login() -> dict[str, str]:
    form = await request.form
    user, password = form.get("user", ""), form.get("password", "")
    expected = USERS.get(user)
    if expected is None or not hmac.compare_digest(expected, password):
        abort(401)
    session.prepare_regenerate()  # new id at the privilege change...
    await session.update("user", user)  # ...written and renamed atomically
    await session.update("flash", f"welcome, {user}", ttl=60)  # expires on its own
    return {"user": user}


async def me() -> dict[str, str | None]:
    # pop() reads and removes in one store step: the flash is shown once, even to
    # concurrent requests.
    return {"user": await session.get("user"), "flash": await session.pop("flash")}


async def logout() -> dict[str, bool]:
    return {"logged_out": await session.delete()}


async def whoami() -> None:
    user = await session.get("user")  # the session of the handshake's cookie
    await websocket.accept()
    await websocket.send(f"you are {user or 'nobody'}")


def create_app(store: SessionStore | None = None) -> QuartTrio:
    """The app, its sessions kept in ``store`` (default: a new ``MemoryStore``)."""
    app = QuartTrio("login")
    cookie = CookieOptions(name="sid", max_age=1800, secure=False)
    Sessions(app, MemoryStore() if store is None else store, cookie=cookie)
    app.post("/login")(login)
    app.get("/me")(me)
    app.post("/logout")(logout)
    app.websocket("/whoami")(whoami)
    return app


app = create_app()


if __name__ == "__main__":
    from _serve import run

    run(app, "trio-ruts login/logout example")
