#!/usr/bin/env python3
# How long a change made through one daemon takes to show in another daemon's candidates
# (docs/performance.md, "Coherence between daemons"). Start two daemons on one PostgreSQL
# database with the demo config and data on ports 7881 and 7882 first (docs/deploy.md).
import json, time, urllib.request, statistics
def call(method, url, token, body=None):
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())
A, B = "http://127.0.0.1:7881", "http://127.0.0.1:7882"
dialog = B + "/v1/conversations/c-1/candidates?action=assign&target=representative&explain=true&limit=1000"
lat = []
for i in range(60):
    presence = "offline" if i % 2 == 0 else "available"
    t0 = time.perf_counter()
    call("PATCH", A + "/v1/representatives/ann", "demo-integration", {"presence": presence})
    while True:
        d = call("GET", dialog, "demo-supervisor")
        ids = [c["id"] for c in d["candidates"]]
        if (presence == "offline") == ("ann" not in ids):
            break
    lat.append((time.perf_counter() - t0) * 1000)
lat.sort()
print("n=%d median=%.1f ms p90=%.1f ms max=%.1f ms" % (len(lat), statistics.median(lat), lat[int(len(lat)*0.9)], lat[-1]))
