"""Sphinx configuration for the trio-ruts documentation site.

Build it with ``sphinx-build -W --keep-going -n -E -b html docs build/docs`` (the test command
does). The guides are the Markdown files beside this one, read by myst-parser, so they stay
readable on GitHub; ``index.md`` holds the table of contents and ``api.md`` the API reference,
generated from the docstrings by autodoc.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE.parent))

import trio_ruts  # noqa: E402
import trio_ruts.stores  # noqa: E402

# trio_ruts.stores imports RedisStore, PostgresStore and LayeredStore on first access; autodoc
# lists a module's members with dir(), so load them before it looks.
for _name in trio_ruts.stores.__all__:
    getattr(trio_ruts.stores, _name)

project = "trio-ruts"
author = "trio-ruts developers"
copyright = "trio-ruts developers"
release = trio_ruts.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # Google-style docstrings (STYLE.md)
    "sphinxcontrib_trio",  # async functions, async context managers, as trio documents them
    "myst_parser",
    "public_api",  # fails the build when a public name has no entry in the API reference
]

source_suffix = {".md": "markdown"}
root_doc = "index"
# Not pages: the build output, the checking extension, the benchmark figures' data.
exclude_patterns = ["_build", "_ext", "performance-results.json"]

# -- Markdown -----------------------------------------------------------------------------------
# Guides link to each other's sections as GitHub does (`ttl.md#per-field-ttls`).
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

# -- API reference ------------------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = True

# Every cross-reference must resolve (-n). The build runs without network, so there is no
# intersphinx inventory for the standard library, trio, Quart and the drivers: references into
# them are left as plain text instead of failing the build. References to trio_ruts itself are
# all checked.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(trio|trio_websocket|quart|quart_trio|hypercorn|werkzeug|flask|greenback)(\..*)?"),
    (r"py:.*", r"(redis|hiredis|asyncpg|trio_asyncio|cbor2|cryptography)(\..*)?"),
    # The standard library.
    (r"py:.*", rf"({'|'.join(sorted(sys.stdlib_module_names))})(\..*)?"),
    # Third-party names that autodoc renders unqualified in parameter types (imported under
    # `if TYPE_CHECKING:`, or from a package's submodule).
    (r"py:class", r"WebSocketConnection|QuartTrio"),
    # A private base shared by the two Quart integrations (how they run a store they opened).
    (r"py:class", r"trio_ruts\._quart_session\._StoreOwner"),
]

# -- HTML ---------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"trio-ruts {release}"
html_copy_source = False
html_show_sourcelink = False

# Checked by _ext/public_api.py: every name in these modules' __all__ is in the API reference.
public_api_modules = ["trio_ruts", "trio_ruts.stores", "trio_ruts.quart", "trio_ruts.websocket"]
