"""The exception tree: every failure trio-ruts raises is a :class:`SessionError`."""

from __future__ import annotations


class SessionError(Exception):
    """Base class of every error raised by trio-ruts."""


class InvalidSessionId(SessionError, ValueError):
    """A text is not a session id this library could have issued."""


class InvalidField(SessionError, ValueError):
    """A field name or TTL that the session API does not accept."""


class SerializationError(SessionError):
    """A value could not be encoded, or stored bytes could not be decoded.

    Attributes:
        field: the session field concerned.
    """

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class StoreError(SessionError):
    """The store's backend is unreachable, refused the call, or broke its protocol."""


class StoreTimeout(StoreError):
    """A configured deadline (connect, hot layer, ...) passed before the store answered."""


class SessionIdCollision(SessionError):
    """A rename target already exists; both sessions were left as they were."""


class StoreNotOpen(SessionError, RuntimeError):
    """A store was used before ``async with store:`` opened it."""


class SessionStateError(SessionError, RuntimeError):
    """The session was used in a way its integration cannot honour (e.g. after the
    cookie could no longer be sent)."""


class SessionUsageError(SessionError, TypeError):
    """The session was used in a way its API does not offer (e.g. the async session proxy
    used like a dict); the message says what to write instead."""


class UsersNotSupported(SessionError, NotImplementedError):
    """The store keeps no per-user index (``Session.login`` and the other calls of SPEC
    section 9 need one); every store that ships with trio-ruts keeps one."""
