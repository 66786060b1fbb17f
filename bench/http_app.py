"""The app the HTTP benchmark serves: the counter, with or without sessions.

Chosen by the environment: ``BENCH_STORE`` is ``bare`` (no session middleware), ``memory`` or
``redis`` (with ``BENCH_REDIS_URL``). Diagnostic variants used to find where time goes:
``checkpoints`` (bare plus two trio checkpoints), ``setcookie`` (bare plus a constant
Set-Cookie header), ``floor`` (bare plus what any session layer adds here: an after-request
hook that sets a cookie, and two checkpoints), ``registered`` (the extension's hooks, the
session unused), ``created`` (the session object made from the cookie, no store call),
``memory-get`` (a read of a session that does not exist), ``memory-read`` (a read that finds
the field), ``memory-write`` (the write alone), ``minimal`` (the counter on the least a Python
session layer can do: the work of ``memory`` written by hand, without the library; see
``bench/_minimal.py``), and ``bare2``/``bare3`` (copies of ``bare``, to see how far identical
processes differ).
Served by ``hypercorn --worker-class trio bench.http_app:app``.
"""

from __future__ import annotations

import os
from typing import Any

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
    from quart import request
    from quart.globals import _cv_app

    from bench import _minimal

    @app.after_request
    async def minimal_cookie(response: Any) -> Any:
        sid = _cv_app.get().g.__dict__.get("sid")
        if sid is not None:
            response.headers.add("Set-Cookie", _minimal.set_cookie(sid))
        return response

    @app.get("/")
    async def index() -> str:
        count, sid = await _minimal.count_visit(request.headers.get("Cookie", ""))
        _cv_app.get().g.sid = sid
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
