#!/usr/bin/env python3
# Usage: channel-flood.py PORT HUB_PID N — see docs/SECURITY.md ("Measured: RSS under attack").
"""Attack 1 of the abuse issue: one ~60 KiB publish to each of N new channel names.
Prints the hub's RSS (from /proc) before, after, and the hub's /api/stats history figures."""
import http.client, json, sys, time
port, pid, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024
body = json.dumps("x" * 60000)
conn = http.client.HTTPConnection("127.0.0.1", port)
start = time.time(); before = rss(); peak = before; codes = {}
for i in range(n):
    conn.request("POST", f"/api/publish/flood{i}", body, {"Content-Type": "application/json"})
    r = conn.getresponse(); r.read(); codes[r.status] = codes.get(r.status, 0) + 1
    if i % 1000 == 0: peak = max(peak, rss())
peak = max(peak, rss())
conn.request("GET", "/api/stats"); stats = json.loads(conn.getresponse().read())
print(json.dumps({"channels_asked": n, "statuses": codes, "rss_before_mib": before, "rss_peak_mib": peak,
  "rss_after_mib": rss(), "seconds": round(time.time() - start, 1),
  "hub_channels": stats.get("channels"), "history_bytes": stats.get("history_bytes"), "history_shed": stats.get("history_shed")}))
