"""trio-ruts: Trio-native server-side HTTP sessions with per-field expiry."""

from ._cookies import CookieOptions as CookieOptions
from ._cookies import CookieOptionsBuilder as CookieOptionsBuilder
from ._encrypted import EncryptedSerializer as EncryptedSerializer
from ._errors import InvalidField as InvalidField
from ._errors import InvalidSessionId as InvalidSessionId
from ._errors import SerializationError as SerializationError
from ._errors import SessionError as SessionError
from ._errors import SessionIdCollision as SessionIdCollision
from ._errors import SessionStateError as SessionStateError
from ._errors import SessionUsageError as SessionUsageError
from ._errors import StoreError as StoreError
from ._errors import StoreNotOpen as StoreNotOpen
from ._errors import StoreTimeout as StoreTimeout
from ._errors import UsersNotSupported as UsersNotSupported
from ._expiry import Expiry as Expiry
from ._ids import SessionId as SessionId
from ._map import SessionMap as SessionMap
from ._serializers import CborSerializer as CborSerializer
from ._serializers import JsonSerializer as JsonSerializer
from ._serializers import Serializer as Serializer
from ._session import CookieChange as CookieChange
from ._session import Session as Session
from ._users import UserSession as UserSession
from .stores._memory import MemoryStore as MemoryStore

__version__ = "0.1.0.dev0"

__all__ = [
    "CborSerializer",
    "CookieChange",
    "CookieOptions",
    "CookieOptionsBuilder",
    "EncryptedSerializer",
    "Expiry",
    "InvalidField",
    "InvalidSessionId",
    "JsonSerializer",
    "MemoryStore",
    "SerializationError",
    "Serializer",
    "Session",
    "SessionError",
    "SessionId",
    "SessionIdCollision",
    "SessionMap",
    "SessionStateError",
    "SessionUsageError",
    "StoreError",
    "StoreNotOpen",
    "StoreTimeout",
    "UserSession",
    "UsersNotSupported",
]
