"""`GET /api/kernelspecs` with 1,000 environments, against the floor of jupyter_client's own reading (issue 14).

In one run, requests interleaved:
  envmgr  a jupyter server with the extension and a root of 1,000 ready environments (their kernelspecs
          written by the server's resync at start, read through CachingKernelSpecManager)
  floor   a jupyter server without the extension, listing its built-in kernel plus the same 1,000
          kernelspecs copied as plain ones into one directory on its JUPYTER_PATH (jupyter_client's reading)
Targets: envmgr p95 <= 100 ms and <= 1.5x the floor's p95.

    python benchmarks/bench_discovery.py [--envs 1000] [--requests 100]
"""
import argparse
import json
import os
import shutil
import statistics
import sys

from seed import get, p, plain_server, seeded_server, timed_gets

from jupyter_envmgr.demo import free_port  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--envs", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    base, root, server = seeded_server("discovery", args.envs)
    plain_dir = os.path.join(base, "plain", "kernels")
    shutil.copytree(os.path.join(root, "jupyter", "kernels"), plain_dir)
    port, token = free_port(), "t" + os.urandom(8).hex()
    floor = plain_server(os.path.join(base, "floor"), port, token, os.path.join(base, "plain"))
    ours_url = f"http://127.0.0.1:{server.port}/api/kernelspecs"
    floor_url = f"http://127.0.0.1:{port}/api/kernelspecs"
    try:
        ours_n = len(json.loads(get(ours_url, server.token)[1])["kernelspecs"])
        floor_n = len(json.loads(get(floor_url, token)[1])["kernelspecs"])
        assert ours_n == floor_n == args.envs + 1, (ours_n, floor_n)
        ours, theirs = [], []
        for _ in range(args.requests // 10):  # interleaved, so drift in the machine hits both alike
            ours += timed_gets(ours_url, server.token, 10)
            theirs += timed_gets(floor_url, token, 10)
    finally:
        server.stop()
        floor.terminate()
        floor.wait(timeout=30)
        shutil.rmtree(base, ignore_errors=True)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; {ours_n} kernelspecs each")
    print(f"/api/kernelspecs, envmgr with {args.envs} environments: median {statistics.median(ours):.1f} ms, p95 {p(ours, .95):.1f} ms")
    print(f"/api/kernelspecs, plain server, {args.envs} plain specs:     median {statistics.median(theirs):.1f} ms, p95 {p(theirs, .95):.1f} ms")
    ratio = p(ours, .95) / p(theirs, .95)
    ok = p(ours, .95) <= 100 and ratio <= 1.5
    print(f"p95 ratio envmgr / floor: {ratio:.2f} (target <= 1.5), p95 target <= 100 ms: {'OK' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
