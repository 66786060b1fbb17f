"""The Lua scripts of the Redis store's per-user index (SPEC section 9).

Layout: a user's index is a sorted set ``prefix user:<base64url SHA-256 of the user id>``
whose members are the Redis keys of the user's sessions (``RedisStore.key``, the key every
other operation uses). A logged-in session's hash holds meta fields: ``"\\0u"`` the user id,
``"\\0U"`` the name of its index key, ``"\\0i"`` its idle lifetime in seconds at login (for
``last_seen``), ``"\\0l"`` its label; they move with the hash on renames.

A member's score is a time (ms of the server's ``TIME``) before which its entry is never
dropped: the session's expiry when it was last scored, or, for an entry written ahead of its
session (a Redis Cluster login), the login's start plus a grace period. Touches and writes
extend sessions without rescoring them, so an entry whose score passed is dropped only when
its session is found gone; a live one is rescored.

On a single server, the scripts that move or end a logged-in session also maintain its index
entry in the same step (they reach the index key named by ``"\\0U"``). A Redis Cluster keeps
the index and the session in different slots: there the store writes index entries before
the sessions they point to (``INDEX_PENDING``), and drops entries after the sessions ended.
"""

from __future__ import annotations

from ._scripts import Script, _notifying, _script

#: ms an entry of a persistent session waits before it is checked again.
_DAY_MS = 86_400_000

_USERS = rf"""
-- The score of a live session's index entry: its expiry (persistent: a day from now).
local function score_of(k, now)
  local pttl = redis.call('PTTL', k)
  if pttl < 0 then return now + {_DAY_MS} end
  return now + pttl
end

-- Whether key k holds a live session recorded under index ix.
local function member_live(ix, k)
  return live(k) > 0 and redis.call('HGET', k, '\0U') == ix
end

-- Check up to limit entries whose score passed: rescore the live, drop the others.
local function prune(ix, now, limit)
  local due = redis.call('ZRANGEBYSCORE', ix, '-inf', now, 'LIMIT', 0, limit)
  for _, k in ipairs(due) do
    if member_live(ix, k) then
      redis.call('ZADD', ix, score_of(k, now), k)
    else
      redis.call('ZREM', ix, k)
    end
  end
end
"""

# KEYS: the session, its new key, (single server) the index. ARGV[2] user, ARGV[3] label,
# ARGV[4] '1' with a label, ARGV[5] idle seconds, ARGV[6] '1' on a single server, ARGV[7]
# the index key's name. Replies the new ttl, or -3 when the session is absent.
_LOGIN = r"""
local cur, fresh, ix, same = KEYS[1], KEYS[2], ARGV[7], ARGV[6] == '1'
if live(cur) == 0 then return -3 end
if live(fresh) > 0 then
  return redis.error_reply('COLLISION the new session id is already in use')
end
local before = redis.call('HGET', cur, '\0U')
redis.call('RENAME', cur, fresh)
redis.call('HSET', fresh, '\0u', ARGV[2], '\0U', ix, '\0i', ARGV[5])
if ARGV[4] == '1' then
  redis.call('HSET', fresh, '\0l', ARGV[3])
else
  redis.call('HDEL', fresh, '\0l')
end
if same then
  local now = now_ms()
  if before then redis.call('ZREM', before, cur) end
  redis.call('ZADD', ix, score_of(fresh, now), fresh)
  prune(ix, now, 16)
end
return redis.call('TTL', fresh)
"""

# A Redis Cluster login's first step: the entry, ahead of its session. ARGV[2] the session's
# new key, ARGV[3] the grace in ms.
_INDEX_PENDING = r"""
redis.call('ZADD', KEYS[1], now_ms() + tonumber(ARGV[3]), ARGV[2])
return 1
"""

# A rename's first step on a Redis Cluster: the new key's entry, ahead of the rename, when
# the session is logged in. KEYS[1] the session; ARGV[2] the new key. Replies the index
# key's name, or false.
_INDEX_OF = r"""
if live(KEYS[1]) == 0 then return false end
return redis.call('HGET', KEYS[1], '\0U')
"""

# KEYS[1] the index (single server). ARGV[2] 'list' or 'end', ARGV[3] the key to keep ('' for
# none), ARGV[4] the store's watch channel prefix (``prefix watch:``: each ended session is
# announced, reason 'revoked', in this step), ARGV[5..] the keys to consider (none: every
# entry). Replies {now, then per live
# session: key, created ms, '1' .. label or '', idle, pttl} ('list'), or {now, ended keys}.
_USERS_SCAN = r"""
local ix, mode, keep, wp = KEYS[1], ARGV[2], ARGV[3], ARGV[4]
local now = now_ms()
local members
if #ARGV > 4 then
  members = {}
  for i = 5, #ARGV do members[#members + 1] = ARGV[i] end
else
  members = redis.call('ZRANGE', ix, 0, -1)
end
local out = {now}
for _, k in ipairs(members) do
  if member_live(ix, k) then
    if mode == 'end' then
      if k ~= keep then
        redis.call('DEL', k)
        redis.call('ZREM', ix, k)
        -- the channel: the prefix, 'watch:', and the key after the prefix ({tag}digest)
        redis.call('PUBLISH', wp .. string.sub(k, #wp - 5), 'revoked')
        out[#out + 1] = k
      end
    else
      local m = redis.call('HMGET', k, '\0a', '\0l', '\0i')
      local score = tonumber(redis.call('ZSCORE', ix, k))
      if not score or score <= now then redis.call('ZADD', ix, score_of(k, now), k) end
      out[#out + 1] = k
      out[#out + 1] = m[1] or ''
      out[#out + 1] = m[2] and ('1' .. m[2]) or ''
      out[#out + 1] = m[3] or '0'
      out[#out + 1] = redis.call('PTTL', k)
    end
  else
    local score = tonumber(redis.call('ZSCORE', ix, k))
    if score and score <= now then redis.call('ZREM', ix, k) end
  end
end
return out
"""

# One session of a user on a Redis Cluster (KEYS[1]; ARGV[2] the index key's name, ARGV[3]
# 'end' to end it, announced on the channel ARGV[4] by ARGV[5] (PUBLISH or SPUBLISH) with
# reason 'revoked'): {0} when it is not a live session of that index, else {1, created ms,
# '1' .. label or '', idle, pttl, now}.
_USER_SESSION = r"""
local k = KEYS[1]
if not member_live(ARGV[2], k) then return {0} end
if ARGV[3] == 'end' then
  redis.call('DEL', k)
  redis.call(ARGV[5], ARGV[4], 'revoked')
  return {1}
end
local m = redis.call('HMGET', k, '\0a', '\0l', '\0i')
return {1, m[1] or '', m[2] and ('1' .. m[2]) or '', m[3] or '0', redis.call('PTTL', k), now_ms()}
"""

# The index's side on a Redis Cluster, after the sessions were looked at: ARGV[2..] pairs
# of a key and what was found: 'gone' (drop when due), 'ended' (drop), a pttl (rescore when
# due), or '=' and a pttl (rescore now: a login's last step).
_INDEX_FIX = rf"""
local ix = KEYS[1]
local now = now_ms()
for i = 2, #ARGV, 2 do
  local k, found = ARGV[i], ARGV[i + 1]
  local score = tonumber(redis.call('ZSCORE', ix, k))
  if score and string.sub(found, 1, 1) == '=' then
    local pttl = tonumber(string.sub(found, 2))
    redis.call('ZADD', ix, pttl < 0 and now + {_DAY_MS} or now + pttl, k)
  elseif score then
    if found == 'ended' or (found == 'gone' and score <= now) then
      redis.call('ZREM', ix, k)
    elseif found ~= 'gone' and score <= now then
      local pttl = tonumber(found)
      redis.call('ZADD', ix, pttl < 0 and now + {_DAY_MS} or now + pttl, k)
    end
  end
end
return 1
"""

# KEYS[1] the session; ARGV[2] '1' on a single server. Replies {existed, index name or ''}.
_LOGOUT = r"""
local k = KEYS[1]
if live(k) == 0 then return {0, ''} end
local ix = redis.call('HGET', k, '\0U')
redis.call('DEL', k)
if ix and ARGV[2] == '1' then redis.call('ZREM', ix, k) end
return {1, ix or ''}
"""

_USER_OF = r"""
if live(KEYS[1]) == 0 then return false end
return redis.call('HGET', KEYS[1], '\0u')
"""

# Both announce the end of the session under KEYS[1] (see _scripts._notifying): a login
# renames it, a logout deletes it.
LOGIN = _notifying("login", _USERS, _LOGIN)
INDEX_PENDING = _script("index_pending", _INDEX_PENDING)
INDEX_OF = _script("index_of", _INDEX_OF)
USERS_SCAN = _script("users_scan", _USERS + _USERS_SCAN)
USER_SESSION = _script("user_session", _USERS + _USER_SESSION)
INDEX_FIX = _script("index_fix", _INDEX_FIX)
LOGOUT = _notifying("logout", "", _LOGOUT)
USER_OF = _script("user_of", _USER_OF)

__all__ = [
    "INDEX_FIX",
    "INDEX_OF",
    "INDEX_PENDING",
    "LOGIN",
    "LOGOUT",
    "USERS_SCAN",
    "USER_OF",
    "USER_SESSION",
    "Script",
]
