"""User code type-checks under ``mypy --strict`` (tests/typecheck/user_code.py), and runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
USER_CODE = ROOT / "tests" / "typecheck" / "user_code.py"


def _mypy(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", *map(str, paths)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_user_code_passes_mypy_strict() -> None:
    done = _mypy(USER_CODE)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("opts: CookieOptions = CookieOptions.build().name(1).max_age(10)", "arg-type"),
        ('opts: CookieOptions = CookieOptions.build().same_site("sometimes")', "arg-type"),
        ("opts: int = CookieOptions.build().name('s')", "assignment"),
    ],
)
def test_mypy_catches_misuse_of_the_builder(tmp_path: Path, line: str, error: str) -> None:
    """The check above is a real one: the builder's steps are typed."""
    bad = tmp_path / "bad.py"
    bad.write_text(f"from trio_ruts import CookieOptions\n\n{line}\n")
    done = _mypy(bad)
    assert done.returncode == 1
    assert f"[{error}]" in done.stdout, done.stdout


def test_user_code_runs() -> None:
    subprocess.run([sys.executable, str(USER_CODE)], check=True, timeout=60)
