"""The examples work: the main-job demo as a real process, the others in-process."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from tests.integration.server import no_cookie_jar, served

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))

import counter  # noqa: E402
import login  # noqa: E402
import websocket_chat  # noqa: E402


def test_counter_demo_process() -> None:
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "counter.py"), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        url = None
        for line in proc.stdout:
            match = re.search(r"listening on (http://\S+?)/ ", line)
            if match:
                url = match.group(1)
                break
        assert url is not None, "the demo did not say where it listens"
        with httpx.Client(base_url=url, cookies=no_cookie_jar()) as http:
            first = http.get("/")
            assert first.text == "You've visited this page 1 times\n"
            jar = {"Cookie": first.headers["set-cookie"].split(";")[0]}
            assert http.get("/", headers=jar).text == "You've visited this page 2 times\n"
            peek = http.get("/peek", headers=jar)
            assert peek.text == "count is 2\n"
            assert "set-cookie" not in peek.headers
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=30)[0]
        assert "stopped" in rest
        assert proc.returncode == 0
    finally:
        proc.kill()
        proc.wait()


async def test_concurrent_requests_to_the_counter_lose_nothing() -> None:
    """Issue 16: 31 concurrent requests on one cookie used to leave the count at 24."""
    async with (
        served(counter.app) as url,
        httpx.AsyncClient(base_url=url, cookies=no_cookie_jar()) as http,
    ):
        first = await http.get("/")
        assert first.text == "You've visited this page 1 times\n"
        jar = {"Cookie": first.headers["set-cookie"].split(";")[0]}
        seen: list[str] = []

        async def visit(into: list[str]) -> None:
            into.append((await http.get("/", headers=jar)).text)

        async with trio.open_nursery() as nursery:
            for _ in range(31):
                nursery.start_soon(visit, seen)
        counts = sorted(int(text.split()[-2]) for text in seen)
        assert counts == list(range(2, 33))
        assert (await http.get("/peek", headers=jar)).text == "count is 32\n"


async def test_login_example_regenerates() -> None:
    app = login.app
    async with app.test_app():
        client = app.test_client()
        bad = await client.post("/login", form={"user": "alice", "password": "nope"})
        assert bad.status_code == 401
        ok = await client.post("/login", form={"user": "alice", "password": "wonderland"})
        assert ok.status_code == 200
        me = await client.get("/me")
        assert await me.get_json() == {"user": "alice", "flash": "welcome, alice"}
        again = await client.get("/me")  # the flash was popped: shown once
        assert await again.get_json() == {"user": "alice", "flash": None}
        out = await client.post("/logout")
        assert await out.get_json() == {"logged_out": True}
        assert await (await client.get("/me")).get_json() == {"user": None, "flash": None}
        await check_devices_page(app)


async def check_devices_page(app: Any) -> None:
    """The login example's "your devices" page (inside the one app lifetime a module-level
    store allows)."""
    phone = app.test_client()
    laptop = app.test_client()
    bob = app.test_client()
    assert (await phone.get("/devices")).status_code == 401
    form = {"user": "alice", "password": "wonderland"}
    for client, agent in ((phone, "Phone <b>1</b>"), (laptop, "Laptop " + "x" * 300)):
        ok = await client.post("/login", form=form, headers={"User-Agent": agent})
        assert ok.status_code == 200
    await bob.post("/login", form={"user": "bob", "password": "builder"})
    page = await (await laptop.get("/devices")).get_data(as_text=True)
    assert "Your devices, alice" in page
    assert "Phone &lt;b&gt;1&lt;/b&gt;, last seen" in page  # escaped client input
    assert f"Laptop {'x' * 193} (this device)" in page  # the label: 200 characters
    assert "x" * 194 not in page
    assert "Log out other devices" in page
    done = await laptop.post("/devices/logout-others")
    assert done.status_code == 303
    assert await (await phone.get("/me")).get_json() == {"user": None, "flash": None}
    page = await (await laptop.get("/devices")).get_data(as_text=True)
    assert "Phone" not in page
    assert "(this device)" in page
    assert (await (await bob.get("/me")).get_json())["user"] == "bob"
    out = await laptop.post("/logout")
    assert await out.get_json() == {"logged_out": True}
    assert (await laptop.get("/devices")).status_code == 401


async def test_websocket_chat_example() -> None:
    async with (
        served(websocket_chat.app) as url,
        httpx.AsyncClient(base_url=url, cookies=no_cookie_jar()) as http,
    ):
        page = await http.get("/")
        assert "new WebSocket" in page.text
        login_response = await http.post("/login", data={"user": "bob", "password": "builder"})
        assert login_response.status_code == 303
        cookie = login_response.headers["set-cookie"].split(";")[0]
        ws_url = url.replace("http://", "ws://") + "/ws"
        async with open_websocket_url(ws_url, extra_headers=[(b"cookie", cookie.encode())]) as ws:
            assert await ws.get_message() == "hello, bob"
            await ws.send_message("hi")
            assert await ws.get_message() == "bob: hi"
        async with open_websocket_url(ws_url) as ws:
            assert [k for k, _ in ws.handshake_headers if k == b"set-cookie"]
            assert await ws.get_message() == "hello, anonymous visitor"
        # The page's "log out" button: the session ends, its cookie is cleared, and the old
        # id no longer names bob.
        logout = await http.post("/logout", headers={"cookie": cookie})
        assert logout.status_code == 303
        assert logout.headers["location"] == "/logged-out"
        assert "Max-Age=0" in logout.headers["set-cookie"]
        assert "logged out" in (await http.get(logout.headers["location"])).text
        async with open_websocket_url(ws_url, extra_headers=[(b"cookie", cookie.encode())]) as ws:
            assert await ws.get_message() == "hello, anonymous visitor"


def test_worker_example() -> None:
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "worker.py")],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert "fields: {'user': 'alice', 'cart': ['book']}" in out
    assert "deleted: True" in out
    assert "web session now: None" in out


async def test_trio_websocket_example() -> None:
    import trio_websocket_server

    async with trio_websocket_server.MemoryStore() as store, trio.open_nursery() as nursery:
        server = await nursery.start(
            trio_websocket_server.serve_websocket,
            lambda r: trio_websocket_server.handler(store, r),
            "127.0.0.1",
            0,
            None,
        )
        async with open_websocket_url(f"ws://127.0.0.1:{server.port}/") as ws:
            assert await ws.get_message() == "visit 1"
            await ws.send_message("ping")
            assert await ws.get_message() == "echo: ping"
        nursery.cancel_scope.cancel()


def test_the_testing_guide_example_passes() -> None:
    """examples/test_login_example.py, the testing guide's example, run as a user would."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_login_example.py"],
        cwd=EXAMPLES,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"\b5 passed\b", done.stdout), done.stdout


def _handshake(url: str) -> socket.socket:
    """Open a websocket (a bare HTTP upgrade) to ``ws://host:port/`` and leave it open."""
    host, port = re.fullmatch(r"ws://([^:/]+):(\d+)/", url).groups()  # type: ignore[union-attr]
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(
        b"GET / HTTP/1.1\r\nHost: example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    assert sock.recv(4096).startswith(b"HTTP/1.1 101 ")
    return sock


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("example", ["trio_websocket_server.py", "counter.py"])
def test_examples_stop_cleanly_on_signals(example: str, sig: signal.Signals) -> None:
    """Ctrl-C and SIGTERM: a message, exit status 0, no traceback; the trio-websocket server
    with a connection still open."""
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / example), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    held = None
    watchdog = threading.Timer(60, proc.kill)  # a hung example ends the loop below
    watchdog.start()
    try:
        assert proc.stdout is not None
        url = None
        for line in proc.stdout:
            match = re.search(r"listening on (\S+?/)(\s|$)", line)
            if match:
                url = match.group(1)
                break
        assert url is not None, "the example did not say where it listens"
        if url.startswith("ws://"):
            held = _handshake(url)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
        assert "Traceback" not in err, err
        assert "KeyboardInterrupt" not in err, err
        assert f"{sig.name}: shutting down" in out
        assert out.rstrip().endswith("stopped")
        assert proc.returncode == 0
    finally:
        watchdog.cancel()
        if held is not None:
            held.close()
        proc.kill()
        proc.wait()
