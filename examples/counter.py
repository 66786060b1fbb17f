"""The ruts README's counter on the embedded MemoryStore: the project's main demo.

Run it with ``bash scripts/demo.sh`` (or ``python examples/counter.py --port 8000``), then open
the printed address or ``curl -c jar -b jar http://127.0.0.1:8000/`` a few times.
"""

from __future__ import annotations

from quart_trio import QuartTrio

from trio_ruts import CookieOptions, MemoryStore
from trio_ruts.quart import Sessions, session

app = QuartTrio("counter")
# secure=False only because the demo is served over plain http on loopback; keep the default
# (secure=True) behind HTTPS.
Sessions(
    app,
    MemoryStore(),
    cookie=CookieOptions.build().name("session").max_age(3600).secure(False),
)


@app.route("/")
async def index() -> str:
    # One atomic store step: concurrent requests on one cookie never lose a visit (a get
    # followed by an update would).
    count = await session.incr("count")
    return f"You've visited this page {count} times\n"


@app.route("/peek")
async def peek() -> str:
    """Reads only: never sets a cookie."""
    return f"count is {await session.get('count', 0)}\n"


@app.route("/reset", methods=["POST"])
async def reset() -> str:
    await session.delete()
    return "session deleted\n"


if __name__ == "__main__":
    from _serve import run

    run(app, "trio-ruts counter demo")
