"""Login and logout, and a "your devices" page: the id is regenerated at login, so a planted
id is worthless, and a user sees where they are logged in and can log out other devices.

``session.login(user)`` moves the session to a fresh id and records it under the user in the
store's per-user index, in one atomic store step; the Quart extension labels it with the
browser's User-Agent. A flash message is shown exactly once with ``pop()``; logout ends the
session, leaves the index clean and clears the cookie. ``/devices`` lists the user's live
sessions; its button ends every other one ("log out other devices"). ``create_app(store)``
builds the app on a given store (tests give each test its own: see ``test_login_example.py``
and docs/testing.md).
"""

from __future__ import annotations

import hmac
from html import escape

from quart import abort, redirect, request, websocket
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
    await session.login(user)  # new id at the privilege change, recorded under the user
    await session.update("flash", f"welcome, {user}", ttl=60)  # expires on its own
    return {"user": user}


async def me() -> dict[str, str | None]:
    # pop() reads and removes in one store step: the flash is shown once, even to
    # concurrent requests.
    return {"user": await session.user(), "flash": await session.pop("flash")}


async def devices() -> str:
    user = await session.user()
    if user is None:
        abort(401)
    rows = []
    for device in await session.user_sessions():
        label = escape(device.label or "unknown device")  # a User-Agent is client input
        mark = " (this device)" if device.current else ""
        seen = device.last_seen.strftime("%Y-%m-%d %H:%M UTC")
        rows.append(f"<li>{label}{mark}, last seen {seen}</li>")
    return (
        f"<h1>Your devices, {escape(user)}</h1><ul>{''.join(rows)}</ul>"
        '<form method="post" action="/devices/logout-others">'
        "<button>Log out other devices</button></form>"
    )


async def logout_others() -> object:
    if await session.user() is None:
        abort(401)
    await session.revoke_others()
    return redirect("/devices", 303)


async def logout() -> dict[str, bool]:
    return {"logged_out": await session.logout()}


async def whoami() -> None:
    user = await session.user()  # the session of the handshake's cookie
    await websocket.accept()
    await websocket.send(f"you are {user or 'nobody'}")


def create_app(store: SessionStore | None = None) -> QuartTrio:
    """The app, its sessions kept in ``store`` (default: a new ``MemoryStore``)."""
    app = QuartTrio("login")
    cookie = CookieOptions(name="sid", max_age=1800, secure=False)
    Sessions(app, MemoryStore() if store is None else store, cookie=cookie)
    app.post("/login")(login)
    app.get("/me")(me)
    app.get("/devices")(devices)
    app.post("/devices/logout-others")(logout_others)
    app.post("/logout")(logout)
    app.websocket("/whoami")(whoami)
    return app


app = create_app()


if __name__ == "__main__":
    from _serve import run

    run(app, "trio-ruts login/logout example")
