"""The environments list at 1,000 environments, and 50 idle panels following /events (issue 14).

In one run, one server with a root of 1,000 ready environments:
  list      100 sequential GET /envmgr/api/environments (full body), p50/p95
  304       100 more with If-None-Match: the ETag of the first (nothing changed: 304, no body)
  floor     100 GET /api/status of the same server (what any request costs here)
  idle      the server's CPU over 20 s with no client, then over 20 s with 50 clients holding
            GET /envmgr/api/events open (what 50 open panels cost once they follow the feed)
Targets: list p95 <= 30 ms; unchanged answers 304; with 50 idle panels the server's CPU < 5 % of a core.

    cd benchmarks && python bench_list.py
"""
import argparse
import http.client
import os
import shutil
import statistics
import sys
import threading
import time

from seed import cpu_share, get, p, seeded_server, timed_gets

CLIENTS = 50


def hold_streams(port: int, token: str, count: int, stop: threading.Event) -> list:
    """`count` open /events streams, each read by its own thread until `stop`; returns the bytes each got."""
    got = [0] * count
    ready = threading.Barrier(count + 1)

    def follow(i):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", "/envmgr/api/events", headers={"Authorization": f"token {token}"})
        resp = conn.getresponse()
        assert resp.status == 200
        got[i] += len(resp.fp.readline())  # ": connected"
        ready.wait()
        conn.sock.settimeout(0.5)
        while not stop.is_set():
            try:
                got[i] += len(resp.fp.read1(65536))
            except OSError:
                continue
        conn.close()

    for i in range(count):
        threading.Thread(target=follow, args=(i,), daemon=True).start()
    ready.wait()
    return got


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--envs", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    base, root, server = seeded_server("list", args.envs, gc_interval=0)
    url = f"http://127.0.0.1:{server.port}/envmgr/api/environments"
    try:
        status, body, headers = get(url, server.token)
        etag = headers["Etag"]
        assert status == 200 and body.count(b'"name"') >= args.envs
        assert get(url, server.token, {"If-None-Match": etag})[0] == 304
        full = timed_gets(url, server.token, 100)
        cached = timed_gets(url, server.token, 100, {"If-None-Match": etag})
        floor = timed_gets(f"http://127.0.0.1:{server.port}/api/status", server.token, 100)
        time.sleep(2)
        idle = cpu_share(server.proc.pid, args.seconds)
        stop = threading.Event()
        got = hold_streams(server.port, server.token, CLIENTS, stop)
        time.sleep(1)
        followed = cpu_share(server.proc.pid, args.seconds)
        stop.set()
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    load = os.getloadavg()[0]
    print(f"load average {load:.2f} on {os.cpu_count()} cores; {args.envs} environments; list body {len(body) // 1024} KiB")
    print(f"list, full body:          median {statistics.median(full):.1f} ms, p95 {p(full, .95):.1f} ms")
    print(f"list, If-None-Match (304): median {statistics.median(cached):.1f} ms, p95 {p(cached, .95):.1f} ms")
    print(f"floor, GET /api/status:    median {statistics.median(floor):.1f} ms, p95 {p(floor, .95):.1f} ms")
    print(f"list p95 / floor p95: {p(full, .95) / p(floor, .95):.1f}x")
    print(f"server CPU, idle, no client:            {idle * 100:.2f} % of a core over {args.seconds:.0f} s")
    print(f"server CPU, {CLIENTS} idle /events clients:    {followed * 100:.2f} % of a core over {args.seconds:.0f} s "
          f"(+{(followed - idle) * 100:.2f} points; {sum(got)} bytes to the clients)")
    ok = p(full, .95) <= 30 and followed < 0.05
    print(f"targets: list p95 <= 30 ms, 304 when unchanged, CPU < 5 % with {CLIENTS} panels: {'OK' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
