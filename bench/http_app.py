"""The app the HTTP benchmark serves: the counter, with or without sessions.

Chosen by the environment: ``BENCH_STORE`` is ``bare`` (no session middleware), ``memory`` or
``redis`` (with ``BENCH_REDIS_URL``). Diagnostic variants used to find where time goes:
``checkpoints`` (bare plus two trio checkpoints), ``setcookie`` (bare plus a constant
Set-Cookie header), ``floor`` (bare plus what any session layer adds here: an after-request
hook that sets a cookie, and two checkpoints), ``registered`` (the extension's hooks, the
session unused), ``created`` (the session object made from the cookie, no store call),
``memory-get`` (a read of a session that does not exist), ``memory-read`` (a read that finds
the field), ``memory-write`` (the write alone), ``minimal`` (the counter on the least a Python
session layer can do: the work of ``memory`` hand-inlined, without the library), and
``bare2``/``bare3`` (copies of ``bare``, to see how far identical processes differ).
Served by ``hypercorn --worker-class trio bench.http_app:app``.
"""

from __future__ import annotations

import binascii
import os
import secrets
from typing import Any

import cbor2
import trio
from quart_trio import QuartTrio

from trio_ruts import CookieOptions, MemoryStore
from trio_ruts.quart import Sessions, session
from trio_ruts.stores import RedisStore, SessionStore

MODE = os.environ.get("BENCH_STORE", "bare")
app = QuartTrio(__name__)
app.config["PROPAGATE_EXCEPTIONS"] = False
_hits = 0
_CONSTANT_COOKIE = "session=AAAAAAAAAAAAAAAAAAAAAA; Max-Age=3600; Path=/; HttpOnly; SameSite=Lax"

if MODE == "checkpoints":  # diagnostic: bare plus two scheduler round trips

    @app.get("/")
    async def index() -> str:
        global _hits
        await trio.lowlevel.checkpoint()
        await trio.lowlevel.checkpoint()
        _hits += 1
        return f"You've visited this page {_hits} times\n"

elif MODE == "setcookie":  # diagnostic: bare plus a constant Set-Cookie header

    @app.get("/")
    async def index() -> tuple[str, dict[str, str]]:
        global _hits
        _hits += 1
        return f"You've visited this page {_hits} times\n", {"Set-Cookie": _CONSTANT_COOKIE}

elif MODE == "floor":  # diagnostic: what any session layer must add to bare here

    @app.after_request
    async def set_cookie(response: Any) -> Any:  # a cookie is due after every write
        response.headers.add("Set-Cookie", _CONSTANT_COOKIE)
        return response

    @app.get("/")
    async def index() -> str:
        global _hits
        await trio.lowlevel.checkpoint()  # a read is a checkpoint
        await trio.lowlevel.checkpoint()  # and so is a write
        _hits += 1
        return f"You've visited this page {_hits} times\n"

elif MODE == "minimal":  # diagnostic: the least a Python session layer can do here
    # A session layer with every library concern stripped out and inlined: the id from the
    # Cookie header without validation or signatures, one dict per session with a single
    # expiry (no per-field lifetimes, no store interface), a fresh id when the session is
    # absent, CBOR values, two checkpoints (one per store call) and the Set-Cookie hook.
    from quart import request
    from quart.globals import _cv_app

    _sessions: dict[bytes, tuple[float, dict[str, bytes]]] = {}

    @app.after_request
    async def minimal_cookie(response: Any) -> Any:
        sid = _cv_app.get().g.__dict__.get("sid")
        if sid is not None:
            response.headers.add(
                "Set-Cookie", f"session={sid}; Max-Age=3600; Path=/; HttpOnly; SameSite=Lax"
            )
        return response

    @app.get("/")
    async def index() -> str:
        text = request.headers.get("Cookie", "").partition("session=")[2][:22]
        key = binascii.a2b_base64(text.replace("-", "+").replace("_", "/") + "==")
        await trio.lowlevel.checkpoint()  # the read
        entry = _sessions.get(key)
        if entry is not None and entry[0] > trio.current_time():
            count = cbor2.loads(entry[1]["count"]) + 1
        else:
            entry = None
            count = 1
        await trio.lowlevel.checkpoint()  # the write
        if entry is None:  # never adopt the client's id
            key = secrets.token_bytes(16)
            text = binascii.b2a_base64(key, newline=False).decode()[:22]
            text = text.replace("+", "-").replace("/", "_")
        _sessions[key] = (trio.current_time() + 3600, {"count": cbor2.dumps(count)})
        _cv_app.get().g.sid = text
        return f"You've visited this page {count} times\n"

elif MODE in ("bare", "bare2", "bare3"):

    @app.get("/")
    async def index() -> str:
        global _hits
        _hits += 1  # the same work without a session: count, answer
        return f"You've visited this page {_hits} times\n"

else:
    store: SessionStore
    if MODE in ("memory", "memory-get", "registered", "created", "memory-read", "memory-write"):
        store = MemoryStore()
    elif MODE == "redis":
        store = RedisStore.from_url(os.environ["BENCH_REDIS_URL"], pool_size=50)
    else:
        raise SystemExit(f"BENCH_STORE must be bare, memory or redis, not {MODE!r}")
    Sessions(app, store, cookie=CookieOptions(name="session", max_age=3600, secure=False))

    @app.get("/")
    async def index() -> str:
        global _hits
        if MODE == "registered":  # diagnostic: the extension's hooks, no session use
            _hits += 1
            return f"You've visited this page {_hits} times\n"
        if MODE == "created":  # diagnostic: the session object from the cookie, no store I/O
            _hits += 1
            assert session.store is not None
            return f"You've visited this page {_hits} times\n"
        if MODE == "memory-write":  # diagnostic: the write alone
            _hits += 1
            await session.update("count", _hits)
            return f"You've visited this page {_hits} times\n"
        count = await session.get("count", 0) + 1  # one read and one write of a field
        if MODE == "memory-read" and count > 1:  # diagnostic: a read that finds the field
            return f"You've visited this page {count} times\n"
        if MODE == "memory-get":  # diagnostic: the read alone (no write, so no cookie)
            return f"You've visited this page {count} times\n"
        await session.update("count", count)
        return f"You've visited this page {count} times\n"
