"""The Lua scripts the Redis store runs server-side (each one atomic on the server).

Argument layout: ``ARGV[1]`` is *now* in milliseconds since the epoch; then a fixed number of
arguments per key of ``KEYS``. Numbers are written back with ``%d`` (a Lua number passed to
``redis.call`` as such could be printed as ``1e+15``). Written for Redis 7 and Valkey 7/8
(``SET ... KEEPTTL``, ``SET ... PXAT``).
"""

from __future__ import annotations

__all__ = ["READ", "RESERVE", "SETTLE"]

#: Per key: amount, capacity, expires_at_ms, lease ('' for a counter). Returns
#: {admitted (1/0), index of the refused charge (1-based, 0 if none), used...}.
RESERVE = """
local now = tonumber(ARGV[1])
local n = #KEYS
local used = {}
for i = 1, n do
  local b = 1 + (i - 1) * 4
  if ARGV[b + 4] ~= '' then
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', ARGV[1])
    used[i] = redis.call('ZCARD', KEYS[i])
  else
    used[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
  end
end
for i = 1, n do
  local b = 1 + (i - 1) * 4
  local amount = tonumber(ARGV[b + 1])
  if amount > 0 and used[i] + amount > tonumber(ARGV[b + 2]) then
    local out = {0, i}
    for j = 1, n do out[j + 2] = used[j] end
    return out
  end
end
for i = 1, n do
  local b = 1 + (i - 1) * 4
  local expires = ARGV[b + 3]
  if ARGV[b + 4] ~= '' then
    redis.call('ZADD', KEYS[i], expires, ARGV[b + 4])
    if redis.call('PTTL', KEYS[i]) < tonumber(expires) - now then
      redis.call('PEXPIREAT', KEYS[i], expires)
    end
    used[i] = used[i] + 1
  else
    used[i] = redis.call('INCRBY', KEYS[i], ARGV[b + 1])
    redis.call('PEXPIREAT', KEYS[i], expires)
  end
end
local out = {1, 0}
for j = 1, n do out[j + 2] = used[j] end
return out
"""

#: Per key: delta, expires_at_ms, lease ('' for a counter). Returns 0.
SETTLE = """
local now = tonumber(ARGV[1])
for i = 1, #KEYS do
  local b = 1 + (i - 1) * 3
  local delta = tonumber(ARGV[b + 1])
  if ARGV[b + 3] ~= '' then
    redis.call('ZREM', KEYS[i], ARGV[b + 3])
  elseif delta ~= 0 then
    local current = redis.call('GET', KEYS[i])
    if current then
      local value = tonumber(current) + delta
      if value < 0 then value = 0 end
      redis.call('SET', KEYS[i], string.format('%d', value), 'KEEPTTL')
    elseif delta > 0 and tonumber(ARGV[b + 2]) > now then
      redis.call('SET', KEYS[i], string.format('%d', delta), 'PXAT', ARGV[b + 2])
    end
  end
end
return 0
"""

#: No per-key arguments. Returns each key's value: a counter's, or a lease set's live leases.
READ = """
local out = {}
for i = 1, #KEYS do
  local kind = redis.call('TYPE', KEYS[i])['ok']
  if kind == 'zset' then
    out[i] = redis.call('ZCOUNT', KEYS[i], '(' .. ARGV[1], '+inf')
  elseif kind == 'string' then
    out[i] = tonumber(redis.call('GET', KEYS[i]))
  else
    out[i] = 0
  end
end
return out
"""
