-- wrk script: print the run's figures as one JSON line (read by bench/read_api_bench.py).
done = function(summary, latency, requests)
  local points = {}
  local qs = {1, 5, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 95, 97.5, 99, 99.5, 99.9, 99.99}
  for _, q in ipairs(qs) do
    table.insert(points, string.format('[%g, %d]', q, latency:percentile(q)))
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"min": %d, "max": %d, "mean": %.1f, "stdev": %.1f, "percentiles": [%s]}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.max, latency.mean, latency.stdev, table.concat(points, ', ')))
end
