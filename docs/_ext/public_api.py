"""Sphinx glue for the API reference (docs/api.md), and a check that it is complete.

- Every name in the ``__all__`` of the modules listed in ``public_api_modules`` (conf.py) must
  be described somewhere in the site, under that path or under another public path of the same
  object (``trio_ruts.MemoryStore`` is ``trio_ruts.stores.MemoryStore``). A missing one is a
  warning, which ``-W`` turns into a failed build: a name added to ``__all__`` cannot be
  forgotten here.
- A reference to one public path of an object resolves to wherever the object is described.
- Private base classes are replaced by their own bases in "Bases:", and a NamedTuple's
  generated field accessors are skipped (its docstring's ``Attributes:`` section describes
  the fields).
"""

from __future__ import annotations

import importlib
from typing import Any

from docutils import nodes
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging

logger = logging.getLogger(__name__)


def _public(modules: list[str]) -> dict[str, Any]:
    """Map each public dotted name to the object it names."""
    names: dict[str, Any] = {}
    for module_name in modules:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            names[f"{module_name}.{name}"] = getattr(module, name)
    return names


def _described_as(app: Sphinx, env: BuildEnvironment, name: str) -> str | None:
    """The path under which the object that public ``name`` names is described, if any."""
    public = _public(app.config.public_api_modules)
    described = env.get_domain("py").objects  # type: ignore[attr-defined]
    if name in described:
        return name
    if name not in public:
        return None
    for other in described:
        if other in public and public[other] is public[name]:
            return str(other)
    return None


def check(app: Sphinx, env: BuildEnvironment) -> None:
    for name in sorted(_public(app.config.public_api_modules)):
        if _described_as(app, env, name) is None:
            logger.warning(
                "public name %s is not in the API reference (add it to docs/api.md)",
                name,
                type="public_api",
                location="api",
            )


def resolve_alias(
    app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: nodes.TextElement
) -> nodes.reference | None:
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip("~.")
    # Try every split into a public name and an attribute path (Class.method).
    parts = target.split(".")
    for cut in range(len(parts), 0, -1):
        name = ".".join(parts[:cut])
        found = _described_as(app, env, name)
        if found is None or found == name:
            continue
        new_target = ".".join([found, *parts[cut:]])
        domain = env.get_domain("py")
        return domain.resolve_xref(
            env, node["refdoc"], app.builder, node["reftype"], new_target, node, contnode
        )
    return None


def drop_private_bases(app: Sphinx, name: str, obj: object, options: Any, bases: list[Any]) -> None:
    # A private base is an implementation detail: show what it derives from instead.
    shown: list[Any] = []
    pending = list(bases)
    while pending:
        base = pending.pop(0)
        if getattr(base, "__name__", "").startswith("_"):
            pending[:0] = list(getattr(base, "__bases__", ()))
        elif base not in shown:
            shown.append(base)
    bases[:] = shown


def skip_namedtuple_fields(
    app: Sphinx, what: str, name: str, obj: object, skip: bool, options: Any
) -> bool | None:
    if what == "class" and (getattr(obj, "__doc__", None) or "").startswith(
        "Alias for field number"
    ):
        return True
    return None


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("public_api_modules", [], "env", types=[list])
    app.connect("env-check-consistency", check)
    app.connect("missing-reference", resolve_alias)
    app.connect("autodoc-process-bases", drop_private_bases)
    app.connect("autodoc-skip-member", skip_namedtuple_fields)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
