"""The distributions: an sdist from which the tests run, and a wheel that installs alone.

``python -m build`` makes the sdist, then the wheel from the unpacked sdist (so a file missing
from the sdist breaks the wheel too), in an isolated build environment, as a release would. It
builds from a clean copy of the source: a ``*.egg-info/SOURCES.txt`` left by an earlier build
would otherwise put its files back into the sdist whatever MANIFEST.in says.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Shipped in the sdist beside the package: every file under these, and these files.
TREES = ("tests", "docs", "examples", "scripts", "bench")
FILES = ("LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml")
#: What a checkout holds that is not source (virtualenv, caches, earlier builds).
LOCAL = (".git", ".venv", ".cache", ".*_cache", ".hypothesis", "*.egg-info", "build", "dist")
LOCAL += ("__pycache__", "*.pyc")


@dataclass
class Dists:
    sdist: Path
    wheel: Path
    log: str


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    out = tmp_path_factory.mktemp("dist")
    source = tmp_path_factory.mktemp("source") / "trio-ruts"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*LOCAL))
    done = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return Dists(sdist, wheel, done.stdout + done.stderr)


def _source_files() -> set[str]:
    names = set(FILES)
    for tree in TREES:
        for path in (ROOT / tree).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                names.add(path.relative_to(ROOT).as_posix())
    return names


def test_the_build_prints_no_deprecation_warning(dists: Dists) -> None:
    # setuptools < 77, or a TOML-table `license`, warned here four times per build.
    assert "deprecat" not in dists.log.lower(), dists.log


def test_the_sdist_ships_tests_docs_examples_and_license(dists: Dists) -> None:
    with tarfile.open(dists.sdist) as tar:
        top = tar.getnames()[0].split("/")[0]
        shipped = {name.partition("/")[2] for name in tar.getnames()}
    missing = sorted(_source_files() - shipped)
    assert not missing, f"{top} lacks {missing}"
    for needed in ("tests/__init__.py", "tests/conftest.py", "tests/servers.py", "LICENSE"):
        assert needed in shipped


def test_the_wheel_holds_the_package_and_its_license(dists: Dists) -> None:
    with zipfile.ZipFile(dists.wheel) as whl:
        names = set(whl.namelist())
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = whl.read(metadata).decode()
    assert "trio_ruts/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not [n for n in names if n.startswith(("tests/", "examples/", "docs/"))]
    assert "License-Expression: MIT" in meta
    extras = {line.split(": ")[1] for line in meta.splitlines() if line.startswith("Provides-")}
    assert {"redis", "redis-py", "postgres", "quart", "websocket", "all", "test"} <= extras


def test_the_sdist_tests_collect(dists: Dists, tmp_path: Path) -> None:
    """Unpacked, the sdist's own test suite is importable: pytest collects as many tests from
    it as from this checkout (with the packages this environment has installed)."""
    with tarfile.open(dists.sdist) as tar:
        tar.extractall(tmp_path, filter="data")
    (unpacked,) = tmp_path.iterdir()

    def collect(where: Path) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done.stdout.strip().splitlines()[-1]  # "N tests collected in ..."

    from_sdist, from_checkout = collect(unpacked), collect(ROOT)
    assert from_sdist.split()[0] == from_checkout.split()[0], (from_sdist, from_checkout)
    assert "collected" in from_sdist


def test_the_wheel_installs_alone_in_a_fresh_venv(dists: Dists, tmp_path: Path) -> None:
    """A core-only install: trio and cbor2, nothing else. Sessions work on the memory store,
    and a store whose extra is missing says which extra to install."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", dists.wheel],
        check=True,
        capture_output=True,
        timeout=300,
    )
    script = """
import importlib.util, trio
from trio_ruts import MemoryStore, Session
from trio_ruts.stores import PostgresStore, RedisStore

async def main():
    async with MemoryStore() as store:
        session = Session(store)
        await session.update("user", "alice")
        print("read back:", await Session(store, id=session.id).get("user"))

trio.run(main)
print("drivers:", [m for m in ("hiredis", "asyncpg", "redis") if importlib.util.find_spec(m)])
for build in (lambda: RedisStore.from_url("redis://127.0.0.1:1"),
              lambda: PostgresStore.from_dsn("postgresql://127.0.0.1:1/db")):
    try:
        build()
    except ModuleNotFoundError as exc:
        print("error:", exc)
"""
    done = subprocess.run(
        [str(python), "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "read back: alice",
        "drivers: []",
        'error: RedisStore needs hiredis: pip install "trio-ruts[redis]"',
        'error: PostgresStore needs asyncpg: pip install "trio-ruts[postgres]"',
    ]
