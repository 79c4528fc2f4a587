"""Lua scripts of the cluster bucket. Each runs atomically inside Redis and reads the time from
Redis (``TIME``), so hosts' clocks never matter. They implement the rules of ``bucket.py`` in
milliseconds, on one hash per limiter key:

``cooldown_until`` (ms), and per band the queue ``<band>:tokens`` / ``<band>:ts`` and the gate
``<band>:gtokens`` / ``<band>:gts``. The key expires once every bucket would be full again and no
cooldown runs, so idle keys leave nothing behind.
"""

from ccxt_questdb_assets.ratelimit.bucket import GATE_SLACK_S, HELD_LATE_S

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
-- level of one bucket (tokens, ts fields) of a band refilled to now
local function level(tf, sf, rate, cap)
  local vals = redis.call('HMGET', key, tf, sf)
  local tokens = tonumber(vals[1])
  local ts = tonumber(vals[2])
  if tokens == nil or ts == nil then tokens = cap; ts = now end
  if now > ts then tokens = math.min(cap, tokens + (now - ts) * rate); ts = now end
  return tokens, ts
end
local function deficit(tokens, ts, rate, cap, cost)
  return math.max(0, ts - now) + math.max(0, math.min(cost, cap) - tokens) / rate
end
local SLACK_MS = @SLACK_MS@
local cd = tonumber(redis.call('HGET', key, 'cooldown_until') or '0') or 0
""".replace("@SLACK_MS@", repr(GATE_SLACK_S * 1000.0))

# The gate check and charge shared by RESERVE and ADMIT. ARGV from ``base``: nbands, then
# (name, rate per ms, capacity, cost) per band. Returns the gate's wait in ms (0: within the slack).
# The gate is charged when the wait is 0, or always with ``always`` (ADMIT: the caller then holds
# the gate's next token and sleeps the wait).
_GATE = """
local function gate(base, always)
  local n = tonumber(ARGV[base])
  local wait = 0
  local lv = {}
  for i = 0, n - 1 do
    local name = ARGV[base + 1 + i * 4]
    local rate = tonumber(ARGV[base + 2 + i * 4])
    local cap = tonumber(ARGV[base + 3 + i * 4])
    local cost = tonumber(ARGV[base + 4 + i * 4])
    local tokens, ts = level(name .. ':gtokens', name .. ':gts', rate, cap)
    local w = deficit(tokens, ts, rate, cap, cost)
    if w > wait then wait = w end
    lv[#lv + 1] = {name, tokens, ts, rate, cap, cost}
  end
  if wait <= SLACK_MS then wait = 0 end
  if wait > 0 and not always then return wait end
  local ttl = 0
  for _, b in ipairs(lv) do
    local tokens = b[2] - b[6]
    redis.call('HSET', key, b[1] .. ':gtokens', num(tokens), b[1] .. ':gts', num(b[3]))
    local full = (b[3] - now) + (b[5] - tokens) / b[4]
    if full > ttl then ttl = full end
  end
  if #lv > 0 then keep_for(ttl) end
  return wait
end
"""

#: ARGV: nbands, then (name, rate per ms, capacity, cost) per band.
#: Returns {0, rest_ms} while a cooldown runs; {1, wait_ms, admitted}: the turn is taken, and either
#: the gate let it through (admitted 1, go now) or the caller sleeps wait_ms and calls ADMIT.
RESERVE = (
    _PRELUDE
    + _GATE
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
  local tokens, ts = level(name .. ':tokens', name .. ':ts', rate, cap)
  local w = deficit(tokens, ts, rate, cap, cost)
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
if wait > 0.001 then return {1, num(wait), 0} end
local g = gate(1, false)
if g > 0 then return {1, num(g), 0} end
return {1, '0', 1}
"""
)

#: After sleeping for a turn. ARGV: held_at (ms of the held gate slot, '' if none), then as
#: RESERVE. Returns {0, rest_ms} while a cooldown runs (refund, wait, reserve again), {2, wait_ms,
#: slot_ms} when late callers took the gate's tokens (the token at slot_ms is now held: sleep, ADMIT
#: again with held_at = slot_ms), {1, 0} when admitted. A held caller more than HELD_LATE_MS
#: after its slot passes the gate again.
ADMIT = (
    _PRELUDE
    + _GATE
    + """
if cd > now then return {0, num(cd - now)} end
local held_at = tonumber(ARGV[1])
if held_at ~= nil and now <= held_at + @HELD_LATE_MS@ then return {1, '0'} end
local g = gate(2, true)
if g > 0 then return {2, num(g), num(now + g)} end
return {1, '0'}
""".replace("@HELD_LATE_MS@", repr(HELD_LATE_S * 1000.0))
)

#: ARGV: gate (1: give the held gate token back too), nbands, then (name, capacity, cost) per band.
#: Gives an unused turn back.
REFUND = """
local key = KEYS[1]
local gate = ARGV[1] == '1'
local n = tonumber(ARGV[2])
local function give(field, cap, cost)
  local tokens = tonumber(redis.call('HGET', key, field))
  if tokens ~= nil then
    redis.call('HSET', key, field, string.format('%.17g', math.min(cap, tokens + cost)))
  end
end
for i = 0, n - 1 do
  local name = ARGV[3 + i * 3]
  local cap = tonumber(ARGV[4 + i * 3])
  local cost = tonumber(ARGV[5 + i * 3])
  give(name .. ':tokens', cap, cost)
  if gate then give(name .. ':gtokens', cap, cost) end
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
  for _, f in ipairs({{':tokens', ':ts'}, {':gtokens', ':gts'}}) do
    local tokens, ts = level(name .. f[1], name .. f[2], rate, cap)
    tokens = math.min(tokens, 0)
    ts = math.max(ts, cd_end)
    local full = (ts - now) + (cap - tokens) / rate
    if full > ttl then ttl = full end
    redis.call('HSET', key, name .. f[1], num(tokens), name .. f[2], num(ts))
  end
end
keep_for(ttl)
return num(cd_end - now)
"""
)
