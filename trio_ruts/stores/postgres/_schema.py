"""Identifiers, versioned migrations and the SQL of the Postgres store.

Two tables per store: ``{table}`` has one row per session (its expiry; ``infinity`` when
persistent) and ``{table}_fields`` one row per (session, field) with the field's own expiry
(``NULL``: lives with the session; ``infinity``: never) and hot-layer policy. Every index,
constraint and function name is prefixed by the table name, so two stores in one schema
never clash. Multi-step operations are PL/pgSQL functions: one round trip, one transaction,
serialized per session by a row lock. Times come from the database's ``now()``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

#: The longest schema or table name accepted (as the docs promise): with the longest suffix
#: the store derives from the table name, every object name stays within PostgreSQL's limit.
MAX_NAME: Final = 41
#: PostgreSQL truncates identifiers longer than this many bytes (NAMEDATALEN - 1).
PG_MAX_IDENTIFIER: Final = 63
_IDENT: Final = re.compile(rf"[A-Za-z_][A-Za-z0-9_]{{0,{MAX_NAME - 1}}}")
#: SQLSTATE our functions raise when a new session id is taken.
COLLISION_STATE: Final = "TR001"
#: SQLSTATEs our write raises when an increment finds no integer, or leaves signed 64 bits.
NOT_INT_STATE: Final = "TR002"
OVERFLOW_STATE: Final = "TR003"


def check_identifier(name: str, what: str) -> str:
    """Validate a schema or table name given by the user and return it double-quoted."""
    if not isinstance(name, str) or not _IDENT.fullmatch(name):
        raise ValueError(
            f"{what} {name!r} must be 1-{MAX_NAME} characters: letters, digits and _, not "
            f"starting with a digit"
        )
    return f'"{name}"'


@dataclass(frozen=True)
class Names:
    """Quoted, qualified names of one store's objects, derived from a validated table name.

    Derived names are the table name plus a suffix, exactly as every earlier release named
    them (existing tables keep their names). They are not validated again: the table name
    was, and :data:`MAX_NAME` leaves room for the longest suffix (``SUFFIXES``).
    """

    schema: str | None
    table: str

    def __post_init__(self) -> None:
        check_identifier(self.table, "table name")
        if self.schema is not None:
            check_identifier(self.schema, "schema")

    def q(self, suffix: str = "") -> str:
        """A qualified, quoted object name: ``"schema"."table<suffix>"``."""
        name = f'"{self.table}{suffix}"'
        return f'"{self.schema}".{name}' if self.schema else name

    def bare(self, suffix: str = "") -> str:
        """An unqualified, quoted name (indexes and constraints live in the table's schema)."""
        return f'"{self.table}{suffix}"'


# A session is live while its row has not expired and it has at least one live field.
_LIVE = """
CREATE OR REPLACE FUNCTION {live}(p_id bytea) RETURNS boolean
LANGUAGE sql STABLE AS $$
  SELECT EXISTS (
    SELECT 1 FROM {sessions} s JOIN {fields} f ON f.session_id = s.id
    WHERE s.id = p_id AND s.expires_at > now()
      AND (f.expires_at IS NULL OR f.expires_at > now()))
$$;
"""

_TTL = """
CREATE OR REPLACE FUNCTION {ttl}(p_at timestamptz) RETURNS integer
LANGUAGE sql STABLE AS $$
  SELECT CASE WHEN p_at = 'infinity' THEN -1
              ELSE greatest(1, ceil(extract(epoch FROM p_at - now())))::integer END
$$;
"""

_WRITE = """
CREATE OR REPLACE FUNCTION {write}(
  p_id bytea, p_fresh bytea, p_field text, p_value bytea, p_nx boolean, p_fttl integer,
  p_kttl integer, p_rename boolean, p_hot integer,
  OUT written boolean, OUT moved boolean, OUT ttl integer)
LANGUAGE plpgsql AS $$
DECLARE
  v_key bytea;
  v_has boolean := false;
  v_exp timestamptz;
  v_fexp timestamptz;
BEGIN
  IF p_id IS NOT NULL THEN
    PERFORM 1 FROM {sessions} WHERE id = p_id FOR UPDATE;
    v_has := {live}(p_id);
    IF NOT v_has THEN DELETE FROM {sessions} WHERE id = p_id; END IF;
  END IF;
  IF NOT v_has OR p_rename THEN
    PERFORM 1 FROM {sessions} WHERE id = p_fresh FOR UPDATE;
    IF {live}(p_fresh) THEN
      RAISE EXCEPTION 'the new session id is already in use' USING ERRCODE = '{collision}';
    END IF;
    DELETE FROM {sessions} WHERE id = p_fresh;
  END IF;
  IF v_has THEN
    DELETE FROM {fields} WHERE session_id = p_id AND expires_at <= now();
    IF p_rename THEN
      UPDATE {sessions} SET id = p_fresh WHERE id = p_id;
      v_key := p_fresh;
    ELSE
      v_key := p_id;
    END IF;
  ELSE
    INSERT INTO {sessions} (id, expires_at) VALUES (p_fresh, now());
    v_key := p_fresh;
  END IF;
  moved := v_key IS DISTINCT FROM p_id;
  v_fexp := CASE WHEN p_fttl IS NULL THEN NULL
                 WHEN p_fttl = -1 THEN 'infinity'::timestamptz
                 ELSE now() + make_interval(secs => p_fttl) END;
  IF p_nx THEN
    INSERT INTO {fields} (session_id, field, value, expires_at, hot_ttl)
    VALUES (v_key, p_field, p_value, v_fexp, p_hot) ON CONFLICT DO NOTHING;
    written := FOUND;
  ELSE
    INSERT INTO {fields} (session_id, field, value, expires_at, hot_ttl)
    VALUES (v_key, p_field, p_value, v_fexp, p_hot)
    ON CONFLICT (session_id, field) DO UPDATE
      SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at, hot_ttl = EXCLUDED.hot_ttl;
    written := true;
  END IF;
  IF written THEN
    -- Never shorter than max(current, default, field ttl); -1 anywhere persists the session.
    UPDATE {sessions} SET expires_at = greatest(expires_at,
        CASE WHEN p_kttl = -1 OR p_fttl = -1 THEN 'infinity'::timestamptz
             ELSE now() + make_interval(secs => greatest(p_kttl, coalesce(p_fttl, 0))) END)
      WHERE id = v_key RETURNING expires_at INTO v_exp;
  ELSE
    SELECT expires_at INTO v_exp FROM {sessions} WHERE id = v_key;
  END IF;
  ttl := {ttl}(v_exp);
END $$;
"""

# Version 2 of the write: the lock and the liveness test in one statement, only the written
# field's expired row cleared (and only for inserts, where it would block the write), the TTL
# computed in the UPDATE's RETURNING. About a third less server time than version 1.
_WRITE_V2 = """
CREATE OR REPLACE FUNCTION {write}(
  p_id bytea, p_fresh bytea, p_field text, p_value bytea, p_nx boolean, p_fttl integer,
  p_kttl integer, p_rename boolean, p_hot integer,
  OUT written boolean, OUT moved boolean, OUT ttl integer)
LANGUAGE plpgsql AS $$
DECLARE
  v_key bytea;
  v_has boolean;
  v_fexp timestamptz;
BEGIN
  IF p_id IS NOT NULL THEN
    -- Lock the session row and see whether it is live, in one statement.
    SELECT s.expires_at > now() AND EXISTS (
        SELECT 1 FROM {fields} f WHERE f.session_id = p_id
          AND (f.expires_at IS NULL OR f.expires_at > now()))
      INTO v_has FROM {sessions} s WHERE s.id = p_id FOR UPDATE;
    IF v_has IS NULL THEN
      v_has := false;
    ELSIF NOT v_has THEN
      DELETE FROM {sessions} WHERE id = p_id;
    END IF;
  ELSE
    v_has := false;
  END IF;
  IF NOT v_has OR p_rename THEN
    PERFORM 1 FROM {sessions} WHERE id = p_fresh FOR UPDATE;
    IF {live}(p_fresh) THEN
      RAISE EXCEPTION 'the new session id is already in use' USING ERRCODE = '{collision}';
    END IF;
    DELETE FROM {sessions} WHERE id = p_fresh;
  END IF;
  IF v_has THEN
    IF p_rename THEN
      UPDATE {sessions} SET id = p_fresh WHERE id = p_id;
      v_key := p_fresh;
    ELSE
      v_key := p_id;
    END IF;
  ELSE
    INSERT INTO {sessions} (id, expires_at) VALUES (p_fresh, now());
    v_key := p_fresh;
  END IF;
  moved := v_key IS DISTINCT FROM p_id;
  v_fexp := CASE WHEN p_fttl IS NULL THEN NULL
                 WHEN p_fttl = -1 THEN 'infinity'::timestamptz
                 ELSE now() + make_interval(secs => p_fttl) END;
  IF p_nx THEN
    -- An expired field still in the table counts as absent.
    DELETE FROM {fields} WHERE session_id = v_key AND field = p_field AND expires_at <= now();
    INSERT INTO {fields} (session_id, field, value, expires_at, hot_ttl)
    VALUES (v_key, p_field, p_value, v_fexp, p_hot) ON CONFLICT DO NOTHING;
    written := FOUND;
  ELSE
    INSERT INTO {fields} (session_id, field, value, expires_at, hot_ttl)
    VALUES (v_key, p_field, p_value, v_fexp, p_hot)
    ON CONFLICT (session_id, field) DO UPDATE
      SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at, hot_ttl = EXCLUDED.hot_ttl;
    written := true;
  END IF;
  IF written THEN
    -- Never shorter than max(current, default, field ttl); -1 anywhere persists the session.
    UPDATE {sessions} SET expires_at = greatest(expires_at,
        CASE WHEN p_kttl = -1 OR p_fttl = -1 THEN 'infinity'::timestamptz
             ELSE now() + make_interval(secs => greatest(p_kttl, coalesce(p_fttl, 0))) END)
      WHERE id = v_key RETURNING {ttl}(expires_at) INTO ttl;
  ELSE
    SELECT {ttl}(expires_at) INTO ttl FROM {sessions} WHERE id = v_key;
  END IF;
END $$;
"""

_REMOVE = """
CREATE OR REPLACE FUNCTION {remove}(p_id bytea, p_field text,
  OUT removed boolean, OUT ttl integer)
LANGUAGE plpgsql AS $$
DECLARE v_exp timestamptz;
BEGIN
  SELECT expires_at INTO v_exp FROM {sessions} WHERE id = p_id FOR UPDATE;
  IF NOT {live}(p_id) THEN
    removed := false;
    RETURN;
  END IF;
  DELETE FROM {fields} WHERE session_id = p_id AND field = p_field
    AND (expires_at IS NULL OR expires_at > now());
  removed := FOUND;
  IF {live}(p_id) THEN
    ttl := {ttl}(v_exp);
  ELSE
    DELETE FROM {sessions} WHERE id = p_id;
  END IF;
END $$;
"""

_DELETE = """
CREATE OR REPLACE FUNCTION {delete}(p_id bytea) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE v_live boolean;
BEGIN
  PERFORM 1 FROM {sessions} WHERE id = p_id FOR UPDATE;
  v_live := {live}(p_id);
  DELETE FROM {sessions} WHERE id = p_id;
  RETURN v_live;
END $$;
"""

_EXPIRE = """
CREATE OR REPLACE FUNCTION {expire}(p_id bytea, p_seconds integer) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM 1 FROM {sessions} WHERE id = p_id FOR UPDATE;
  IF NOT {live}(p_id) THEN RETURN false; END IF;
  IF p_seconds = 0 THEN
    DELETE FROM {sessions} WHERE id = p_id;
  ELSE
    UPDATE {sessions} SET expires_at = CASE WHEN p_seconds = -1 THEN 'infinity'::timestamptz
                                       ELSE now() + make_interval(secs => p_seconds) END
      WHERE id = p_id;
  END IF;
  RETURN true;
END $$;
"""

_RENAME = """
CREATE OR REPLACE FUNCTION {rename}(p_old bytea, p_new bytea) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE v_exp timestamptz;
BEGIN
  SELECT expires_at INTO v_exp FROM {sessions} WHERE id = p_old FOR UPDATE;
  IF NOT {live}(p_old) THEN RETURN NULL; END IF;
  PERFORM 1 FROM {sessions} WHERE id = p_new FOR UPDATE;
  IF {live}(p_new) THEN
    RAISE EXCEPTION 'the new session id is already in use' USING ERRCODE = '{collision}';
  END IF;
  DELETE FROM {sessions} WHERE id = p_new;
  UPDATE {sessions} SET id = p_new WHERE id = p_old;
  RETURN {ttl}(v_exp);
END $$;
"""

_DELETE_EXPIRED = """
CREATE OR REPLACE FUNCTION {delete_expired}() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE v_count integer;
BEGIN
  DELETE FROM {fields} WHERE expires_at <= now();
  DELETE FROM {sessions} s WHERE s.expires_at <= now()
    OR NOT EXISTS (SELECT 1 FROM {fields} f WHERE f.session_id = s.id);
  GET DIAGNOSTICS v_count = ROW_COUNT;
  RETURN v_count;
END $$;
"""

# Version 3: a session id is claimed, never taken by deleting what another transaction just
# committed. Versions 1 and 2 checked that the target id was free, then ran `DELETE ... WHERE
# id = target` in a later statement, whose newer snapshot could see (and delete) a session
# created meanwhile: two creates at one id both succeeded and one was lost. Now a row at the
# target is deleted only while locked and after a statement begun under that lock found it
# dead; a free id is claimed by an INSERT (or by the renaming UPDATE), whose unique index
# makes concurrent claimants wait for each other: one wins, the others raise a collision (a
# unique violation on {table}_pkey, from the renaming UPDATE, is reported as one too).
_WRITE_V3 = """
CREATE OR REPLACE FUNCTION {write}(
  p_id bytea, p_fresh bytea, p_field text, p_value bytea, p_nx boolean, p_fttl integer,
  p_kttl integer, p_rename boolean, p_hot integer,
  OUT written boolean, OUT moved boolean, OUT ttl integer)
LANGUAGE plpgsql AS $$
DECLARE
  v_key bytea;
  v_has boolean;
  v_fexp timestamptz;
BEGIN
  IF p_id IS NOT NULL THEN
    -- Lock the session row and see whether it is live, in one statement. A dead row is left
    -- to the sweep.
    SELECT s.expires_at > now() AND EXISTS (
        SELECT 1 FROM {fields} f WHERE f.session_id = p_id
          AND (f.expires_at IS NULL OR f.expires_at > now()))
      INTO v_has FROM {sessions} s WHERE s.id = p_id FOR UPDATE;
    IF NOT coalesce(v_has, false) THEN
      -- An id the store does not hold is never adopted: nothing is written (ttl NULL), and
      -- the caller creates the session again under a wholly fresh id.
      written := false;
      moved := false;
      RETURN;
    END IF;
  END IF;
  IF NOT coalesce(v_has, false) THEN
    -- A new session at p_fresh: insert its row, or take over a dead row found there.
    FOR attempt IN 1..10 LOOP
      INSERT INTO {sessions} (id, expires_at) VALUES (p_fresh, now())
        ON CONFLICT (id) DO NOTHING;
      IF FOUND THEN
        v_key := p_fresh;
        EXIT;
      END IF;
      PERFORM 1 FROM {sessions} WHERE id = p_fresh FOR UPDATE;
      CONTINUE WHEN NOT FOUND;  -- deleted since the INSERT saw it: claim again
      IF NOT {live}(p_fresh) THEN
        DELETE FROM {sessions} WHERE id = p_fresh;  -- dead, and locked by us
        INSERT INTO {sessions} (id, expires_at) VALUES (p_fresh, now());
      ELSE
        RAISE EXCEPTION 'the new session id is already in use' USING ERRCODE = '{collision}';
      END IF;
      v_key := p_fresh;
      EXIT;
    END LOOP;
    IF v_key IS NULL THEN
      RAISE EXCEPTION 'the new session id is already in use' USING ERRCODE = '{collision}';
    END IF;
  ELSIF p_rename THEN
    PERFORM 1 FROM {sessions} WHERE id = p_fresh FOR UPDATE;
    IF FOUND THEN
      IF {live}(p_fresh) THEN
        RAISE EXCEPTION 'the new session id is already in use' USING ERRCODE = '{collision}';
      END IF;
      DELETE FROM {sessions} WHERE id = p_fresh;  -- dead, and locked by us
    END IF;
    UPDATE {sessions} SET id = p_fresh WHERE id = p_id;
    v_key := p_fresh;
  ELSE
    v_key := p_id;
  END IF;
  moved := v_key IS DISTINCT FROM p_id;
  v_fexp := CASE WHEN p_fttl IS NULL THEN NULL
                 WHEN p_fttl = -1 THEN 'infinity'::timestamptz
                 ELSE now() + make_interval(secs => p_fttl) END;
  IF p_nx THEN
    -- An expired field still in the table counts as absent.
    DELETE FROM {fields} WHERE session_id = v_key AND field = p_field AND expires_at <= now();
    INSERT INTO {fields} (session_id, field, value, expires_at, hot_ttl)
    VALUES (v_key, p_field, p_value, v_fexp, p_hot) ON CONFLICT DO NOTHING;
    written := FOUND;
  ELSE
    INSERT INTO {fields} (session_id, field, value, expires_at, hot_ttl)
    VALUES (v_key, p_field, p_value, v_fexp, p_hot)
    ON CONFLICT (session_id, field) DO UPDATE
      SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at, hot_ttl = EXCLUDED.hot_ttl;
    written := true;
  END IF;
  IF written THEN
    -- Never shorter than max(current, default, field ttl); -1 anywhere persists the session.
    UPDATE {sessions} SET expires_at = greatest(expires_at,
        CASE WHEN p_kttl = -1 OR p_fttl = -1 THEN 'infinity'::timestamptz
             ELSE now() + make_interval(secs => greatest(p_kttl, coalesce(p_fttl, 0))) END)
      WHERE id = v_key RETURNING {ttl}(expires_at) INTO ttl;
  ELSE
    SELECT {ttl}(expires_at) INTO ttl FROM {sessions} WHERE id = v_key;
  END IF;
END $$;
"""

_RENAME_V3 = """
CREATE OR REPLACE FUNCTION {rename}(p_old bytea, p_new bytea) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE v_exp timestamptz;
BEGIN
  SELECT expires_at INTO v_exp FROM {sessions} WHERE id = p_old FOR UPDATE;
  IF NOT FOUND OR NOT {live}(p_old) THEN RETURN NULL; END IF;
  PERFORM 1 FROM {sessions} WHERE id = p_new FOR UPDATE;
  IF FOUND THEN
    IF {live}(p_new) THEN
      RAISE EXCEPTION 'the new session id is already in use' USING ERRCODE = '{collision}';
    END IF;
    DELETE FROM {sessions} WHERE id = p_new;  -- dead, and locked by us
  END IF;
  UPDATE {sessions} SET id = p_new WHERE id = p_old;
  RETURN {ttl}(v_exp);
END $$;
"""

# A session absent when the lock was tried is not deleted: one created at that id since then
# is newer than this delete and stays.
_DELETE_V3 = """
CREATE OR REPLACE FUNCTION {delete}(p_id bytea) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE v_live boolean;
BEGIN
  PERFORM 1 FROM {sessions} WHERE id = p_id FOR UPDATE;
  IF NOT FOUND THEN RETURN false; END IF;
  v_live := {live}(p_id);
  DELETE FROM {sessions} WHERE id = p_id;
  RETURN v_live;
END $$;
"""

# The sweep locks its candidates, then decides in a later statement. Version 1 decided in the
# DELETE itself: when it waited for a writer's lock, its recheck judged the session by fields
# it could not see (its snapshot predates the writer's commit) and deleted a live session.
# SKIP LOCKED leaves a session being written to the next sweep instead of waiting for it.
_DELETE_EXPIRED_V3 = """
CREATE OR REPLACE FUNCTION {delete_expired}() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  v_ids bytea[];
  v_count integer;
BEGIN
  DELETE FROM {fields} WHERE expires_at <= now();
  SELECT array_agg(c.id) INTO v_ids FROM (
    SELECT s.id FROM {sessions} s WHERE s.expires_at <= now()
      OR NOT EXISTS (SELECT 1 FROM {fields} f WHERE f.session_id = s.id)
    FOR UPDATE SKIP LOCKED) c;
  DELETE FROM {sessions} s WHERE s.id = ANY (v_ids) AND (s.expires_at <= now()
    OR NOT EXISTS (SELECT 1 FROM {fields} f WHERE f.session_id = s.id));
  GET DIAGNOSTICS v_count = ROW_COUNT;
  RETURN v_count;
END $$;
"""

# Version 4: atomic field operations. The remove returns the removed value (for pop); the
# write takes an expected value (compare and set, for update_if) and an increment (incr),
# returning the value it computed. A
# function's OUT parameters cannot change with CREATE OR REPLACE: it is dropped and created
# again under the same name, inside the migration's transaction.
_REMOVE_V4 = """
DROP FUNCTION {remove}(bytea, text);
CREATE FUNCTION {remove}(p_id bytea, p_field text,
  OUT removed boolean, OUT ttl integer, OUT value bytea)
LANGUAGE plpgsql AS $$
DECLARE
  v_exp timestamptz;
  v_live boolean;
BEGIN
  -- Lock the session row and see whether it is live, in one statement (as the write does).
  SELECT s.expires_at, s.expires_at > now() AND EXISTS (
      SELECT 1 FROM {fields} f WHERE f.session_id = p_id
        AND (f.expires_at IS NULL OR f.expires_at > now()))
    INTO v_exp, v_live FROM {sessions} s WHERE s.id = p_id FOR UPDATE;
  IF NOT coalesce(v_live, false) THEN
    removed := false;
    RETURN;
  END IF;
  DELETE FROM {fields} f WHERE f.session_id = p_id AND f.field = p_field
    AND (f.expires_at IS NULL OR f.expires_at > now())
    RETURNING f.value INTO value;
  removed := FOUND;
  -- Only a removal can have ended the session.
  IF NOT removed OR EXISTS (SELECT 1 FROM {fields} f WHERE f.session_id = p_id
      AND (f.expires_at IS NULL OR f.expires_at > now())) THEN
    ttl := {ttl}(v_exp);
  ELSE
    DELETE FROM {sessions} WHERE id = p_id;
  END IF;
END $$;
"""

# Integers for incr, as trio_ruts._ints defines them: CBOR major type 0/1 with a 0-8 byte
# argument (encoded in the shortest form), or JSON decimal text; NULL: not an integer.
_INT_DECODE = """
CREATE FUNCTION {int_decode}(p_value bytea, p_format text) RETURNS numeric
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
  v_head integer;
  v_size integer;
  v_arg numeric := 0;
  v_text text;
BEGIN
  IF p_format = 'json' THEN
    IF length(p_value) > 21 THEN RETURN NULL; END IF;
    v_text := encode(p_value, 'escape');  -- bytes outside ASCII become escapes: no match
    IF v_text !~ '^-?(0|[1-9][0-9]*)$' THEN RETURN NULL; END IF;
    RETURN v_text::numeric;
  END IF;
  IF length(p_value) = 0 THEN RETURN NULL; END IF;
  v_head := get_byte(p_value, 0);
  IF v_head >= 64 THEN RETURN NULL; END IF;  -- major types 0 and 1 only
  v_size := CASE WHEN v_head % 32 < 24 THEN 0 WHEN v_head % 32 = 24 THEN 1
                 WHEN v_head % 32 = 25 THEN 2 WHEN v_head % 32 = 26 THEN 4
                 WHEN v_head % 32 = 27 THEN 8 END;
  IF v_size IS NULL OR length(p_value) <> 1 + v_size THEN RETURN NULL; END IF;
  IF v_size = 0 THEN
    v_arg := v_head % 32;
  ELSE
    FOR i IN 1..v_size LOOP
      v_arg := v_arg * 256 + get_byte(p_value, i);
    END LOOP;
  END IF;
  RETURN CASE WHEN v_head >= 32 THEN -1 - v_arg ELSE v_arg END;
END $$;
"""

_INT_ENCODE = """
CREATE FUNCTION {int_encode}(p_n bigint, p_format text) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
  v_major integer := 0;
  v_arg bigint := p_n;  -- -1 - p_n fits too: the argument of an int64 is below 2^63
BEGIN
  IF p_format = 'json' THEN RETURN convert_to(p_n::text, 'UTF8'); END IF;
  IF p_n < 0 THEN
    v_major := 32;
    v_arg := -1 - p_n;
  END IF;
  IF v_arg < 24 THEN RETURN set_byte('\\x00'::bytea, 0, v_major + v_arg::integer); END IF;
  IF v_arg < 256 THEN
    RETURN set_byte('\\x00'::bytea, 0, v_major + 24) || substring(int8send(v_arg) FROM 8);
  ELSIF v_arg < 65536 THEN
    RETURN set_byte('\\x00'::bytea, 0, v_major + 25) || substring(int8send(v_arg) FROM 7);
  ELSIF v_arg < 4294967296 THEN
    RETURN set_byte('\\x00'::bytea, 0, v_major + 26) || substring(int8send(v_arg) FROM 5);
  END IF;
  RETURN set_byte('\\x00'::bytea, 0, v_major + 27) || int8send(v_arg);
END $$;
"""

_WRITE_V4 = """
DROP FUNCTION {write}(bytea, bytea, text, bytea, boolean, integer, integer, boolean, integer);
CREATE FUNCTION {write}(
  p_id bytea, p_fresh bytea, p_field text, p_value bytea, p_nx boolean, p_fttl integer,
  p_kttl integer, p_rename boolean, p_hot integer, p_expected bytea DEFAULT NULL,
  p_incr bigint DEFAULT NULL, p_int_format text DEFAULT NULL,
  OUT written boolean, OUT moved boolean, OUT ttl integer, OUT value bytea)
LANGUAGE plpgsql AS $$
DECLARE
  v_key bytea;
  v_has boolean;
  v_fexp timestamptz;
  v_value bytea := p_value;
  v_n numeric;
BEGIN
  IF p_id IS NOT NULL THEN
    -- Lock the session row and see whether it is live, in one statement. A dead row is left
    -- to the sweep.
    SELECT s.expires_at > now() AND EXISTS (
        SELECT 1 FROM {fields} f WHERE f.session_id = p_id
          AND (f.expires_at IS NULL OR f.expires_at > now()))
      INTO v_has FROM {sessions} s WHERE s.id = p_id FOR UPDATE;
    IF NOT coalesce(v_has, false) THEN
      -- An id the store does not hold is never adopted: nothing is written (ttl NULL), and
      -- the caller creates the session again under a wholly fresh id.
      written := false;
      moved := false;
      RETURN;
    END IF;
  END IF;
  IF p_incr IS NOT NULL THEN
    -- An increment, decided before anything changes (a RAISE undoes the whole call anyway).
    v_n := 0;
    IF v_has THEN
      SELECT f.value INTO v_value FROM {fields} f WHERE f.session_id = p_id
        AND f.field = p_field AND (f.expires_at IS NULL OR f.expires_at > now());
      IF FOUND THEN
        v_n := {int_decode}(v_value, p_int_format);
        IF v_n IS NULL OR v_n NOT BETWEEN -9223372036854775808 AND 9223372036854775807 THEN
          RAISE EXCEPTION 'the field does not hold a signed 64-bit integer'
            USING ERRCODE = '{not_int}';
        END IF;
      END IF;
    END IF;
    v_n := v_n + p_incr;
    IF v_n NOT BETWEEN -9223372036854775808 AND 9223372036854775807 THEN
      RAISE EXCEPTION 'the result does not fit in signed 64 bits' USING ERRCODE = '{overflow}';
    END IF;
    v_value := {int_encode}(v_n::bigint, p_int_format);
    value := v_value;
  END IF;
  IF NOT coalesce(v_has, false) THEN
    -- A new session at p_fresh: insert its row, or take over a dead row found there.
    FOR attempt IN 1..10 LOOP
      INSERT INTO {sessions} (id, expires_at) VALUES (p_fresh, now())
        ON CONFLICT (id) DO NOTHING;
      IF FOUND THEN
        v_key := p_fresh;
        EXIT;
      END IF;
      PERFORM 1 FROM {sessions} WHERE id = p_fresh FOR UPDATE;
      CONTINUE WHEN NOT FOUND;  -- deleted since the INSERT saw it: claim again
      IF NOT {live}(p_fresh) THEN
        DELETE FROM {sessions} WHERE id = p_fresh;  -- dead, and locked by us
        INSERT INTO {sessions} (id, expires_at) VALUES (p_fresh, now());
      ELSE
        RAISE EXCEPTION 'the new session id is already in use' USING ERRCODE = '{collision}';
      END IF;
      v_key := p_fresh;
      EXIT;
    END LOOP;
    IF v_key IS NULL THEN
      RAISE EXCEPTION 'the new session id is already in use' USING ERRCODE = '{collision}';
    END IF;
  ELSIF p_rename THEN
    PERFORM 1 FROM {sessions} WHERE id = p_fresh FOR UPDATE;
    IF FOUND THEN
      IF {live}(p_fresh) THEN
        RAISE EXCEPTION 'the new session id is already in use' USING ERRCODE = '{collision}';
      END IF;
      DELETE FROM {sessions} WHERE id = p_fresh;  -- dead, and locked by us
    END IF;
    UPDATE {sessions} SET id = p_fresh WHERE id = p_id;
    v_key := p_fresh;
  ELSE
    v_key := p_id;
  END IF;
  moved := v_key IS DISTINCT FROM p_id;
  v_fexp := CASE WHEN p_fttl IS NULL THEN NULL
                 WHEN p_fttl = -1 THEN 'infinity'::timestamptz
                 ELSE now() + make_interval(secs => p_fttl) END;
  IF p_nx THEN
    -- An expired field still in the table counts as absent.
    DELETE FROM {fields} WHERE session_id = v_key AND field = p_field AND expires_at <= now();
    INSERT INTO {fields} (session_id, field, value, expires_at, hot_ttl)
    VALUES (v_key, p_field, v_value, v_fexp, p_hot) ON CONFLICT DO NOTHING;
    written := FOUND;
  ELSIF p_expected IS NOT NULL THEN
    -- Compare and set: only a live field whose bytes equal p_expected (the session row's
    -- lock serializes this with every other change of the session).
    UPDATE {fields} f SET value = v_value, expires_at = v_fexp, hot_ttl = p_hot
      WHERE f.session_id = v_key AND f.field = p_field AND f.value = p_expected
        AND (f.expires_at IS NULL OR f.expires_at > now());
    written := FOUND;
  ELSE
    INSERT INTO {fields} (session_id, field, value, expires_at, hot_ttl)
    VALUES (v_key, p_field, v_value, v_fexp, p_hot)
    ON CONFLICT (session_id, field) DO UPDATE
      SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at, hot_ttl = EXCLUDED.hot_ttl;
    written := true;
  END IF;
  IF written THEN
    -- Never shorter than max(current, default, field ttl); -1 anywhere persists the session.
    UPDATE {sessions} SET expires_at = greatest(expires_at,
        CASE WHEN p_kttl = -1 OR p_fttl = -1 THEN 'infinity'::timestamptz
             ELSE now() + make_interval(secs => greatest(p_kttl, coalesce(p_fttl, 0))) END)
      WHERE id = v_key RETURNING {ttl}(expires_at) INTO ttl;
  ELSE
    SELECT {ttl}(expires_at) INTO ttl FROM {sessions} WHERE id = v_key;
  END IF;
END $$;
"""

# Version stamps of writes and removals (WriteResult.version, Removal.version): the query
# draws one after the function returned, so after it locked the session row, and the row lock
# orders the stamps of one session as its changes commit. One sequence for every session: an
# id used again never repeats a stamp.
_SEQ_V5 = """
CREATE SEQUENCE {seq} AS bigint;
"""

# Version 6: lifetimes (idle timeout, absolute cap). Each session row records its creation
# time, which renames keep (they change only the id); sessions of earlier versions get the
# migration's time, so their absolute cap counts from the upgrade.
_CREATED_V6 = """
ALTER TABLE {sessions} ADD COLUMN created_at timestamptz NOT NULL DEFAULT now();
"""


# A touch of a live session by a read (idle and cap in whole seconds, below in seconds): its
# new ttl, or NULL when it extended nothing. Touching reads call it only for a session whose
# lifetime is already below the touch threshold (most reads do not), so a read that extends
# nothing runs no data-modifying statement at all; the UPDATE checks everything again on the
# row it locks. PL/pgSQL, so that the UPDATE's plan is cached per connection.
_TOUCH_V7 = """
CREATE FUNCTION {touch}(p_id bytea, p_idle integer, p_below float8, p_cap integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  v_ttl integer;
BEGIN
  UPDATE {sessions} s SET expires_at = least(now() + make_interval(secs => p_idle),
      CASE WHEN p_cap IS NULL THEN 'infinity'::timestamptz
           ELSE s.created_at + make_interval(secs => p_cap) END)
    WHERE s.id = p_id AND s.expires_at > now()
      AND s.expires_at < now() + make_interval(secs => p_below)
      AND s.expires_at < least(now() + make_interval(secs => p_idle),
        CASE WHEN p_cap IS NULL THEN 'infinity'::timestamptz
             ELSE s.created_at + make_interval(secs => p_cap) END)
      AND EXISTS (SELECT 1 FROM {fields} f WHERE f.session_id = s.id
        AND (f.expires_at IS NULL OR f.expires_at > now()))
    RETURNING {ttl}(s.expires_at) INTO v_ttl;
  RETURN v_ttl;
END
$$;
"""

# Version 11: the touch of a read that found its field live (p_live), the usual case. Then
# the session is live (no EXISTS over its fields), and without a cap the new lifetime is idle
# exactly (no RETURNING): an UPDATE of the row by its key with the threshold checked again on
# the row it locks. Otherwise version 7's function does the whole check. Extending a session
# whose last field a concurrent change ended since the read's snapshot keeps it dead: a
# session lives only while it has a live field. Version 7's function stays (it serves the
# general case, and processes of the previous release during an upgrade).
_TOUCH_V11 = """
CREATE FUNCTION {touch}(p_id bytea, p_idle integer, p_below float8, p_cap integer,
  p_live boolean)
RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
  IF p_live AND p_cap IS NULL THEN
    UPDATE {sessions} SET expires_at = now() + make_interval(secs => p_idle)
      WHERE id = p_id AND expires_at > now()
        AND expires_at < now() + make_interval(secs => least(p_below, p_idle));
    IF FOUND THEN RETURN p_idle; END IF;
    RETURN NULL;
  END IF;
  RETURN {touch}(p_id, p_idle, p_below, p_cap);
END
$$;
"""

# Version 8: protection at rest. Sessions are addressed by the SHA-256 of their id (see
# trio_ruts._ids.id_digest), never by the id: rows written by earlier versions (16-byte ids)
# get their digest, and their fields follow through the foreign key's ON UPDATE CASCADE. A
# digest is 32 bytes, so it never collides with an id still to rewrite.
_DIGEST_IDS_V8 = """
UPDATE {sessions} SET id = sha256(id) WHERE length(id) = 16;
"""


# Version 10: live revocation (SPEC section 10). A row trigger announces, in the transaction
# that ends a session, that it ended: NOTIFY is delivered at commit, so a listener never hears
# of a change that rolled back. The payload is "<digest> <reason>", the digest being the
# first 32 hex digits of the row's id, which is the SHA-256 of the session id since version 8
# (trio_ruts._watch.watch_digest);
# the channel is "<table>_watch". A caller that knows better than "deleted" (a revocation)
# sets trio_ruts.watch_reason for its transaction; a row past its expiry reads "expired".
_WATCH_V10 = """
CREATE FUNCTION {watch_notify}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE v_reason text;
BEGIN
  IF TG_OP = 'UPDATE' THEN
    IF NEW.id = OLD.id THEN RETURN NULL; END IF;
    v_reason := 'renamed';
  ELSE
    v_reason := nullif(current_setting('trio_ruts.watch_reason', true), '');
    IF v_reason IS NULL THEN
      v_reason := CASE WHEN OLD.expires_at <= now() THEN 'expired' ELSE 'deleted' END;
    END IF;
  END IF;
  PERFORM pg_notify(TG_TABLE_NAME || '_watch',
    left(encode(OLD.id, 'hex'), 32) || ' ' || v_reason);
  RETURN NULL;
END
$$;
CREATE TRIGGER {watch_trigger} AFTER DELETE OR UPDATE OF id ON {sessions}
  FOR EACH ROW EXECUTE FUNCTION {watch_notify}();
"""


def _patched(base: str, *changes: tuple[str, str]) -> str:
    """``base`` with each ``(old, new)`` applied; each ``old`` must occur exactly once, so a
    change to ``base`` that moves one of them fails loudly at import."""
    for old, new in changes:
        if base.count(old) != 1:
            raise AssertionError(f"the SQL to patch must hold exactly one {old[:60]!r}")
        base = base.replace(old, new)
    return base


# Version 12: a session that lives on but may end sooner than its watches think is announced
# as "<digest> recheck" (its watches read it again): a session row whose expiry moved earlier
# (expire, a cap; "expired" when it moved into the past), a field whose own end moved earlier
# (a write giving it a lifetime, or a shorter one), and, in the remove function, the removal
# of a field while the session lives on. The triggers' WHEN clauses keep the usual updates
# (touches, writes that extend) from calling anything.
_WATCH_RECHECK_V12 = """
CREATE FUNCTION {watch_recheck}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_ARGV[0] = 'session' THEN
    PERFORM pg_notify('{watch_channel}', left(encode(NEW.id, 'hex'), 32)
      || CASE WHEN NEW.expires_at <= now() THEN ' expired' ELSE ' recheck' END);
  ELSE
    PERFORM pg_notify('{watch_channel}', left(encode(NEW.session_id, 'hex'), 32) || ' recheck');
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER {watch_shorter_trigger} AFTER UPDATE OF expires_at ON {sessions}
  FOR EACH ROW WHEN (NEW.expires_at < OLD.expires_at AND NEW.id = OLD.id)
  EXECUTE FUNCTION {watch_recheck}('session');
CREATE TRIGGER {fields_watch_trigger} AFTER UPDATE OF expires_at ON {fields}
  FOR EACH ROW WHEN (NEW.expires_at < coalesce(OLD.expires_at, 'infinity'))
  EXECUTE FUNCTION {watch_recheck}('field');
"""
_REMOVE_V12 = _patched(
    _REMOVE_V4,
    ("DROP FUNCTION {remove}(bytea, text);\nCREATE FUNCTION", "CREATE OR REPLACE FUNCTION"),
    (
        "    ttl := {ttl}(v_exp);\n",
        "    ttl := {ttl}(v_exp);\n"
        "    IF removed THEN -- without the field, the session may end sooner\n"
        "      PERFORM pg_notify('{watch_channel}', left(encode(p_id, 'hex'), 32) || ' recheck');\n"
        "    END IF;\n",
    ),
)


# The write of version 6 is version 4's with three changes, each marked "Lifetimes": it takes
# the absolute cap (p_absolute, seconds or NULL), treats a session past it as absent (and
# deletes it), and caps the lifetime it computes, -1 included.
_WRITE_V6 = _patched(
    _WRITE_V4,
    (
        "DROP FUNCTION {write}(bytea, bytea, text, bytea, boolean, integer, integer, boolean, "
        "integer);",
        "DROP FUNCTION {write}(bytea, bytea, text, bytea, boolean, integer, integer, boolean, "
        "integer,\n  bytea, bigint, text);",
    ),
    (
        "p_int_format text DEFAULT NULL,\n",
        "p_int_format text DEFAULT NULL,\n  p_absolute integer DEFAULT NULL,\n",
    ),
    (
        "  IF p_incr IS NOT NULL THEN\n",
        """  -- Lifetimes: a session past its absolute lifetime is gone.
  IF v_has AND p_absolute IS NOT NULL AND (SELECT s.created_at FROM {sessions} s
      WHERE s.id = p_id) + make_interval(secs => p_absolute) <= now() THEN
    DELETE FROM {sessions} WHERE id = p_id;
    written := false;
    moved := false;
    RETURN;
  END IF;
  IF p_incr IS NOT NULL THEN
""",
    ),
    (
        """    UPDATE {sessions} SET expires_at = greatest(expires_at,
        CASE WHEN p_kttl = -1 OR p_fttl = -1 THEN 'infinity'::timestamptz
             ELSE now() + make_interval(secs => greatest(p_kttl, coalesce(p_fttl, 0))) END)
      WHERE id = v_key RETURNING {ttl}(expires_at) INTO ttl;""",
        """    UPDATE {sessions} SET expires_at = least(greatest(expires_at,
        CASE WHEN p_kttl = -1 OR p_fttl = -1 THEN 'infinity'::timestamptz
             ELSE now() + make_interval(secs => greatest(p_kttl, coalesce(p_fttl, 0))) END),
        -- Lifetimes: never past the absolute cap.
        CASE WHEN p_absolute IS NULL THEN 'infinity'::timestamptz
             ELSE created_at + make_interval(secs => p_absolute) END)
      WHERE id = v_key RETURNING {ttl}(expires_at) INTO ttl;""",
    ),
)

# Version 8: users (SPEC section 9). The index is the sessions table itself: a logged-in
# session's row holds the SHA-256 of its user id (indexed), the user id (for Session.user()),
# its label and its idle lifetime at login (last_seen is its expiry minus that). A login is
# the rename and the recording in one function (one transaction); a rename keeps the row's
# columns, a revocation deletes rows, and an expired row is never live: no entry can outlive
# its session or miss one.
_USERS_V9 = """
ALTER TABLE {sessions} ADD COLUMN user_hash bytea, ADD COLUMN user_id text,
  ADD COLUMN label text, ADD COLUMN idle integer NOT NULL DEFAULT 0, ADD COLUMN tag text;
CREATE INDEX {sessions_user_idx} ON {sessions} (user_hash) WHERE user_hash IS NOT NULL;
CREATE FUNCTION {login}(p_old bytea, p_new bytea, p_hash bytea, p_user text, p_label text,
  p_idle integer, p_tag text) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE v_ttl integer;
BEGIN
  v_ttl := {rename}(p_old, p_new);
  IF v_ttl IS NULL THEN RETURN NULL; END IF;
  UPDATE {sessions} SET user_hash = p_hash, user_id = p_user, label = p_label, idle = p_idle,
    tag = p_tag WHERE id = p_new;
  RETURN v_ttl;
END $$;
"""

_TABLES = """
CREATE TABLE {sessions} (
  id bytea NOT NULL,
  expires_at timestamptz NOT NULL,
  CONSTRAINT {sessions_pkey} PRIMARY KEY (id)
);
CREATE INDEX {sessions_expires_idx} ON {sessions} (expires_at);
CREATE TABLE {fields} (
  session_id bytea NOT NULL,
  field text NOT NULL,
  value bytea NOT NULL,
  expires_at timestamptz,
  hot_ttl integer,
  CONSTRAINT {fields_pkey} PRIMARY KEY (session_id, field),
  CONSTRAINT {fields_session_fkey} FOREIGN KEY (session_id) REFERENCES {sessions} (id)
    ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE INDEX {fields_expires_idx} ON {fields} (expires_at) WHERE expires_at IS NOT NULL;
"""


#: Object names derived from the table name: key in the SQL templates -> suffix. Qualified
#: names (tables, functions) get the schema; indexes and constraints live in their table's.
QUALIFIED: Final = {
    "sessions": "",
    "fields": "_fields",
    "version": "_schema_version",
    "live": "_live",
    "ttl": "_ttl",
    "write": "_write",
    "remove": "_remove",
    "delete": "_delete",
    "expire": "_expire",
    "rename": "_rename",
    "delete_expired": "_delete_expired",
    "int_decode": "_int_decode",
    "int_encode": "_int_encode",
    "seq": "_seq",
    "touch": "_touch",
    "login": "_login",
    "watch_notify": "_watch_notify",
    "watch_recheck": "_watch_recheck",
}
BARE: Final = {
    "sessions_pkey": "_pkey",
    "sessions_expires_idx": "_expires_idx",
    "fields_pkey": "_fields_pkey",
    "fields_session_fkey": "_fields_session_fkey",
    "fields_expires_idx": "_fields_expires_idx",
    "sessions_user_idx": "_user_idx",
    "watch_trigger": "_watch_trigger",
    "watch_shorter_trigger": "_watch_shorter",
    "fields_watch_trigger": "_fields_watch",
}
#: Every suffix; with a table name of :data:`MAX_NAME` characters each derived name still
#: fits in :data:`PG_MAX_IDENTIFIER` bytes (a test keeps it so), so none is truncated.
SUFFIXES: Final = (*QUALIFIED.values(), *BARE.values())


def names_map(n: Names) -> dict[str, str]:
    names = {key: n.q(suffix) for key, suffix in QUALIFIED.items()}
    names.update({key: n.bare(suffix) for key, suffix in BARE.items()})
    names["collision"] = COLLISION_STATE
    names["not_int"] = NOT_INT_STATE
    names["overflow"] = OVERFLOW_STATE
    names["watch_channel"] = f"{n.table}_watch"  # (in string literals: a checked identifier)
    return names


#: Migrations by version. Each runs once, in a transaction, recorded in ``{table}_schema_version``.
MIGRATIONS: Final = {
    1: [_TABLES, _LIVE, _TTL, _WRITE, _REMOVE, _DELETE, _EXPIRE, _RENAME, _DELETE_EXPIRED],
    2: [_WRITE_V2],
    3: [_WRITE_V3, _RENAME_V3, _DELETE_V3, _DELETE_EXPIRED_V3],
    4: [_REMOVE_V4, _INT_DECODE, _INT_ENCODE, _WRITE_V4],
    5: [_SEQ_V5],
    6: [_CREATED_V6, _WRITE_V6],
    7: [_TOUCH_V7],
    8: [_DIGEST_IDS_V8],
    9: [_USERS_V9],
    10: [_WATCH_V10],
    11: [_TOUCH_V11],
    12: [_WATCH_RECHECK_V12, _REMOVE_V12],
}
LATEST: Final = max(MIGRATIONS)


class Queries:
    """The statements the store runs, for one set of names (prepared by asyncpg's cache)."""

    def __init__(self, n: Names) -> None:
        m = names_map(n)
        self.version_table = (
            f"CREATE TABLE IF NOT EXISTS {m['version']} "
            f"(version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        self.current_version = f"SELECT coalesce(max(version), 0) FROM {m['version']}"
        self.record_version = f"INSERT INTO {m['version']} (version) VALUES ($1)"
        self.get = (
            f"SELECT f.value FROM {m['fields']} f JOIN {m['sessions']} s ON s.id = f.session_id "
            f"WHERE f.session_id = $1 AND f.field = $2 AND s.expires_at > now() "
            f"AND (f.expires_at IS NULL OR f.expires_at > now())"
        )
        self.get_all = (
            f"SELECT {m['ttl']}(s.expires_at), f.field, f.value, "
            f"CASE WHEN f.expires_at IS NULL THEN NULL ELSE {m['ttl']}(f.expires_at) END, "
            f"f.hot_ttl FROM {m['sessions']} s JOIN {m['fields']} f ON f.session_id = s.id "
            f"WHERE s.id = $1 AND s.expires_at > now() "
            f"AND (f.expires_at IS NULL OR f.expires_at > now())"
        )
        self.write = (
            f"SELECT written, moved, ttl, value, nextval('{m['seq']}') "
            f"FROM {m['write']}($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        )
        self.remove = (
            f"SELECT removed, ttl, value, nextval('{m['seq']}') FROM {m['remove']}($1, $2)"
        )
        self._lifetimes(m)
        self.delete = f"SELECT {m['delete']}($1)"
        # The reason is set for the statement's transaction before the delete runs.
        self.end_session = (
            f"WITH r AS MATERIALIZED (SELECT set_config('trio_ruts.watch_reason', $2, true)) "
            f"SELECT {m['delete']}($1) FROM r"
        )
        self.expire = f"SELECT {m['expire']}($1, $2)"
        self.rename = f"SELECT {m['rename']}($1, $2)"
        self.delete_expired = f"SELECT {m['delete_expired']}()"
        self._users(m)

    def _users(self, m: dict[str, str]) -> None:
        """The statements of the per-user index (version 9)."""
        live = (
            f"s.expires_at > now() AND EXISTS (SELECT 1 FROM {m['fields']} f "
            f"WHERE f.session_id = s.id AND (f.expires_at IS NULL OR f.expires_at > now()))"
        )
        self.login = f"SELECT {m['login']}($1, $2, $3, $4, $5, $6, $7)"
        self.session_user = f"SELECT s.user_id FROM {m['sessions']} s WHERE s.id = $1 AND {live}"
        # Seconds to the expiry (NULL: persistent), and the database's now().
        self.user_sessions = (
            f"SELECT s.id, s.created_at, s.label, s.idle, CASE WHEN s.expires_at = "
            f"'infinity' THEN NULL ELSE extract(epoch FROM s.expires_at - now()) END, now() "
            f"FROM {m['sessions']} s WHERE s.user_hash = $1 AND {live}"
        )
        # $2: the ids to end (NULL: all), $3: the id to keep (NULL: none). The watch trigger
        # (version 10) announces each as 'revoked'. Not the live-field test of the reads: a
        # DELETE that waited for a concurrent rename's row lock re-checks the moved row, but a
        # subquery would still see the fields under the old id, and the session would escape.
        # A row whose fields all expired on their own is dead anyway.
        self.end_user_sessions = (
            f"WITH r AS MATERIALIZED (SELECT set_config('trio_ruts.watch_reason', 'revoked', "
            f"true)) DELETE FROM {m['sessions']} s USING r WHERE s.user_hash = $1 "
            f"AND ($2::bytea[] IS NULL OR s.id = ANY($2::bytea[])) "
            f"AND s.id IS DISTINCT FROM $3::bytea AND s.expires_at > now() "
            f"RETURNING s.id, s.tag"
        )

    def _lifetimes(self, m: dict[str, str]) -> None:
        """The statements of touching reads, touches and capped expiries: each one statement
        (a data-modifying CTE, or a call of the touch function, where it extends), so a read
        that touches costs no extra round trip, and one that touches nothing writes nothing."""
        live_field = (
            f"EXISTS (SELECT 1 FROM {m['fields']} f WHERE f.session_id = s.id "
            f"AND (f.expires_at IS NULL OR f.expires_at > now()))"
        )

        def touched(idle: str, below: str, cap: str) -> str:
            """A CTE extending live session $1 by a touch (idle and cap in whole seconds,
            below in seconds) and returning its new ttl, or no row."""
            extended = (
                f"least(now() + make_interval(secs => {idle}::integer), CASE WHEN "
                f"{cap}::integer IS NULL THEN 'infinity'::timestamptz "
                f"ELSE s.created_at + make_interval(secs => {cap}::integer) END)"
            )
            return (
                f"WITH touched AS (UPDATE {m['sessions']} s SET expires_at = {extended} "
                f"WHERE s.id = $1 AND s.expires_at > now() "
                f"AND s.expires_at < now() + make_interval(secs => {below}::float8) "
                f"AND s.expires_at < {extended} AND {live_field} "
                f"RETURNING {m['ttl']}(s.expires_at) AS ttl) "
            )

        # Not the CTE: a data-modifying statement costs every read (executor and lock set-up,
        # the UPDATE's own scan) even when it changes nothing. This is a plain read (one row,
        # also when the session or field is absent) that calls the touch function only when
        # the live session's lifetime is below the threshold.
        self.touch_get = (
            f"SELECT f.value, CASE WHEN s.expires_at < now() + make_interval(secs => "
            f"$4::float8) THEN {m['touch']}(s.id, $3, $4, $5, f.value IS NOT NULL) END "
            f"FROM (VALUES (1)) one (x) "
            f"LEFT JOIN {m['sessions']} s ON s.id = $1 AND s.expires_at > now() "
            f"LEFT JOIN {m['fields']} f ON f.session_id = s.id AND f.field = $2 "
            f"AND (f.expires_at IS NULL OR f.expires_at > now())"
        )
        # The CTE's snapshot is the one before the touch: the new ttl comes from the CTE.
        self.touch_get_all = touched("$2", "$3", "$4") + (
            f"SELECT coalesce(t.ttl, {m['ttl']}(s.expires_at)), f.field, f.value, "
            f"CASE WHEN f.expires_at IS NULL THEN NULL ELSE {m['ttl']}(f.expires_at) END, "
            f"f.hot_ttl, t.ttl IS NOT NULL FROM {m['sessions']} s "
            f"JOIN {m['fields']} f ON f.session_id = s.id LEFT JOIN touched t ON true "
            f"WHERE s.id = $1 AND s.expires_at > now() "
            f"AND (f.expires_at IS NULL OR f.expires_at > now())"
        )
        self.touch = touched("$2", "$3", "$4") + (
            f"SELECT coalesce((SELECT ttl FROM touched), (SELECT {m['ttl']}(s.expires_at) "
            f"FROM {m['sessions']} s WHERE s.id = $1 AND s.expires_at > now() "
            f"AND {live_field}))"
        )
        # $2 seconds (> 0 or -1), $3 the cap. Past the cap the row expires now: gone (NULL).
        self.expire_capped = (
            f"UPDATE {m['sessions']} s SET expires_at = least(CASE WHEN $2::integer = -1 "
            f"THEN 'infinity'::timestamptz ELSE now() + make_interval(secs => $2::integer) "
            f"END, s.created_at + make_interval(secs => $3::integer)) "
            f"WHERE s.id = $1 AND s.expires_at > now() AND {live_field} "
            f"RETURNING CASE WHEN s.expires_at > now() THEN {m['ttl']}(s.expires_at) END"
        )

    @staticmethod
    def migration(n: Names, version: int) -> list[str]:
        m = names_map(n)
        return [sql.format(**m) for sql in MIGRATIONS[version]]
