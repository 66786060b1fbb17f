"""The Lua scripts of the Redis store: one atomic server-side step per store operation.

Key layout: one hash per session. Besides the user's fields (names never contain control
characters), a hash may hold meta fields whose names start with a NUL byte:

* ``"\\0h:<field>"``: the layered-store hot policy of ``<field>`` (absent: default);
* ``"\\0e:<field>"``: ``-1`` when ``<field>`` never expires; on servers without ``HEXPIRE``,
  otherwise the field's absolute expiry in milliseconds of the server's ``TIME``;
* ``"\\0a"``: the session's creation time in milliseconds of ``TIME`` (the absolute cap
  counts from it; ``RENAME`` keeps it). Sessions written before it existed get it from the
  first write or touch that applies a cap.

With ``HEXPIRE`` (``ARGV[1] == "1"``) a field's meta fields expire with it. Without it the
scripts drop expired fields themselves (``live()``), so each session stays one key either way.
A session exists while it has a live user field.

A store serving as a LayeredStore's hot layer also keeps the cache protocol's state (see
:mod:`trio_ruts._cache`) in the same hash: ``"\\0c"`` (changes in flight), ``"\\0d"`` (the
server time in ms when that count lapses), ``"\\0v"`` (the epoch), and ``"\\0x:<field>"``
markers (``x``: absent from cold; ``o``: never cached). Its cached values always carry a
lifetime of their own, so the key's lifetime only bounds the protocol state.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

_PRELUDE = r"""
local native = ARGV[1] == '1'

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Far beyond any server time in ms: '\0s' when no field has a lifetime of its own.
local NEVER = 9e15

-- Set a field's own expiry (ms of TIME) on servers without HEXPIRE, keeping '\0s' (the
-- soonest field expiry of the session) no later than it.
local function expire_at(key, f, at)
  redis.call('HSET', key, '\0e:' .. f, at)
  local soon = tonumber(redis.call('HGET', key, '\0s'))
  if soon and at < soon then redis.call('HSET', key, '\0s', at) end
end

-- Whether a session has a live user field (non-zero: yes). Without HEXPIRE it first drops
-- expired fields (and the key if none remain), scanning the hash only when a field lifetime
-- may have ended ('\0s'), so a write costs the same whatever the session's field count. An
-- expiry that is not a number (corrupt data) keeps its field: reads report that field as
-- unreadable, and the session stays usable. Counting, not EXISTS, with HEXPIRE: a hash whose
-- fields all expired may exist until the server's expiry cycle reclaims it.
local function live(key)
  if native then
    -- Only names are needed: count the fields that are not meta fields.
    local users = 0
    for _, name in ipairs(redis.call('HKEYS', key)) do
      if string.byte(name, 1) ~= 0 then users = users + 1 end
    end
    return users
  end
  local now = now_ms()
  local soon = tonumber(redis.call('HGET', key, '\0s'))
  if soon and soon > now then return redis.call('EXISTS', key) end
  local all = redis.call('HGETALL', key)
  if #all == 0 then return 0 end
  local users, dead, soonest = {}, {}, NEVER
  for i = 1, #all, 2 do
    if string.byte(all[i], 1) ~= 0 then users[all[i]] = true end
  end
  for i = 1, #all, 2 do
    local name = all[i]
    if string.sub(name, 1, 3) == '\0e:' then
      local at = tonumber(all[i + 1])
      if at and at ~= -1 then
        if at <= now then
          local f = string.sub(name, 4)
          users[f] = nil
          dead[#dead + 1] = f
          dead[#dead + 1] = name
          dead[#dead + 1] = '\0h:' .. f
        elseif at < soonest then
          soonest = at
        end
      end
    end
  end
  for i = 1, #dead, 999 do
    redis.call('HDEL', key, unpack(dead, i, math.min(i + 998, #dead)))
  end
  if next(users) == nil then
    -- A hot-layer key keeps its protocol state (its epoch) while it has no fields.
    if redis.call('HEXISTS', key, '\0v') == 0 then redis.call('DEL', key) end
    return 0
  end
  redis.call('HSET', key, '\0s', soonest)
  return 1
end
"""

# A logged-in session that moved keeps its user's index entry (see _user_scripts), in the
# same step on a single server (``single``: the script's argument says so); on a Redis
# Cluster the store wrote the new entry before the move.
_REINDEX = r"""
local function reindex(old, new, single)
  local ix = single and redis.call('HGET', new, '\0U')
  if not ix then return end
  local p = redis.call('PTTL', new)
  redis.call('ZADD', ix, now_ms() + (p < 0 and 86400000 or p), new)
  redis.call('ZREM', ix, old)
end
"""

_LIFETIMES = r"""
-- The absolute cap: ms from now to the session's creation time plus abs seconds, or nil
-- without a cap. A session written by an earlier release has no creation time: it is
-- stamped now, so its cap counts from the first write or touch that applies one.
local function cap_ms(key, abs, now)
  if not abs then return nil end
  local created = tonumber(redis.call('HGET', key, '\0a'))
  if not created then
    created = now
    redis.call('HSET', key, '\0a', now)
  end
  return created + abs * 1000 - now
end

-- A touch of a live session whose PTTL is pttl: when fewer than below ms are left, extend
-- it to idle ms, never past the cap. Returns the new lifetime in ms, or nil when nothing
-- changed. (A read never ends a session: one past a cap configured after it was last
-- extended ends at its expiry, or at its next write.)
local function touch(key, pttl, idle, below, abs)
  if pttl < 0 or pttl >= below then return nil end
  local new = idle
  if abs then -- TIME only for a cap: most sessions have none
    local cap = cap_ms(key, abs, now_ms())
    if cap < new then new = cap end
  end
  if new <= pttl then return nil end
  redis.call('PEXPIRE', key, new)
  return new
end
"""

_INTS = r"""
-- Exact integers for incr. Lua numbers are doubles, exact only below 2^53, so an integer is
-- a sign and a magnitude in base-10^7 limbs, least significant first (no intermediate
-- result reaches 2^32). Encodings as in trio_ruts._ints: CBOR major type 0/1 with a 0-8 byte
-- argument (written in the shortest form), or JSON decimal text.
local BASE = 10000000

local function m_trim(m)
  while #m > 1 and m[#m] == 0 do m[#m] = nil end
  if #m == 0 then m[1] = 0 end
  return m
end

local function m_from_dec(digits)
  local m, i = {}, #digits
  while i >= 1 do
    local j = math.max(1, i - 6)
    m[#m + 1] = tonumber(string.sub(digits, j, i))
    i = j - 1
  end
  return m_trim(m)
end

local function m_to_dec(m)
  local parts = {tostring(m[#m])}
  for i = #m - 1, 1, -1 do parts[#parts + 1] = string.format('%07d', m[i]) end
  return table.concat(parts)
end

local function m_cmp(a, b)
  if #a ~= #b then return #a < #b and -1 or 1 end
  for i = #a, 1, -1 do
    if a[i] ~= b[i] then return a[i] < b[i] and -1 or 1 end
  end
  return 0
end

local function m_add(a, b)
  local r, carry = {}, 0
  for i = 1, math.max(#a, #b) do
    local v = (a[i] or 0) + (b[i] or 0) + carry
    carry = v >= BASE and 1 or 0
    r[i] = v - carry * BASE
  end
  if carry > 0 then r[#r + 1] = carry end
  return r
end

local function m_sub(a, b) -- a >= b
  local r, borrow = {}, 0
  for i = 1, #a do
    local v = a[i] - (b[i] or 0) - borrow
    borrow = v < 0 and 1 or 0
    r[i] = v + borrow * BASE
  end
  return m_trim(r)
end

local function m_from_bytes(s)
  local m = {0}
  for i = 1, #s do
    local carry = string.byte(s, i)
    for j = 1, #m do
      local v = m[j] * 256 + carry
      m[j] = v % BASE
      carry = math.floor(v / BASE)
    end
    if carry > 0 then m[#m + 1] = carry end
  end
  return m_trim(m)
end

local function m_to_bytes(m, n) -- the low n bytes, big-endian
  local q, out = {}, {}
  for i = 1, #m do q[i] = m[i] end
  for k = n, 1, -1 do
    local rem = 0
    for i = #q, 1, -1 do
      local v = rem * BASE + q[i]
      q[i] = math.floor(v / 256)
      rem = v % 256
    end
    out[k] = string.char(rem)
  end
  return table.concat(out)
end

local ZERO, ONE = {0}, {1}

local function fits(neg, m)
  local bound = neg and '9223372036854775808' or '9223372036854775807'
  return m_cmp(m, m_from_dec(bound)) <= 0
end

-- The common case in plain Lua numbers: an integer below 2^31 in magnitude in its canonical
-- encoding, or nil (the exact limb arithmetic then decides).
local function small_decode(v, fmt)
  if fmt == 'json' then
    if #v <= 10 and string.find(v, '^%-?%d+$') and not string.find(v, '^%-?0%d') then
      local n = tonumber(v)
      if n < 2147483648 and n > -2147483648 then return n end
    end
    return nil
  end
  local b0, n = string.byte(v, 1), nil
  if not b0 or b0 >= 64 then return nil end
  local info = b0 % 32
  if info < 24 and #v == 1 then
    n = info
  elseif info == 24 and #v == 2 then
    n = string.byte(v, 2)
    if n < 24 then return nil end
  elseif info == 25 and #v == 3 then
    n = string.byte(v, 2) * 256 + string.byte(v, 3)
    if n < 256 then return nil end
  elseif info == 26 and #v == 5 then
    local a, b, c, d = string.byte(v, 2, 5)
    n = ((a * 256 + b) * 256 + c) * 256 + d
    if n < 65536 or n >= 2147483648 then return nil end
  else
    return nil
  end
  return b0 >= 32 and -1 - n or n
end

local function small_encode(n, fmt) -- |n| < 2^32
  if fmt == 'json' then return string.format('%d', n) end
  local major, arg = 0, n
  if n < 0 then major, arg = 32, -1 - n end
  if arg < 24 then return string.char(major + arg) end
  if arg < 256 then return string.char(major + 24, arg) end
  if arg < 65536 then return string.char(major + 25, math.floor(arg / 256), arg % 256) end
  return string.char(major + 26, math.floor(arg / 16777216) % 256,
    math.floor(arg / 65536) % 256, math.floor(arg / 256) % 256, arg % 256)
end

local CBOR_SIZES = {[24] = 1, [25] = 2, [26] = 4, [27] = 8}

-- The sign and magnitude of the signed 64-bit integer v encodes, or nil.
local function int_decode(v, fmt)
  local neg, m
  if fmt == 'json' then
    if #v > 21 or not string.find(v, '^%-?%d+$') or string.find(v, '^%-?0%d') then
      return nil
    end
    neg = string.byte(v, 1) == 45
    m = m_from_dec(neg and string.sub(v, 2) or v)
  else
    local b0 = string.byte(v, 1)
    if not b0 or b0 >= 64 then return nil end -- major types 0 and 1 only
    local info = b0 % 32
    local size = CBOR_SIZES[info] or (info < 24 and 0)
    if not size or #v ~= 1 + size then return nil end
    m = size == 0 and {info} or m_from_bytes(string.sub(v, 2))
    neg = b0 >= 32
    if neg then m = m_add(m, ONE) end
  end
  if m_cmp(m, ZERO) == 0 then neg = false end
  if not fits(neg, m) then return nil end
  return neg, m
end

local function int_encode(neg, m, fmt)
  if fmt == 'json' then return (neg and '-' or '') .. m_to_dec(m) end
  local major, arg = 0, m
  if neg then major, arg = 32, m_sub(m, ONE) end
  if m_cmp(arg, {24}) < 0 then return string.char(major + arg[1]) end
  local size, info = 8, 27
  if m_cmp(arg, {256}) < 0 then
    size, info = 1, 24
  elseif m_cmp(arg, {65536}) < 0 then
    size, info = 2, 25
  elseif m_cmp(arg, {4967296, 429}) < 0 then
    size, info = 4, 26
  end
  return string.char(major + info) .. m_to_bytes(arg, size)
end

-- a + b for signed integers (sign, magnitude).
local function int_add(an, am, bn, bm)
  if an == bn then return an, m_add(am, bm) end
  if m_cmp(am, bm) >= 0 then
    local r = m_sub(am, bm)
    return an and m_cmp(r, ZERO) ~= 0, r
  end
  return bn, m_sub(bm, am)
end
"""

_WRITE = r"""
local cur, fresh = KEYS[1], KEYS[2]
local f, value, nx = ARGV[2], ARGV[3], ARGV[4] == '1'
local fttl, kttl = tonumber(ARGV[5]) or 0, tonumber(ARGV[6])
local rename, hot, has_id = ARGV[7] == '1', ARGV[8], ARGV[9] == '1'
-- Compare and set: ARGV[10] is '1' when ARGV[11] holds the bytes the field must have.
local cas, expected = ARGV[10] == '1', ARGV[11]
-- An increment: ARGV[12] in decimal ('' for none), ARGV[13] the integer encoding. Only
-- WRITE_INCR, which defines the integer functions (_INTS), is sent increments.
local incr, fmt = ARGV[12], ARGV[13]
-- The absolute cap in seconds ('' for none).
local abs = tonumber(ARGV[14])

-- ARGV[15]: '1' on a single server (a logged-in session's index entry moves in this step).
local single = ARGV[15] == '1'

-- An id the store does not hold is never adopted: nothing is written (ttl -3), and the
-- caller creates the session again under a wholly fresh id.
local has = has_id and live(cur) > 0
if has and abs and cap_ms(cur, abs, now_ms()) <= 0 then
  redis.call('DEL', cur) -- past its absolute lifetime: gone
  has = false
end
if has_id and not has then return {0, 0, -3} end
if (rename or not has) and live(fresh) > 0 then
  return redis.error_reply('COLLISION the new session id is already in use')
end
local out -- the value returned (an increment's)
if incr ~= '' then
  -- Decided before anything changes: an error reply leaves the session as it was. live()
  -- dropped expired fields (HEXPIRE drops them itself): what HGET finds is live.
  local found = has and redis.call('HGET', cur, f)
  local now_n = (not found and 0) or small_decode(found, fmt)
  local by_n = #incr <= 10 and tonumber(incr)
  if now_n and by_n and by_n < 2147483648 and by_n > -2147483648 then
    value = small_encode(now_n + by_n, fmt)
  else
  local neg, m = false, ZERO
  if found then
    neg, m = int_decode(found, fmt)
    if not m then
      return redis.error_reply('NOTINT the field does not hold a signed 64-bit integer')
    end
  end
  local bneg = string.byte(incr, 1) == 45
  neg, m = int_add(neg, m, bneg, m_from_dec(bneg and string.sub(incr, 2) or incr))
  if not fits(neg, m) then
    return redis.error_reply('OVERFLOW the result does not fit in signed 64 bits')
  end
  value = int_encode(neg, m, fmt)
  end
  out = value
end
local key = fresh
if has then
  if rename then
    redis.call('RENAME', cur, fresh)
    reindex(cur, fresh, single)
  else
    key = cur
  end
end

-- live() dropped expired fields (HEXPIRE drops them itself): what HEXISTS and HGET see is
-- live.
local skip
if cas then
  skip = redis.call('HGET', key, f) ~= expected
else
  skip = nx and redis.call('HEXISTS', key, f) == 1
end
local written = 0
if not skip then
  written = 1
  local e, h = '\0e:' .. f, '\0h:' .. f
  -- Watched (the notifying variant): a field that exists and is given a lifetime (it may
  -- have had none, or a longer one) may end the session sooner.
  if watching and has and fttl > 0 and redis.call('HEXISTS', key, f) == 1 then
    watch_recheck = true
  end
  -- HSET gives each field it overwrites a clean slate (an overwritten field loses its
  -- HEXPIRE), so only what must differ from that is set below.
  local set, drop, fields = {f, value}, {}, {f}
  if not has then -- a new session: its creation time, for the absolute cap
    set[#set + 1] = '\0a'
    set[#set + 1] = now_ms()
  end
  if hot == '' then drop[#drop + 1] = h else
    set[#set + 1] = h
    set[#set + 1] = hot
    fields[2] = h
  end
  if fttl == -1 then
    set[#set + 1] = e
    set[#set + 1] = '-1'
  elseif not (fttl > 0 and not native) then
    drop[#drop + 1] = e
  end
  redis.call('HSET', key, unpack(set))
  if #drop > 0 then redis.call('HDEL', key, unpack(drop)) end
  if native and fttl > 0 then
    redis.call('HEXPIRE', key, fttl, 'FIELDS', #fields, unpack(fields))
  elseif fttl > 0 then
    expire_at(key, f, now_ms() + fttl * 1000)
  end
  -- The session lives at least max(current, default, field ttl); -1 anywhere persists it;
  -- the absolute cap bounds it all.
  local want = (kttl == -1 or fttl == -1) and -1 or math.max(kttl, fttl) * 1000
  local current = redis.call('PTTL', key)
  if not has and current == -1 then current = 0 end -- a new key has no lifetime yet
  local new = current
  if want == -1 or current == -1 then new = -1 elseif current < want then new = want end
  local cap = cap_ms(key, abs, now_ms())
  if cap and (new == -1 or new > cap) then new = cap end
  if new == -1 then
    redis.call('PERSIST', key)
  elseif new ~= current then
    redis.call('PEXPIRE', key, new)
    if has and (current == -1 or new < current) then watch_recheck = true end -- the cap
  end
  local ttl = new == -1 and -1 or math.ceil(new / 1000)
  return {written, key == fresh and 1 or 0, ttl, out}
end
return {written, key == fresh and 1 or 0, redis.call('TTL', key), out}
"""

_GET = r"""
local v = redis.call('HMGET', KEYS[1], ARGV[2], '\0e:' .. ARGV[2])
if not v[1] then return false end
if v[2] then
  local at = tonumber(v[2])
  if not at then return redis.error_reply('CORRUPT the stored expiry is not a number') end
  if at ~= -1 and at <= now_ms() then return false end
end
return v[1]
"""

# A field read that touches the session (ARGV[3] idle ms, ARGV[4] below ms, at most idle,
# ARGV[5] the absolute cap in seconds or ''), on servers with HEXPIRE too. Replies the value
# (or nil) when it extended nothing, {value, new ttl} when it did ({value} when the new ttl
# is idle: without a cap). Most reads end in the fast part (the
# session has more than below ms left): two commands and a bulk reply, as close to a bare
# script HGET as a read that may extend can be. Every extra step there costs every read
# (server time, and on loopback the latency of a reply that is no longer in when the send
# returns): no function is defined (the prelude's are made only when a read extends, in
# extend()), no table is built, and the threshold is the only argument converted.
_TOUCH_GET = r"""
local key, f = KEYS[1], ARGV[2]
local value
if ARGV[1] == '1' then -- HEXPIRE drops expired fields: the value alone will do
  value = redis.call('HGET', key, f)
else
  local v = redis.call('HMGET', key, f, '\0e:' .. f)
  value = v[1]
  if value and v[2] then
    local at = tonumber(v[2])
    if not at then return redis.error_reply('CORRUPT the stored expiry is not a number') end
    if at ~= -1 then
      local t = redis.call('TIME')
      if at <= tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) then value = false end
    end
  end
end
local pttl = redis.call('PTTL', key)
if pttl < 0 or pttl >= tonumber(ARGV[4]) then return value end
if value and ARGV[5] == '' then -- a live field, so a live session, and no cap: to idle
  redis.call('PEXPIRE', key, ARGV[3]) -- below <= idle (the store sees to it): it extends
  return {value}
end
return extend(value, pttl)
"""

# The rest of a touching read, when the session is due and the read found no live field (the
# session may still be live: live() decides) or there is a cap.
_EXTEND = r"""
local key = KEYS[1]
if not value and live(key) == 0 then return false end
local new = touch(key, pttl, tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]))
if new then return {value, math.ceil(new / 1000)} end
return value
"""

# ARGV[2..4]: a touch as for TOUCH_GET ('' for a plain read). Replies {ttl, touched, then
# name, value, field ttl, hot policy for each field}, or nil.
_GET_ALL = r"""
local key = KEYS[1]
if live(key) == 0 then return false end
local touched, idle = 0, tonumber(ARGV[2])
if idle then
  local new = touch(key, redis.call('PTTL', key), idle, tonumber(ARGV[3]), tonumber(ARGV[4]))
  if new then touched = 1 end
end
local all = redis.call('HGETALL', key)
local meta, users, values = {}, {}, {}
for i = 1, #all, 2 do
  if string.byte(all[i], 1) == 0 then
    meta[all[i]] = all[i + 1]
  else
    users[#users + 1] = all[i]
    values[#values + 1] = all[i + 1]
  end
end
if #users == 0 then return false end
local native_ttls = {}
if native then native_ttls = redis.call('HTTL', key, 'FIELDS', #users, unpack(users)) end
local now = native and 0 or now_ms()
local out = {redis.call('TTL', key), touched}
for i, f in ipairs(users) do
  local e, ttl = meta['\0e:' .. f], ''
  if e == '-1' then
    ttl = '-1'
  elseif native then
    if native_ttls[i] > 0 then ttl = tostring(native_ttls[i]) end
  elseif e then
    local at = tonumber(e)
    ttl = at and tostring(math.max(1, math.ceil((at - now) / 1000))) or 'corrupt'
  end
  out[#out + 1] = f
  out[#out + 1] = values[i]
  out[#out + 1] = ttl
  out[#out + 1] = meta['\0h:' .. f] or ''
end
return out
"""

_REMOVE = r"""
local key, f = KEYS[1], ARGV[2]
if live(key) == 0 then return {0, -2} end
-- live() dropped expired fields (HEXPIRE drops them itself): what HGET finds is live.
local value = redis.call('HGET', key, f)
local existed = value and 1 or 0
-- Watched: without the field (whatever its lifetime was), the session may end sooner.
if watching and value then watch_recheck = true end
redis.call('HDEL', key, f, '\0e:' .. f, '\0h:' .. f)
-- Was it the last field? (live() trusts the key's existence until a field lifetime ends.)
local left = false
for _, name in ipairs(redis.call('HKEYS', key)) do
  if string.byte(name, 1) ~= 0 then left = true break end
end
if not left or live(key) == 0 then
  redis.call('DEL', key)
  return {existed, -2, value}
end
return {existed, redis.call('TTL', key), value}
"""

_DELETE = r"""
if live(KEYS[1]) == 0 then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""

# ARGV[3]: the absolute cap in seconds ('' for none). Replies -2 when the session is absent
# (or past its cap: then deleted), else its new ttl (0 when deleted, -1 persistent).
_EXPIRE = r"""
local key, seconds = KEYS[1], tonumber(ARGV[2])
if live(key) == 0 then return -2 end
if seconds == 0 then
  redis.call('DEL', key)
  return 0
end
local new = seconds == -1 and -1 or seconds * 1000
local cap = cap_ms(key, tonumber(ARGV[3]), now_ms())
if cap and (new == -1 or new > cap) then new = cap end
if cap and new <= 0 then
  redis.call('DEL', key)
  return -2
end
if new == -1 then
  redis.call('PERSIST', key)
  return -1
end
if watching then
  local before = redis.call('PTTL', key)
  if before == -1 or new < before then watch_recheck = true end
end
redis.call('PEXPIRE', key, new)
return math.ceil(new / 1000)
"""

# ARGV[2..4]: a touch as for TOUCH_GET. Replies -2 when the session is absent, else its ttl.
_TOUCH = r"""
local key = KEYS[1]
if live(key) == 0 then return -2 end
local pttl = redis.call('PTTL', key)
local new = touch(key, pttl, tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]))
if pttl == -1 then return -1 end
return math.ceil((new or pttl) / 1000)
"""

# ARGV[2]: '1' on a single server (the index entry of a logged-in session moves with it).
_RENAME = r"""
local single = ARGV[2] == '1'
if live(KEYS[1]) == 0 then return -3 end
if live(KEYS[2]) > 0 then
  return redis.error_reply('COLLISION the new session id is already in use')
end
redis.call('RENAME', KEYS[1], KEYS[2])
reindex(KEYS[1], KEYS[2], single)
return redis.call('TTL', KEYS[2])
"""

# -- the hot-layer protocol (trio_ruts._cache) ------------------------------------------------

_CACHE_PRELUDE = r"""
local function keep(key, ms)
  local t = redis.call('PTTL', key)
  if t == -1 or (t >= 0 and t < ms) then redis.call('PEXPIRE', key, ms) end
end

-- Changes in flight (0 once their deadline passed), the deadline and the epoch.
local function state(key, now)
  local s = redis.call('HMGET', key, '\0c', '\0d', '\0v')
  local deadline = tonumber(s[2]) or 0
  local count = tonumber(s[1]) or 0
  if deadline <= now then count = 0 end
  return count, deadline, tonumber(s[3]) or 0
end

-- Move the epoch on; a session without one starts at the random seed.
local function bump(key, seed)
  if redis.call('HEXISTS', key, '\0v') == 0 then redis.call('HSET', key, '\0v', seed) end
  return redis.call('HINCRBY', key, '\0v', 1)
end

-- Delete the cached entries of one field, or of the whole session when f is ''.
local function drop(key, f)
  if f ~= '' then
    redis.call('HDEL', key, f, '\0e:' .. f, '\0h:' .. f, '\0x:' .. f)
    return
  end
  local gone = {}
  for _, name in ipairs(redis.call('HKEYS', key)) do
    if name ~= '\0c' and name ~= '\0d' and name ~= '\0v' and name ~= '\0f' then
      gone[#gone + 1] = name
      if #gone == 1000 then
        redis.call('HDEL', key, unpack(gone))
        gone = {}
      end
    end
  end
  if #gone > 0 then redis.call('HDEL', key, unpack(gone)) end
end

-- Install one entry: kind 'v' (a value living ttl seconds), 'x' or 'o' (a marker).
local function put(key, f, kind, value, ttl, now)
  if kind == 'v' then
    redis.call('HDEL', key, '\0x:' .. f, '\0h:' .. f)
    if native then
      redis.call('HSET', key, f, value)
      redis.call('HDEL', key, '\0e:' .. f)
      redis.call('HEXPIRE', key, ttl, 'FIELDS', 1, f)
    else
      redis.call('HSET', key, f, value)
      expire_at(key, f, now + ttl * 1000)
    end
  else
    redis.call('HDEL', key, f, '\0e:' .. f, '\0h:' .. f)
    redis.call('HSET', key, '\0x:' .. f, kind)
  end
  keep(key, ttl * 1000)
end
"""

_CACHE_READ = r"""
local key, f = KEYS[1], ARGV[2]
local v = redis.call('HMGET', key, f, '\0e:' .. f, '\0x:' .. f, '\0v')
if v[1] and v[2] then
  local at = tonumber(v[2])
  if not at or (at ~= -1 and at <= now_ms()) then v[1] = false end
end
if not v[1] and not v[4] then
  -- A miss on a session with no protocol state: start one, with a random epoch, so that
  -- no lease taken before this key was lost (evicted, or the server restarted) matches it.
  v[4] = ARGV[3]
  redis.call('HSET', key, '\0v', v[4])
  keep(key, tonumber(ARGV[4]))
end
return {v[1], v[3], v[4]}
"""

_CACHE_MARK = r"""
local key, f, hold = KEYS[1], ARGV[2], tonumber(ARGV[3])
local now = now_ms()
local count, deadline = state(key, now)
drop(key, f)
redis.call('HSET', key, '\0c', count + 1, '\0d', math.max(deadline, now + hold))
local epoch = bump(key, ARGV[4])
keep(key, hold)
return epoch
"""

_CACHE_SETTLE = r"""
local key, f, mine = KEYS[1], ARGV[2], tonumber(ARGV[3])
local known, kind = ARGV[4] == '1', ARGV[5]
local now = now_ms()
local count, deadline, epoch = state(key, now)
local hold = tonumber(ARGV[8])
-- The cold version stamp of the change (none: ''), whether its mark landed before the cold
-- call was sent, and the floor (trio_ruts._cache.settles and next_floor, step by step).
local version, ordered = tonumber(ARGV[10]), ARGV[11] == '1'
local floor = tonumber(redis.call('HGET', key, '\0f'))
local alone = mine == epoch and count == 1
local allowed = ordered
if version and floor then allowed = version > floor end
local install = kind ~= '' and alone and allowed
if not known then
  -- Held (below): no settle installs before a late commit of this change has landed.
elseif not version then
  redis.call('HDEL', key, '\0f')
elseif floor then
  if version > floor then redis.call('HSET', key, '\0f', ARGV[10]) end
elseif ordered and alone then
  redis.call('HSET', key, '\0f', ARGV[10])
end
if known then
  -- This change's mark was counted (its epoch is known): take it off.
  if mine and count > 0 then redis.call('HSET', key, '\0c', count - 1) end
else
  -- The outcome is unknown: hold the session as if a change were still in flight.
  redis.call('HSET', key, '\0c', count + 1, '\0d', math.max(deadline, now + hold))
end
drop(key, f)
if install then put(key, f, kind, ARGV[6], tonumber(ARGV[7]), now) end
bump(key, ARGV[9])
keep(key, hold)
-- 1: installed; 2: the floor is known afterwards.
return (install and 1 or 0) + (redis.call('HEXISTS', key, '\0f') * 2)
"""

_CACHE_FILL = r"""
local key, lease = KEYS[1], tonumber(ARGV[2])
local now = now_ms()
local count, _, epoch = state(key, now)
if epoch ~= lease or count > 0 then return 0 end
for i = 4, #ARGV, 4 do
  put(key, ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3]), now)
end
keep(key, tonumber(ARGV[3]) * 1000)
return 1
"""

_CACHE_PUT = r"""
local key, f = KEYS[1], ARGV[2]
-- Whether hot holds the session: a cached value (protocol state alone does not count).
local held = false
for _, name in ipairs(redis.call('HKEYS', key)) do
  if string.byte(name, 1) ~= 0 then held = true break end
end
if ARGV[6] ~= '1' and not held then return -1 end
if ARGV[7] ~= '' then
  -- Under a lease: only if nothing changed the session since it was taken.
  local count, _, epoch = state(key, now_ms())
  if epoch ~= tonumber(ARGV[7]) or count > 0 then return 0 end
end
if ARGV[5] == '1' and redis.call('HEXISTS', key, f) == 1 then return 0 end
put(key, f, 'v', ARGV[3], tonumber(ARGV[4]), now_ms())
return 1
"""

DETECT_HEXPIRE = "return redis.call('COMMAND', 'INFO', 'HEXPIRE')[1] and 1 or 0"


@dataclass(frozen=True)
class Script:
    name: str
    source: bytes
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source).hexdigest())


def _script(name: str, body: str) -> Script:
    return Script(name, (_PRELUDE + body).encode())


# The scripts whose notifying variant may announce a shorter lifetime (see _NOTIFY_HEAD) run
# without it as well: then nothing is watched, and nothing checks for one.
_UNWATCHED = r"""
local watching, watch_recheck = false, false
"""

WRITE = _script("write", _LIFETIMES + _REINDEX + _UNWATCHED + _WRITE)
# The same write with the integer arithmetic defined: increments only, so that other writes
# do not pay for defining it on every call.
WRITE_INCR = _script("write_incr", _LIFETIMES + _INTS + _REINDEX + _UNWATCHED + _WRITE)
GET = _script("get", _GET)
TOUCH_GET = Script(
    "touch_get",
    (
        "local function extend(value, pttl)\n"
        + _PRELUDE
        + _LIFETIMES
        + _EXTEND
        + "end\n"
        + _TOUCH_GET
    ).encode(),
)
GET_ALL = _script("get_all", _LIFETIMES + _GET_ALL)
TOUCH = _script("touch", _LIFETIMES + _TOUCH)
REMOVE = _script("remove", _UNWATCHED + _REMOVE)
DELETE = _script("delete", _DELETE)
EXPIRE = _script("expire", _LIFETIMES + _UNWATCHED + _EXPIRE)
RENAME = _script("rename", _REINDEX + _RENAME)
CACHE_READ = _script("cache_read", _CACHE_PRELUDE + _CACHE_READ)
CACHE_MARK = _script("cache_mark", _CACHE_PRELUDE + _CACHE_MARK)
CACHE_SETTLE = _script("cache_settle", _CACHE_PRELUDE + _CACHE_SETTLE)
CACHE_FILL = _script("cache_fill", _CACHE_PRELUDE + _CACHE_FILL)
CACHE_PUT = _script("cache_put", _CACHE_PRELUDE + _CACHE_PUT)

# -- live revocation (SPEC section 10) -------------------------------------------------------
#
# The notifying variants of the scripts that can end a session: the same body, run as a
# function, then a PUBLISH in the same atomic step when it ended the session under KEYS[1].
# The store appends three ARGV: the command ('PUBLISH'; 'SPUBLISH' on a cluster), the channel
# (``prefix watch:`` and the key after its prefix: ``{tag}digest``, no usable id) and
# the reason ('deleted', 'revoked', 'expired' or 'renamed'). A 'renamed' whose target key
# does not exist afterwards was an expiry (the session was past its cap, or already dead).
# On a cluster, SPUBLISH reaches the subscribers at the master of the channel's slot (the
# key's, by its hash tag).
#
# A session that lives on but may end sooner than its watches think (an expire that
# shortens it, a removed field, an existing field given a lifetime, a write that applies a
# cap) is announced as 'recheck' by the same command: its watches read the
# store again. The body says so by setting watch_recheck.

_NOTIFY_HEAD = r"""
local watch_publish, watch_channel, watch_reason = ARGV[#ARGV - 2], ARGV[#ARGV - 1], ARGV[#ARGV]
local watch_had = redis.call('EXISTS', KEYS[1])
local watching, watch_recheck = true, false
local function op()
"""

_NOTIFY_TAIL = r"""
end
local reply = op()
if watch_had == 1 and redis.call('EXISTS', KEYS[1]) == 0 then
  if watch_reason == 'renamed' and (not KEYS[2] or redis.call('EXISTS', KEYS[2]) == 0) then
    watch_reason = 'expired'
  end
  redis.call(watch_publish, watch_channel, watch_reason)
elseif watch_recheck and watch_had == 1 then
  redis.call(watch_publish, watch_channel, 'recheck')
end
return reply
"""


def _notifying(name: str, helpers: str, body: str) -> Script:
    return _script(name, helpers + _NOTIFY_HEAD + body + _NOTIFY_TAIL)


WRITE_NOTIFY = _notifying("write_notify", _LIFETIMES + _REINDEX, _WRITE)
WRITE_INCR_NOTIFY = _notifying("write_incr_notify", _LIFETIMES + _INTS + _REINDEX, _WRITE)
REMOVE_NOTIFY = _notifying("remove_notify", "", _REMOVE)
DELETE_NOTIFY = _notifying("delete_notify", "", _DELETE)
EXPIRE_NOTIFY = _notifying("expire_notify", _LIFETIMES, _EXPIRE)
RENAME_NOTIFY = _notifying("rename_notify", _REINDEX, _RENAME)
