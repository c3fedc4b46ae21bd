-- wrk script: POST /v1/fractal with a new uuid each time, so every request
-- inserts a row. The uuids are time-ordered like the UUIDv7 the producer
-- and the API generate (48 bits of milliseconds first). In the environment,
-- UUIDS=v4 sends random version-4 uuids instead, as an old client would,
-- and UUIDS=none sends none (the API generates them).
-- usage: wrk -t2 -c64 -d20s --latency -s post.lua http://127.0.0.1:5000

local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("thread_id", counter)
end

local random_uuids = os.getenv("UUIDS") == "v4"
local no_uuids = os.getenv("UUIDS") == "none"
local sequence = 0

function init(args)
  math.randomseed(os.time() * 1000 + (thread_id or 0) * 7919 + math.floor(os.clock() * 1e6))
end

local function hex(n)
  local out = {}
  for i = 1, n do
    out[i] = string.format("%x", math.random(0, 15))
  end
  return table.concat(out)
end

local function v7()
  -- Seconds, the thread, then a per-thread sequence stand in for the
  -- milliseconds and the counter of a real UUIDv7: what matters here is
  -- that each thread's uuids ascend.
  sequence = sequence + 1
  return string.format("%08x-%04x-7%03x-a%03x-", os.time(), thread_id or 0,
    math.floor(sequence / 4096) % 4096, sequence % 4096) .. hex(12)
end

function request()
  local uuid
  if random_uuids then
    uuid = hex(8) .. "-" .. hex(4) .. "-4" .. hex(3) .. "-a" .. hex(3) .. "-" .. hex(12)
  else
    uuid = v7()
  end
  local head = no_uuids and '{' or ('{"uuid":"' .. uuid .. '",')
  local body = head .. '"width":510,"height":278,"iterations":281,'
    .. '"xa":-3.3528957195683087,"xb":1.1428457603077387,"ya":-2.1341119130263717,"yb":2.478654026560605}'
  return wrk.format("POST", "/v1/fractal", {["Content-Type"] = "application/json"}, body)
end

local statuses = {}

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  io.write(string.format("non-2xx or socket errors: %d / %d\n",
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.requests))
end
