"""HTTP throughput of the demo-style app with and without sessions, loaded by wrk.

Each variant of ``bench/http_app.py`` runs in several Hypercorn processes (trio worker) on
loopback ports, all on one core of their own (wrk and Redis get the others); wrk loads the
variants for one second each, in a shuffled order, round after round and process after
process, so that machine noise falls on all alike. Requests per second are medians over the
rounds; ratios are the medians of each round's ratio. Session variants are sent one fixed
session cookie, so every request reads and writes one field of a live session; variants
without sessions are sent a session cookie too, so that every variant parses the same request.

Usage: python bench/http_load.py [--quick] [--modes bare,memory,redis] [--rounds N]
       [--processes K]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import servers  # noqa: E402

CONNECTIONS = 50


def _cpu_split() -> tuple[set[int], set[int]] | None:
    """The CPUs for the app servers and for the load side (wrk, Redis), or ``None`` when
    there is only one. The app gets a core of its own, as it would in production; otherwise
    the scheduler shares cores between wrk and the app differently from run to run, and
    identical processes differ by up to 30% on this 2-core VM."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    return {cpus[-1]}, set(cpus[:-1])


SPLIT = _cpu_split()


def pin_load_side(pid: int) -> None:
    """Keep a load-side process (the Redis server) off the app's core."""
    if SPLIT is not None:
        os.sched_setaffinity(pid, SPLIT[1])


def _on(cpus: set[int] | None) -> Any:
    """A ``preexec_fn`` that pins a child process to ``cpus`` (no-op for ``None``)."""
    return None if cpus is None else lambda: os.sched_setaffinity(0, cpus)


def ensure_wrk() -> str:
    """wrk from Debian's packages, installed if missing (needs root, as on CI)."""
    found = shutil.which("wrk")
    if found:
        return found
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True)
    subprocess.run(
        [*sudo, "apt-get", "install", "-y", "-qq", "wrk"],
        check=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("wrk could not be installed")
    return found


@contextmanager
def serve(modes: list[str], env: dict[str, str]) -> Iterator[list[str]]:
    """One Hypercorn process per entry of ``modes``, started together; yields their URLs."""
    procs: list[tuple[int, subprocess.Popen[bytes]]] = []
    try:
        for mode in modes:
            port = servers.free_port()
            command = [sys.executable, "-m", "hypercorn", "--worker-class", "trio"]
            command += ["--bind", f"127.0.0.1:{port}", "bench.http_app:app"]
            procs.append(
                (
                    port,
                    subprocess.Popen(
                        command,
                        cwd=ROOT,
                        env={**os.environ, **env, "BENCH_STORE": mode},
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                        preexec_fn=_on(SPLIT and SPLIT[0]),
                    ),
                )
            )
        for port, proc in procs:
            servers.wait_for_port(port, proc)  # type: ignore[arg-type]
        yield [f"http://127.0.0.1:{port}/" for port, _ in procs]
    finally:
        for _, proc in procs:
            proc.terminate()
        for _, proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def session_cookie(url: str) -> str | None:
    with urllib.request.urlopen(url, timeout=10) as response:
        header = response.headers.get("Set-Cookie")
    return None if header is None else header.split(";")[0]


def load(wrk: str, url: str, cookie: str | None, seconds: float) -> float:
    args = [wrk, "-t1", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "--latency", url]
    if cookie:
        args[1:1] = ["-H", f"Cookie: {cookie}"]
    out = subprocess.run(
        args,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_on(SPLIT and SPLIT[1]),
    ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"{url} answered errors under load:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    return float(match.group(1))


def run(
    modes: list[str],
    quick: bool,
    redis_url: str | None = None,
    rounds: int | None = None,
    processes: int | None = None,
) -> dict[str, Any]:
    """Requests per second per mode (medians), and ratios against ``bare`` (medians of the
    rounds' ratios). ``rounds`` and ``processes`` (per variant) override the defaults."""
    wrk = ensure_wrk()
    # Many short rounds: this machine's speed drifts by tens of percent within seconds, so
    # the variants of a round run close together, in a shuffled order. And one process can be
    # steadily a few percent faster than an identical one (placement in memory, on a core), so
    # each variant runs in several processes and the rounds go through them in turn.
    default_rounds, seconds, default_instances = (6, 1, 2) if quick else (36, 1, 6)
    rounds = rounds or default_rounds
    instances = processes or default_instances
    shuffle = random.Random(1).shuffle
    env = {"BENCH_REDIS_URL": redis_url or ""}
    with serve([m for m in modes for _ in range(instances)], env) as started:
        urls = {m: started[i * instances : (i + 1) * instances] for i, m in enumerate(modes)}
        cookies = {m: [session_cookie(u) for u in us] for m, us in urls.items()}
        # Every variant gets the same request: those without sessions get a session cookie
        # too (any one), so that the difference is the session work, not parsing a header.
        some_cookie = next((c for cs in cookies.values() for c in cs if c), None)
        cookies = {m: [c or some_cookie for c in cs] for m, cs in cookies.items()}
        for mode, us in urls.items():  # warm-up
            for url, cookie in zip(us, cookies[mode], strict=True):
                load(wrk, url, cookie, 1)
        samples: dict[str, list[float]] = {m: [] for m in modes}
        order = list(urls)
        for r in range(rounds):
            shuffle(order)
            k = r % instances
            for mode in order:
                samples[mode].append(load(wrk, urls[mode][k], cookies[mode][k], seconds))
    result = {m: statistics.median(v) for m, v in samples.items()}
    # A round's variants run back to back, so a round's ratio sees about the same machine;
    # the median of those ratios is far steadier than the ratio of medians here.
    ratios = {
        m: statistics.median(a / b for a, b in zip(v, samples["bare"], strict=True))
        for m, v in samples.items()
        if "bare" in samples
    }
    print(
        f"\nHTTP, wrk -c{CONNECTIONS}, median of {rounds} x {seconds}s runs "
        f"over {instances} processes per variant"
    )
    for mode, rps in result.items():
        ratio = ratios.get(mode, float("nan"))
        print(
            f"  {mode:12} {rps:9.0f} req/s  {ratio:5.2f}x bare   runs: "
            + ", ".join(f"{v:.0f}" for v in samples[mode])
        )
    return {"rps": result, "ratios": ratios, "samples": samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--modes", default="bare,memory,redis")
    parser.add_argument("--rounds", type=int, help="rounds (default 36, quick 6)")
    parser.add_argument("--processes", type=int, help="processes per variant (default 6)")
    args = parser.parse_args()
    modes = args.modes.split(",")
    if "redis" in modes:
        found = servers.redis74_binary()
        binary, env = found if found else (servers.system_redis_binary(), {})
        with servers.redis_server(binary, env) as redis:
            pin_load_side(redis.proc.pid)
            run(modes, args.quick, redis.url, args.rounds, args.processes)
    else:
        run(modes, args.quick, None, args.rounds, args.processes)


if __name__ == "__main__":
    main()
