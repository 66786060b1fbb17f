"""Limits that every store shares, so that a value one store accepts works on all of them."""

from __future__ import annotations

from typing import Final

#: The longest lifetime, in seconds, that a field or a session may be given: ``2**31 - 1``
#: (about 68 years). Every store keeps lifetimes up to it exactly: it is the largest value of
#: PostgreSQL's ``integer``, and far inside Redis' limits (``PEXPIRE`` takes milliseconds as a
#: signed 64-bit number; ``HEXPIRE`` accepts absolute times below ``2**48`` ms). ``Session``
#: refuses longer field lifetimes with :class:`~trio_ruts.InvalidField`; use ``-1`` for "never
#: expires". A longer default lifetime (a cookie ``max_age``) is not refused: stores that
#: cannot represent it (PostgreSQL) keep it as ``MAX_TTL``.
MAX_TTL: Final = 2**31 - 1
