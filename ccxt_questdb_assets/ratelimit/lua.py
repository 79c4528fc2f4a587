"""Lua scripts of the cluster bucket. Each runs atomically inside Redis and reads the time from
Redis (``TIME``), so hosts' clocks never matter. They implement the rules of ``bucket.py`` in
milliseconds, on one hash per limiter key:

``cooldown_until`` (ms), and per band ``<band>:tokens`` / ``<band>:ts``. The key expires once
every band would be full again and no cooldown runs, so idle keys leave nothing behind.
"""

_PRELUDE = """
-- Redis < 5 replicates scripts verbatim and forbids writes after TIME unless told otherwise.
if redis.replicate_commands then pcall(redis.replicate_commands) end
local key = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local function num(x) return string.format('%.17g', x) end
local function keep_for(ms)
  local want = math.ceil(ms + 1000)
  local pttl = redis.call('PTTL', key)
  if pttl < want then redis.call('PEXPIRE', key, want) end
end
local cd = tonumber(redis.call('HGET', key, 'cooldown_until') or '0') or 0
"""

#: ARGV: nbands, then (name, rate per ms, capacity, cost) per band.
#: Returns {1, wait_ms} once reserved (sleep wait_ms, then go), {0, rest_ms} while a cooldown runs.
RESERVE = (
    _PRELUDE
    + """
if cd > now then
  return {0, num(cd - now)}
end
local n = tonumber(ARGV[1])
local wait = 0
local ttl = 0
local updates = {}
for i = 0, n - 1 do
  local name = ARGV[2 + i * 4]
  local rate = tonumber(ARGV[3 + i * 4])
  local cap = tonumber(ARGV[4 + i * 4])
  local cost = tonumber(ARGV[5 + i * 4])
  local vals = redis.call('HMGET', key, name .. ':tokens', name .. ':ts')
  local tokens = tonumber(vals[1])
  local ts = tonumber(vals[2])
  if tokens == nil or ts == nil then tokens = cap; ts = now end
  if now > ts then tokens = math.min(cap, tokens + (now - ts) * rate); ts = now end
  local need = math.min(cost, cap)
  local w = math.max(0, ts - now) + math.max(0, need - tokens) / rate
  if w > wait then wait = w end
  tokens = tokens - cost
  local full = (ts - now) + (cap - tokens) / rate
  if full > ttl then ttl = full end
  updates[#updates + 1] = name .. ':tokens'
  updates[#updates + 1] = num(tokens)
  updates[#updates + 1] = name .. ':ts'
  updates[#updates + 1] = num(ts)
end
if #updates > 0 then
  redis.call('HSET', key, unpack(updates))
  keep_for(ttl)
end
return {1, num(wait)}
"""
)

#: After sleeping for a reservation: the cooldown still to wait in ms ("0": go).
CONFIRM = (
    _PRELUDE
    + """
if cd > now then return num(cd - now) end
return '0'
"""
)

#: ARGV: nbands, then (name, capacity, cost) per band. Gives an unused reservation back.
REFUND = """
local key = KEYS[1]
local n = tonumber(ARGV[1])
for i = 0, n - 1 do
  local name = ARGV[2 + i * 3]
  local cap = tonumber(ARGV[3 + i * 3])
  local cost = tonumber(ARGV[4 + i * 3])
  local tokens = tonumber(redis.call('HGET', key, name .. ':tokens'))
  if tokens ~= nil then
    redis.call('HSET', key, name .. ':tokens', string.format('%.17g', math.min(cap, tokens + cost)))
  end
end
return 1
"""

#: ARGV: cooldown_ms, nbands, then (name, rate per ms, capacity) per band.
#: Starts or extends the shared cooldown; returns its remaining length in ms.
PENALIZE = (
    _PRELUDE
    + """
local cd_end = math.max(cd, now + tonumber(ARGV[1]))
redis.call('HSET', key, 'cooldown_until', num(cd_end))
local ttl = cd_end - now
local n = tonumber(ARGV[2])
for i = 0, n - 1 do
  local name = ARGV[3 + i * 3]
  local rate = tonumber(ARGV[4 + i * 3])
  local cap = tonumber(ARGV[5 + i * 3])
  local vals = redis.call('HMGET', key, name .. ':tokens', name .. ':ts')
  local tokens = tonumber(vals[1])
  local ts = tonumber(vals[2])
  if tokens == nil or ts == nil then tokens = cap; ts = now end
  if now > ts then tokens = math.min(cap, tokens + (now - ts) * rate); ts = now end
  tokens = math.min(tokens, 0)
  ts = math.max(ts, cd_end)
  local full = (ts - now) + (cap - tokens) / rate
  if full > ttl then ttl = full end
  redis.call('HSET', key, name .. ':tokens', num(tokens), name .. ':ts', num(ts))
end
keep_for(ttl)
return num(cd_end - now)
"""
)
