"""Session stores. ``MemoryStore`` is always available; the others import their drivers only
when first used (``pip install trio-ruts[redis]`` / ``[postgres]``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._cache import CacheEntry as CacheEntry
from .._cache import CacheRead as CacheRead
from .._cache import HotLayer as HotLayer
from .._cache import Marker as Marker
from .._cache import Settled as Settled
from .._store import FieldRecord as FieldRecord
from .._store import Placement as Placement
from .._store import Read as Read
from .._store import Removal as Removal
from .._store import SessionRecord as SessionRecord
from .._store import SessionStore as SessionStore
from .._store import Touch as Touch
from .._store import Write as Write
from .._store import WriteResult as WriteResult
from .._strategy import ColdOnly as ColdOnly
from .._strategy import HotOnly as HotOnly
from .._strategy import WriteThrough as WriteThrough
from ._extras import lazy_attribute
from ._memory import MemoryStore as MemoryStore

if TYPE_CHECKING:
    from .layered import LayeredStore as LayeredStore
    from .postgres import PostgresStore as PostgresStore
    from .redis import RedisStore as RedisStore

# name -> module, imported on first attribute access so that no driver loads before it is used.
_LAZY: dict[str, str] = {
    "RedisStore": ".redis",
    "PostgresStore": ".postgres",
    "LayeredStore": ".layered",
}

__all__ = [
    "CacheEntry",
    "CacheRead",
    "ColdOnly",
    "FieldRecord",
    "HotLayer",
    "HotOnly",
    "LayeredStore",
    "Marker",
    "MemoryStore",
    "Placement",
    "PostgresStore",
    "Read",
    "RedisStore",
    "Removal",
    "SessionRecord",
    "SessionStore",
    "Settled",
    "Touch",
    "Write",
    "WriteResult",
    "WriteThrough",
]


def __getattr__(name: str) -> Any:
    return lazy_attribute(__name__, _LAZY, globals(), name)
