"""The PostgreSQL store (``pip install trio-ruts[postgres]``)."""

from ._store import PostgresStore as PostgresStore

__all__ = ["PostgresStore"]
