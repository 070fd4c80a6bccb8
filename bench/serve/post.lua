-- wrk script for bench/serve.sh: POST the file named by $BODY as JSON, and
-- print the figures as one JSON line (latencies in microseconds) at the end.
local path = os.getenv("BODY")
local f = assert(io.open(path, "rb"), "BODY: cannot open " .. tostring(path))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"duration_us": %d, "requests": %d, "bytes": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "max_us": %d, "mean_us": %.1f, "non2xx": %d, "connect_errors": %d, ' ..
    '"read_errors": %d, "write_errors": %d, "timeouts": %d}\n',
    summary.duration, summary.requests, summary.bytes, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max, latency.mean, e.status,
    e.connect, e.read, e.write, e.timeout))
end
