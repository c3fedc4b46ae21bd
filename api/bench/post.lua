-- wrk script: POST /v1/fractal with a new random uuid each time (as the
-- producer does), so every request inserts a row.
-- usage: wrk -t2 -c64 -d20s --latency -s post.lua http://127.0.0.1:5000

local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("thread_id", counter)
end

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

function request()
  local uuid = hex(8) .. "-" .. hex(4) .. "-4" .. hex(3) .. "-a" .. hex(3) .. "-" .. hex(12)
  local body = '{"uuid":"' .. uuid .. '","width":510,"height":278,"iterations":281,'
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
