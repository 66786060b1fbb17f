"""A browser page and a websocket route that reads the logged-in user from the session.

Open the printed address, log in with the form (alice / wonderland), then the page's websocket
greets you by name; messages are echoed back with your name. "log out" deletes the session and
clears its cookie.

The cookie is HttpOnly and SameSite=Lax. It is not Secure, only so that this demo works over
plain http from any address (``--host 0.0.0.0``, opened from another machine): browsers drop
Secure cookies sent over http, except that they treat loopback (127.0.0.1, localhost) as a
secure origin, where Chromium keeps and sends them. Behind HTTPS, keep the default
``secure=True``.
"""

from __future__ import annotations

from quart import request, websocket
from quart_trio import QuartTrio

from trio_ruts import CookieOptions, MemoryStore
from trio_ruts.quart import Sessions, session

USERS = {"alice": "wonderland", "bob": "builder"}

app = QuartTrio("websocket-chat")
Sessions(app, MemoryStore(), cookie=CookieOptions(name="sid", max_age=1800, secure=False))

PAGE = """<!doctype html>
<title>trio-ruts websocket demo</title>
<form method="post" action="/login">
  <input name="user" placeholder="user"> <input name="password" type="password">
  <button id="login">log in</button>
</form>
<form method="post" action="/logout"><button id="logout">log out</button></form>
<p id="status">connecting...</p>
<input id="msg">
<button id="send" onclick="ws.send(document.getElementById('msg').value)">send</button>
<ul id="log"></ul>
<script>
const ws = new WebSocket(`ws://${location.host}/ws`);
ws.onmessage = (e) => {
  const li = document.createElement("li"); li.textContent = e.data;
  document.getElementById("log").appendChild(li);
  document.getElementById("status").textContent = "connected";
};
</script>
"""


@app.get("/")
async def index() -> str:
    return PAGE


@app.post("/login")
async def login() -> tuple[str, int, dict[str, str]]:
    form = await request.form
    user = form.get("user", "")
    if USERS.get(user) != form.get("password"):
        return "bad credentials", 401, {}
    session.prepare_regenerate()
    await session.update("user", user)
    return "", 303, {"Location": "/"}


LOGGED_OUT = """<!doctype html>
<title>trio-ruts websocket demo</title>
<p id="status">logged out</p>
<p><a href="/">back to the chat</a></p>
"""


@app.post("/logout")
async def logout() -> tuple[str, int, dict[str, str]]:
    # Deleting the session clears its cookie (Max-Age=0) in this response. The chat page would
    # open its websocket at once and start an anonymous session, so say goodbye elsewhere.
    await session.delete()
    return "", 303, {"Location": "/logged-out"}


@app.get("/logged-out")
async def logged_out() -> str:
    return LOGGED_OUT


@app.websocket("/ws")
async def chat() -> None:
    user = await session.get("user")
    if user is None:
        # Before accept the session may still change: remember the visitor under a new id,
        # whose cookie goes out with the handshake response.
        visits = await session.get("anonymous_visits", 0) + 1
        await session.update("anonymous_visits", visits)
    await websocket.accept()
    await websocket.send(f"hello, {user or 'anonymous visitor'}")
    while True:
        message = await websocket.receive()
        await websocket.send(f"{user or 'anonymous'}: {message}")


if __name__ == "__main__":
    from _serve import run

    run(app, "trio-ruts websocket example")
