"""Drivers are imported when a store is built, not when its class is: a missing one is reported
with the extra that installs it."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


def require(store: str, extra: str, *modules: str) -> list[ModuleType]:
    """Import ``modules`` for ``store`` (e.g. ``"RedisStore.from_client"``).

    Raises:
        ModuleNotFoundError: one is not installed; the message names the pip extra.
    """
    loaded = []
    for name in modules:
        try:
            loaded.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name is None or exc.name.partition(".")[0] != name.partition(".")[0]:
                raise  # a module missing inside an installed driver is not ours to explain
            raise ModuleNotFoundError(
                f'{store} needs {name.partition(".")[0]}: pip install "trio-ruts[{extra}]"',
                name=exc.name,
            ) from exc
    return loaded


def lazy_attribute(
    package: str, table: dict[str, str], namespace: dict[str, Any], name: str
) -> Any:
    """A package's module ``__getattr__``: load ``name`` from the module ``table`` names (a
    relative module of ``package``) on first use and keep it in ``namespace``."""
    module = table.get(name)
    if module is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, package), name)
    namespace[name] = value
    return value
