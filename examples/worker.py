"""Using sessions directly from a Trio program: an admin task that inspects and edits sessions.

Workers, admin tools and tests need no web framework: open the store, make a ``Session`` for
an id, and call it.
"""

from __future__ import annotations

import trio

from trio_ruts import CookieOptions, MemoryStore, Session, SessionId


async def main() -> None:
    cookie = CookieOptions(max_age=3600)
    async with MemoryStore() as store:
        # A "request" creates a session...
        web = Session(store, cookie=cookie)
        await web.update("user", "alice")
        await web.update("cart", ["book"], ttl=600)
        sid = str(web.id)

        # ...and a worker, knowing only the id's text, reads and edits it.
        admin = Session(store, SessionId.parse(sid), cookie=cookie)
        everything = await admin.get_all()
        print("fields:", dict(everything or {}))
        await admin.update("flagged", True, ttl=60)
        await admin.expire(300)  # shorten the whole session to five minutes
        print("after edit:", dict(await admin.get_all() or {}))

        # Force a logout everywhere.
        print("deleted:", await admin.delete())
        print("web session now:", await Session(store, SessionId.parse(sid)).get_all())


if __name__ == "__main__":
    trio.run(main)
