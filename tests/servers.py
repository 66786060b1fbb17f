"""Real servers for the tests, started by the test setup itself on free loopback ports.

Each server is a private process with its data in a temporary directory, killed at the end of
the test session. Nothing here talks to the machine's shared servers.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REDIS74_DIR = ROOT / ".cache" / "redis74"


def free_port(*, with_cluster_bus: bool = False) -> int:
    """A free loopback port; for cluster nodes one below 55536 whose bus port (+10000) is free."""
    if not with_cluster_bus:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 55000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start within {timeout} s")


@dataclass
class RedisServer:
    binary: str
    port: int
    proc: subprocess.Popen[bytes]
    workdir: str
    env: dict[str, str]
    extra: tuple[str, ...]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def cli(self, *args: str) -> str:
        return subprocess.run(
            ["redis-cli", "-p", str(self.port), *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def start(self) -> None:
        """(Re)start on the same port, e.g. after :meth:`stop` in a fault test."""
        self.proc = _spawn_redis(self.binary, self.port, self.workdir, self.env, self.extra)


def _spawn_redis(
    binary: str, port: int, workdir: str, env: dict[str, str], extra: tuple[str, ...]
) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
            "--logfile",
            os.path.join(workdir, f"redis-{port}.log"),
            *extra,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, proc)
    return proc


@contextmanager
def redis_server(
    binary: str, env: dict[str, str] | None = None, *extra: str
) -> Iterator[RedisServer]:
    workdir = tempfile.mkdtemp(prefix="trio-ruts-redis-")
    environment = {**os.environ, **(env or {})}
    port = free_port(with_cluster_bus="--cluster-enabled" in extra)
    server = RedisServer(
        binary,
        port,
        _spawn_redis(binary, port, workdir, environment, extra),
        workdir,
        environment,
        extra,
    )
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def system_redis_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("redis-server is not installed: run the README's test command")
    return found


def redis74_binary() -> tuple[str, dict[str, str]] | None:
    """The Redis 7.4 binary prepared by scripts/redis74.sh, with its private library path."""
    binary = REDIS74_DIR / "redis-server"
    lib = REDIS74_DIR / "lib"
    if not binary.exists() or not (lib / "libssl.so.1.1").exists():
        return None
    return str(binary), {"LD_LIBRARY_PATH": str(lib)}


@contextmanager
def redis_cluster(binary: str, masters: int = 3) -> Iterator[list[RedisServer]]:
    """A cluster of ``masters`` masters (no replicas) on loopback."""
    with _nested_servers(binary, masters) as nodes:
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *[f"127.0.0.1:{n.port}" for n in nodes],
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        deadline = time.monotonic() + 30
        while not all("cluster_state:ok" in n.cli("CLUSTER", "INFO") for n in nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("the test cluster did not reach cluster_state:ok")
            time.sleep(0.1)
        yield nodes


@contextmanager
def _nested_servers(binary: str, count: int) -> Iterator[list[RedisServer]]:
    from contextlib import ExitStack

    with ExitStack() as stack:
        nodes = [
            stack.enter_context(
                redis_server(
                    binary, None, "--cluster-enabled", "yes", "--cluster-node-timeout", "2000"
                )
            )
            for _ in range(count)
        ]
        yield nodes


# -- PostgreSQL -----------------------------------------------------------------------------------


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not candidates:
        raise RuntimeError(f"{name} is not installed: run the README's test command")
    return str(candidates[-1])


def _as_postgres_user() -> list[str]:
    # PostgreSQL refuses to run as root; as root (CI), run it as the packaged "postgres" user.
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


@dataclass
class PostgresServer:
    datadir: str
    port: int

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(
            [*_as_postgres_user(), _pg_bin("pg_ctl"), "-D", self.datadir, "-w", "-t", "60", *args],
            check=True,
            capture_output=True,
            timeout=90,
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.datadir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        log = os.path.join(self.datadir, "server.log")
        self._pg_ctl("-l", log, "-o", options, "start")

    def stop(self) -> None:
        """Fast shutdown, waiting until the server is gone (clients are disconnected)."""
        self._pg_ctl("-m", "fast", "stop")


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL cluster (initdb in a temporary directory, trust auth)."""
    base = tempfile.mkdtemp(prefix="trio-ruts-pg-")
    datadir = os.path.join(base, "data")
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    subprocess.run(
        [
            *_as_postgres_user(),
            _pg_bin("initdb"),
            "-D",
            datadir,
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    server = PostgresServer(datadir, free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
