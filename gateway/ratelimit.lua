-- GCRA (generic cell rate algorithm) over several keys at once: all of them admit, or none is charged.
--
-- KEYS[i]          one bucket's key
-- ARGV[2i - 1]     its emission interval T in microseconds (1e6 / rate), an integer >= 1
-- ARGV[2i]         its burst, an integer >= 1
--
-- A key holds its theoretical arrival time (TAT) in microseconds. A request at `now` is admitted when
-- max(TAT, now) + T - burst * T <= now; admitting moves the TAT to max(TAT, now) + T. A TAT in the past
-- means the same as no key, so each key expires when its TAT passes and idle buckets vanish.
--
-- Time is Redis's own (TIME), one clock for every gateway process, whatever their hosts' clocks say.
-- Numbers near 1.7e15 are exact in Lua's doubles (< 2^53) but tostring() would print only 14 digits,
-- so every number that goes back to Redis is formatted with %.0f.
--
-- Returns {admitted (0/1), retry_after_us (max over refusing keys, 0 when admitted),
--          remaining (min over keys), reset_us (until the tightest key is back to full burst),
--          tightest (index of the key with the least remaining), refused (indexes of refusing keys)}.

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])

local tats, intervals, bursts, refused = {}, {}, {}, {}
local retry_after = 0

for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tat = math.max(tonumber(redis.call('GET', key)) or now, now)
  local allow_at = tat + interval - burst * interval
  if allow_at > now then
    refused[#refused + 1] = i
    retry_after = math.max(retry_after, allow_at - now)
  end
  tats[i], intervals[i], bursts[i] = tat, interval, burst
end

local admitted = 0
if #refused == 0 then
  admitted = 1
  for i, key in ipairs(KEYS) do
    tats[i] = tats[i] + intervals[i]
    redis.call('SET', key, string.format('%.0f', tats[i]),
               'PX', string.format('%.0f', math.ceil((tats[i] - now) / 1000)))
  end
end

-- What each key has left after this request (nothing was charged if it was refused).
local remaining, reset, tightest = -1, 0, 0
for i = 1, #KEYS do
  local left = math.max(0, math.floor((now + bursts[i] * intervals[i] - tats[i]) / intervals[i]))
  local full = tats[i] - now
  if tightest == 0 or left < remaining or (left == remaining and full > reset) then
    remaining, reset, tightest = left, full, i
  end
end

return {admitted, retry_after, remaining, reset, tightest, refused}
