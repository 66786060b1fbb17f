"""The documentation build's own check (docs/_ext/public_api.py), on a small Sphinx project.

The test command builds the real site (docs/) with warnings as errors; these tests make sure
that the check it relies on fails a build that leaves out a public name, accepts an object
described under another of its public paths, and resolves references to either path.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sphinx", reason="the docs extra is not installed")

EXT = Path(__file__).resolve().parent.parent / "docs" / "_ext"

# A package with a private implementation module and two public modules that share a class.
PACKAGE = {
    "_impl.py": '''
class Thing:
    """A thing."""


def helper() -> None:
    """Help."""
''',
    "__init__.py": 'from ._impl import Thing, helper\n\n__all__ = ["Thing", "helper"]\n',
    "more.py": 'from ._impl import Thing\n\n__all__ = ["Thing"]\n',
}

CONF = """
import sys
sys.path[:0] = [{ext!r}, {src!r}]
extensions = ["sphinx.ext.autodoc", "myst_parser", "public_api"]
nitpicky = True
public_api_modules = ["pkg", "pkg.more"]
"""


SPHINX_BUILD = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-E", "-q", "-bhtml"]


def _build(tmp_path: Path, page: str) -> subprocess.CompletedProcess[str]:
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    for name, text in PACKAGE.items():
        (src / "pkg" / name).write_text(text)
    (src / "conf.py").write_text(CONF.format(ext=str(EXT), src=str(src)))
    (src / "index.md").write_text(page)
    return subprocess.run(
        [*SPHINX_BUILD, str(src), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_public_name_left_out_fails_the_build(tmp_path: Path) -> None:
    page = "# API\n\n```{eval-rst}\n.. autoclass:: pkg.Thing\n```\n"
    result = _build(tmp_path, page)
    assert result.returncode != 0
    missing = [line for line in result.stderr.splitlines() if "[public_api]" in line]
    # pkg.more.Thing is pkg.Thing, described: only the helper is missing.
    assert len(missing) == 1, result.stderr
    assert "public name pkg.helper is not in the API reference" in missing[0]


def test_every_public_name_described_builds_and_references_resolve(tmp_path: Path) -> None:
    page = """# API

```{eval-rst}
.. automodule:: pkg
   :members:

See :class:`pkg.more.Thing`, :class:`~pkg.more.Thing` and :func:`pkg.helper`.
```
"""
    result = _build(tmp_path, page)
    assert result.returncode == 0, result.stderr
    html = (tmp_path / "out" / "index.html").read_text()
    links = '<a class="reference internal" href="#pkg.{}"'
    assert html.count(links.format("Thing")) == 2
    assert html.count(links.format("helper")) == 1
