"""The whole-stack benchmark: every store benchmark and the HTTP one, in one go.

Runs bench/redis_store.py, bench/postgres_store.py, bench/layered_store.py and
bench/http_load.py (the demo-style app with and without sessions, on the memory store and on
Redis, loaded by wrk), all on private servers on loopback. A part that cannot run is reported
with its reason and ``null`` ratios. Full runs redraw docs/performance.png. The output ends
with one JSON line of ratios.

Usage: python bench/run.py [--quick] [--plot] [--replot]     (--quick: under a minute)
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import http_load, layered_store, postgres_store, redis_store  # noqa: E402
from tests import servers  # noqa: E402

PLOT = ROOT / "docs" / "performance.png"
RESULTS = ROOT / "docs" / "performance-results.json"  # the full run behind the plot
TARGETS = {
    "http_redis_vs_bare": (">=", 0.85),
    "http_memory_vs_bare": (">=", 0.95),
    "redis_get_vs_raw": ("<=", 1.0),
    "redis_throughput_vs_raw": (">=", 1.5),
    "layered_write_vs_max": ("<=", 1.2),
    "layered_read_hit_vs_hot": ("<=", 1.2),
    "layered_mixed_vs_postgres": (">=", 3.0),
    "postgres_get_vs_bridged": ("<=", 1.3),
}
# The HTTP reference apps of full runs (bench/http_app.py), reported for context.
CONTEXT = {
    "floor": "hook, cookie, 2 checkpoints",
    "minimal": "the memory app written by hand, no library",
}


def ensure_bench_extra() -> None:
    """Install the ``bench`` extra into this interpreter if any of its packages is missing,
    as the bench installs wrk: one command runs everything on a fresh machine."""
    try:
        import coredis  # noqa: F401
        import matplotlib  # noqa: F401
    except ImportError:
        print("installing the bench extra (pip install -e '.[bench]')", flush=True)
        pip = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        try:
            subprocess.run([*pip, "-e", f"{ROOT}[bench]"], check=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            # The parts that need the missing packages then report it and print null.
            print(f"the bench extra could not be installed: {exc}", flush=True)
        importlib.invalidate_caches()


def part(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    print(f"\n===== {name}", flush=True)
    start = time.monotonic()
    try:
        result = fn()
    except Exception as exc:  # a part that cannot run is reported, not fatal
        print(f"{name} could not run: {exc!r}")
        traceback.print_exc(limit=3)
        return None
    print(f"({name}: {time.monotonic() - start:.0f} s)", flush=True)
    return result


def http(quick: bool) -> dict[str, Any]:
    found = servers.redis74_binary()  # the same server as the store benchmarks use
    binary, env = found if found else (servers.system_redis_binary(), {})
    with servers.redis_server(binary, env) as redis:
        http_load.pin_load_side(redis.proc.pid)
        # Full runs add two reference apps, to show what is structural: "floor", bare plus
        # what any session layer must add here (an after-request hook that sets a cookie, two
        # checkpoints), and "minimal", the memory app's session work written by hand without
        # the library (bench/_minimal.py).
        modes = ["bare", "memory", "redis"] + ([] if quick else ["floor", "minimal"])
        return http_load.run(modes, quick, redis.url)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    redis, pg, lay, web = (results.get(k) for k in ("redis", "postgres", "layered", "http"))
    panels: list[tuple[str, dict[str, float], str]] = []
    if redis:
        panels.append(("Redis: median latency (us)", redis["latency_us"], "tab:red"))
        panels.append(("Redis: 50 concurrent tasks (ops/s)", redis["ops_per_s"], "tab:orange"))
    rows: dict[str, float] = {}
    if pg:
        rows.update({f"pg: {k}": v for k, v in pg["latency_us"].items()})
    if lay:
        rows.update({f"layered: {k}": v for k, v in lay["latency_us"].items()})
    if rows:
        panels.append(("Postgres and layered: median latency (us)", rows, "tab:blue"))
    if web:
        rps = {f"{k} (x{web['ratios'][k]:.2f})": v for k, v in web["rps"].items()}
        panels.append(("HTTP: demo app, wrk -c50 (requests/s)", rps, "tab:green"))
    fig, axes = plt.subplots(2, 2, figsize=(14, 8))
    for ax, (title, data, color) in zip(axes.flat, panels, strict=False):
        ax.barh(list(data), list(data.values()), color=color)
        ax.set_title(title, fontsize=10)
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=8)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle("trio-ruts next to the raw round trips (loopback, 2 cores, medians)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"plot written to {path.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs, under a minute")
    parser.add_argument("--plot", action="store_true", help="redraw the plot on a quick run too")
    parser.add_argument(
        "--replot", action="store_true", help="only redraw the plot from the saved results"
    )
    args = parser.parse_args()
    ensure_bench_extra()
    if args.replot:
        plot(json.loads(RESULTS.read_text()), PLOT)
        return
    q = args.quick
    results = {
        "redis": part("redis store", lambda: redis_store.run(q)),
        "postgres": part("postgres store", lambda: postgres_store.run(q)),
        "layered": part("layered store", lambda: layered_store.run(q)),
        "http": part("HTTP", lambda: http(q)),
    }
    web = results["http"]["ratios"] if results["http"] else None
    ratios: dict[str, float | None] = {
        "http_redis_vs_bare": round(web["redis"], 3) if web else None,
        "http_memory_vs_bare": round(web["memory"], 3) if web else None,
    }
    for key, source in (
        ("redis_get_vs_raw", "redis"),
        ("redis_throughput_vs_raw", "redis"),
        ("layered_write_vs_max", "layered"),
        ("layered_read_hit_vs_hot", "layered"),
        ("layered_mixed_vs_postgres", "layered"),
        ("postgres_get_vs_bridged", "postgres"),
    ):
        found = results[source]
        ratios[key] = None if found is None else found.get(key)
    print("\n===== summary (target)")
    for key, value in ratios.items():
        op, bound = TARGETS[key]
        if value is None:
            print(f"  {key:28}   null  (could not run: see above)")
            continue
        ok = value >= bound if op == ">=" else value <= bound
        print(f"  {key:28} {value:6.3f}  ({op} {bound}: {'met' if ok else 'MISSED'})")
    for mode, what in CONTEXT.items():  # reference apps: context, not targets
        if web and mode in web:
            key = f"http_{mode}_vs_bare"
            ratios[key] = round(web[mode], 3)
            print(f"  {key:28} {ratios[key]:6.3f}  ({what}; no target)")
    if not q:
        RESULTS.write_text(json.dumps(results | {"ratios": ratios}, indent=1) + "\n")
    if not q or args.plot:
        try:
            plot(results, PLOT)
        except Exception as exc:  # the figures above stand; the JSON line still ends the run
            print(f"the plot could not be drawn: {exc!r}")
    print(json.dumps(ratios))


if __name__ == "__main__":
    main()
