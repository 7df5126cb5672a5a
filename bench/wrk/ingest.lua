-- wrk script for bench/ingest.sh: one static request per connection, optional
-- rate limiting, and a machine-readable summary line.
--
-- Environment (all optional):
--   BENCH_METHOD   GET | POST                          (default GET)
--   BENCH_BODY     file whose bytes are the request body (POST)
--   BENCH_BODIES   files separated by ':' sent in turn instead of one BENCH_BODY
--   BENCH_AUTH     value of the Authorization header
--   BENCH_CTYPE    Content-Type of the body              (default application/json)
--   BENCH_THINK_MS mean think time per connection in ms; unset or 0 = as fast as possible
--   BENCH_EVENTS   events per request (only echoed in the summary)
--
-- With BENCH_THINK_MS each connection waits a random, exponentially distributed think
-- time after each response before it sends its next request: a closed loop with
-- Poisson-like think times, which is how bench/ingest.sh offers a chosen load (wrk2's
-- open loop is not packaged in Debian). The rate is then about
-- connections / (think + latency); the script calibrates the think time and reports the
-- rate reached. Latency is measured by wrk from the request's first write to the
-- response's last byte, so it excludes the think time.

local env = os.getenv

wrk.method = env("BENCH_METHOD") or "GET"
local body_file = env("BENCH_BODY")
if body_file and body_file ~= "" then
  local f = assert(io.open(body_file, "rb"))
  wrk.body = f:read("*a")
  f:close()
  wrk.headers["Content-Type"] = env("BENCH_CTYPE") or "application/json"
end
-- BENCH_BODIES: files separated by ':' sent in turn (varied events, e.g. user agents)
local bodies = {}
local list = env("BENCH_BODIES")
if list and list ~= "" then
  for name in string.gmatch(list, "[^:]+") do
    local h = assert(io.open(name, "rb"))
    bodies[#bodies + 1] = h:read("*a")
    h:close()
  end
  wrk.headers["Content-Type"] = env("BENCH_CTYPE") or "application/json"
  local turn = 0
  function request()
    turn = turn % #bodies + 1
    return wrk.format(nil, nil, nil, bodies[turn])
  end
end
local auth = env("BENCH_AUTH")
if auth and auth ~= "" then wrk.headers["Authorization"] = auth end
wrk.headers["User-Agent"] = "sluice-bench/1"

local mean_ms = tonumber(env("BENCH_THINK_MS") or "")
if mean_ms and mean_ms > 0 then
  math.randomseed(os.time())
  function delay()
    local u = math.random()
    if u < 1e-12 then u = 1e-12 end
    local d = -mean_ms * math.log(u)
    -- wrk takes whole milliseconds: round at random so the mean stays mean_ms
    return math.floor(d + math.random())
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d bytes=%d p50_us=%d p90_us=%d p99_us=%d p999_us=%d " ..
    "max_us=%d mean_us=%.1f err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d events_per_req=%s\n",
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout, env("BENCH_EVENTS") or "1"))
end
