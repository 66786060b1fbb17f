"""The Redis store (``pip install trio-ruts[redis]``)."""

from ._store import RedisStore as RedisStore

__all__ = ["RedisStore"]
