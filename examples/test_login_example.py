"""How to test a Quart-trio app that uses trio-ruts (docs/testing.md): pytest-trio, a fresh
app and store per test, Quart's test client and its websocket client.

Run it with ``pytest examples/test_login_example.py`` (needs ``pytest`` and ``pytest-trio``).
In your own project, set ``trio_mode = true`` under ``[tool.pytest.ini_options]``, or keep
the ``pytestmark`` line below.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from login import create_app
from quart_trio import QuartTrio
from quart_trio.testing import TrioClient

from trio_ruts import MemoryStore, SessionId

pytestmark = pytest.mark.trio


@pytest.fixture
async def app() -> AsyncIterator[QuartTrio]:
    # A store per test: no session leaks from one test into the next. `test_app()` runs the
    # app's startup, which opens the store, and its shutdown, which closes it; without it,
    # requests that use the session fail with StoreNotOpen.
    app = create_app(MemoryStore())
    async with app.test_app():
        yield app


@pytest.fixture
def client(app: QuartTrio) -> TrioClient:
    return app.test_client()  # type: ignore[return-value]  # keeps cookies, like a browser


async def log_in(client: TrioClient, user: str = "alice", password: str = "wonderland") -> int:
    response = await client.post("/login", form={"user": user, "password": password})
    return response.status_code


async def test_login_sets_a_cookie_and_shows_the_flash_once(client: TrioClient) -> None:
    response = await client.post("/login", form={"user": "alice", "password": "wonderland"})
    assert response.status_code == 200
    set_cookie = response.headers["Set-Cookie"]
    assert set_cookie.startswith("sid=")
    assert "HttpOnly" in set_cookie
    me = await client.get("/me")
    assert await me.get_json() == {"user": "alice", "flash": "welcome, alice"}
    again = await client.get("/me")
    assert await again.get_json() == {"user": "alice", "flash": None}


async def test_wrong_password_creates_no_session(client: TrioClient) -> None:
    assert await log_in(client, password="nope") == 401
    response = await client.get("/me")
    assert await response.get_json() == {"user": None, "flash": None}
    assert "Set-Cookie" not in response.headers


async def test_a_planted_id_is_not_adopted() -> None:
    # Without the cookie jar, the test decides which cookie each request carries.
    app = create_app(MemoryStore())
    async with app.test_app():
        client = app.test_client(use_cookies=False)
        planted = str(SessionId.generate())
        response = await client.post(
            "/login",
            form={"user": "alice", "password": "wonderland"},
            headers={"Cookie": f"sid={planted}"},
        )
        assert planted not in response.headers["Set-Cookie"]


async def test_logout_clears_the_cookie(client: TrioClient) -> None:
    assert await log_in(client) == 200
    response = await client.post("/logout")
    assert await response.get_json() == {"logged_out": True}
    assert response.headers["Set-Cookie"].startswith("sid=; Max-Age=0;")
    me = await client.get("/me")
    assert await me.get_json() == {"user": None, "flash": None}


async def test_the_websocket_sees_the_login(client: TrioClient) -> None:
    async with client.websocket("/whoami") as ws:
        assert await ws.receive() == "you are nobody"
    assert await log_in(client) == 200
    async with client.websocket("/whoami") as ws:  # the cookie jar's cookie goes along
        assert await ws.receive() == "you are alice"
