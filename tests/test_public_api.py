from __future__ import annotations

import subprocess
import sys

import trio_ruts
import trio_ruts.stores


def test_root_exports() -> None:
    assert set(trio_ruts.__all__) == {
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
    }
    for name in trio_ruts.__all__:
        assert getattr(trio_ruts, name) is not None


def test_error_tree() -> None:
    for name in (
        "InvalidSessionId",
        "InvalidField",
        "SerializationError",
        "StoreError",
        "StoreTimeout",
        "SessionIdCollision",
        "StoreNotOpen",
        "SessionStateError",
        "SessionUsageError",
        "UsersNotSupported",
    ):
        assert issubclass(getattr(trio_ruts, name), trio_ruts.SessionError)
    assert issubclass(trio_ruts.StoreTimeout, trio_ruts.StoreError)


def test_quart_exports() -> None:
    import trio_ruts.quart

    assert set(trio_ruts.quart.__all__) == {
        "ServerSession",
        "ServerSessionInterface",
        "Sessions",
        "session",
    }


def test_stores_exports() -> None:
    for name in trio_ruts.stores.__all__:
        assert getattr(trio_ruts.stores, name) is not None
    assert trio_ruts.stores.MemoryStore is trio_ruts.MemoryStore


def test_import_needs_only_trio_and_cbor2() -> None:
    code = (
        "import sys, trio_ruts, trio_ruts.stores;"
        "from trio_ruts.stores import MemoryStore, WriteThrough, HotOnly, ColdOnly;"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.split()
    third_party = set(out) - set(sys.stdlib_module_names) - {"trio_ruts"}
    trio_deps = {"trio", "outcome", "sniffio", "sortedcontainers", "idna", "attr", "attrs"}
    assert third_party - trio_deps - {"cbor2", "_cbor2"} <= {
        m for m in third_party if m.startswith("_") or m.startswith("__editable")
    }
    heavies = ("redis", "hiredis", "asyncpg", "trio_asyncio", "quart", "trio_websocket")
    for heavy in (*heavies, "cryptography"):
        assert heavy not in out
