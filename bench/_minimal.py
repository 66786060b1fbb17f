"""The least a Python session layer can do for the counter app, written by hand.

Every library concern is stripped out: the id is cut out of the ``Cookie`` header and only
checked to decode (a malformed one means no session), with no signatures; a session is one
dict with a single expiry (no per-field lifetimes); there is no store interface, no session
object and no write record. What is left is what the counter needs: the CBOR value, a fresh
id when the session is absent (never the client's), and two checkpoints, one per store call.
``bench/http_app.py`` serves it as the ``minimal`` app; ``bench/session_loop.py`` times it in
a loop.
"""

from __future__ import annotations

import binascii
import secrets

import cbor2
import trio

_sessions: dict[bytes, tuple[float, dict[str, bytes]]] = {}


async def count_visit(cookie_header: str) -> tuple[int, str]:
    """Read and bump the count of the session named in ``cookie_header``; returns the new
    count and the id to send back as the ``session`` cookie."""
    text = cookie_header.partition("session=")[2][:22]
    try:
        key = binascii.a2b_base64(text.replace("-", "+").replace("_", "/") + "==")
    except binascii.Error:  # malformed: no session
        key = b""
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
    return count, text


def set_cookie(sid: str) -> str:
    """The ``Set-Cookie`` value for ``sid``."""
    return f"session={sid}; Max-Age=3600; Path=/; HttpOnly; SameSite=Lax"
