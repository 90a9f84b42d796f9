"""Server start with 1,000 environments against the same server with 10 (issue 14).

Start = process launch → the first 200 of `GET /envmgr/api/environments` (requests wait for the
reconcile at start, so this includes reading every record and resyncing every kernelspec). Each root is
started once before measuring (its kernelspecs then exist, as on every start but the first), then the two
are started in turn. Target: the 1,000 start's median within 1 s of the 10 start's.

    cd benchmarks && python bench_start.py [--runs 5]
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.error

from seed import get, seed_root

from jupyter_envmgr.demo import free_port, start_server


def start_once(base: str, root: str, expect: int) -> float:
    port, token = free_port(), "t" + os.urandom(8).hex()
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    started = time.perf_counter()
    proc = start_server(base, port, token, {"root_dir": root, "default_python": python, "gc_interval": 0})
    try:
        while True:
            try:
                status, body, _ = get(f"http://127.0.0.1:{port}/envmgr/api/environments", token)
                took = time.perf_counter() - started
                assert len(json.loads(body)["environments"]) == expect
                return took
            except (OSError, urllib.error.URLError):
                assert proc.poll() is None, "the server died"
                time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--envs", type=int, default=1000)
    args = parser.parse_args()
    base = tempfile.mkdtemp(prefix="envmgr-bench-start-")
    roots = {10: os.path.join(base, "root-10"), args.envs: os.path.join(base, f"root-{args.envs}")}
    times = {n: [] for n in roots}
    try:
        for n, root in roots.items():
            seed_root(root, n)
            first = start_once(os.path.join(base, f"first-{n}"), root, n)
            print(f"first start of {n} (writes {n} kernelspecs): {first:.2f} s", flush=True)
        for i in range(args.runs):
            for n, root in roots.items():
                times[n].append(start_once(os.path.join(base, f"run-{n}-{i}"), root, n))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    small, big = statistics.median(times[10]), statistics.median(times[args.envs])
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"start until the list answers, 10 environments:    median {small:.2f} s over {args.runs} runs")
    print(f"start until the list answers, {args.envs} environments: median {big:.2f} s over {args.runs} runs")
    print(f"difference {big - small:+.2f} s (target <= 1 s): {'OK' if big - small <= 1 else 'MISSED'}")
    return 0 if big - small <= 1 else 1


if __name__ == "__main__":
    sys.exit(main())
