-- wrk script for bench/soak.sh: batches of 20 events from users drawn from a million,
-- with varied products, pages, campaigns and user agents, so every bounded structure
-- (profiles, dedup ids, rollup values, the user-agent cache) fills up to its bound.
--
-- Environment: BENCH_AUTH (Authorization header), BENCH_THINK_MS (mean think time per
-- connection, exponential; 0 or unset: as fast as possible).
local env = os.getenv
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = env("BENCH_AUTH")
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)

local events = {"Product Viewed", "Product Viewed", "Product Viewed", "Product Added",
                "Checkout Started", "Order Completed"}
local sources = {"google", "newsletter", "facebook", "bing", "partner"}
local uas = {
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15",
  "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36",
}

local function event()
  local u = math.random(1000000)
  local name = events[math.random(#events)]
  local p = math.random(2000)
  local rev = name == "Order Completed" and string.format(',"revenue":%d.99', math.random(200)) or ""
  return string.format(
    '{"type":"track","event":"%s","userId":"u-%d","anonymousId":"a-%d",' ..
    '"properties":{"product_id":"P%d"%s},"context":{"userAgent":"%s",' ..
    '"page":{"url":"https://shop.example/p/%d?utm_source=%s&utm_campaign=c%d","path":"/p/%d"}}}',
    name, u, u, p, rev, uas[math.random(#uas)], p, sources[math.random(#sources)],
    math.random(50), p)
end

function request()
  local b = {}
  for i = 1, 20 do b[i] = event() end
  return wrk.format(nil, nil, nil, '{"batch":[' .. table.concat(b, ",") .. ']}')
end

local mean_ms = tonumber(env("BENCH_THINK_MS") or "")
if mean_ms and mean_ms > 0 then
  function delay()
    local u = math.random()
    if u < 1e-12 then u = 1e-12 end
    return math.floor(-mean_ms * math.log(u) + math.random())
  end
end

function done(summary, latency, requests)
  io.write(string.format("BENCH requests=%d errors=%d p99_us=%d\n", summary.requests,
    summary.errors.status + summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout, latency:percentile(99)))
end
