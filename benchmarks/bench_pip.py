"""Create→ready of a pip environment through the REST API, against raw uv and against venv + pip.

In one run, with a warm cache for both uv paths:
  envmgr  POST /envmgr/api/environments {"packages": "requests"} (+ ipykernel, a base package) until ready
  uv      uv venv + uv pip install ipykernel requests into a scratch dir, same interpreter, same cache
  pip     python -m venv + pip install ipykernel requests (what users do today; pip's own warm cache)
Prints the medians and the ratio envmgr/uv (target: at most 1.2).

    python benchmarks/bench_pip.py [--runs 5]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import uv

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

from helpers import Server  # noqa: E402  (the tests' real-server helper)

PACKAGES = ["ipykernel", "requests"]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def through_api(server: Server, name: str) -> float:
    def build():
        server.client.create({"name": name, "packages": "requests\n"})
        for _ in server.client.follow_log(name):
            pass
        record = server.client.get(name)
        assert record["status"] == "ready", record
    return timed(build)


def raw_uv(scratch: str, cache: str) -> float:
    env = dict(os.environ, UV_CACHE_DIR=cache, UV_PYTHON_DOWNLOADS="never", VIRTUAL_ENV="")
    uv_bin = uv.find_uv_bin()
    prefix = os.path.join(scratch, f"uv-{time.monotonic_ns()}")

    def build():
        subprocess.run([uv_bin, "venv", "--no-project", "--python", sys.executable, prefix], env=env, check=True, capture_output=True)
        subprocess.run([uv_bin, "pip", "install", "--python", os.path.join(prefix, "bin", "python"), *PACKAGES], env=env, check=True, capture_output=True)
    return timed(build)


def venv_pip(scratch: str) -> float:
    prefix = os.path.join(scratch, f"pip-{time.monotonic_ns()}")

    def build():
        subprocess.run([sys.executable, "-m", "venv", prefix], check=True, capture_output=True)
        subprocess.run([os.path.join(prefix, "bin", "python"), "-m", "pip", "install", "-q", *PACKAGES], check=True, capture_output=True)
    return timed(build)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    base = tempfile.mkdtemp(prefix="envmgr-bench-")
    root, cache, scratch = (os.path.join(base, d) for d in ("root", "root/cache/uv", "scratch"))
    os.makedirs(scratch)
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    # reuse_revisions off: every run installs (the same lock would otherwise be a hard-linked copy, bench_recreate.py)
    server = Server(os.path.join(base, "server"), root, cache, default_python=python, max_concurrent_builds=1,
                    reuse_revisions=False)
    try:
        through_api(server, "warmup")  # fills the cache for both uv paths
        raw_uv(scratch, cache)
        api_times, uv_times = [], []
        for i in range(args.runs):  # interleaved, so drift in the machine hits both alike
            api_times.append(through_api(server, f"bench-{i}"))
            uv_times.append(raw_uv(scratch, cache))
        pip_time = venv_pip(scratch)
        venv_pip_time = min(pip_time, venv_pip(scratch))  # second run has pip's cache warm
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    api_med, uv_med = statistics.median(api_times), statistics.median(uv_times)
    print(f"create->ready via REST API (ipykernel requests, warm cache): median {api_med:.3f} s over {args.runs} runs")
    print(f"raw uv venv + uv pip install (same packages, same cache):     median {uv_med:.3f} s over {args.runs} runs")
    print(f"python -m venv + pip install (users' baseline today):        {venv_pip_time:.3f} s")
    print(f"ratio envmgr / raw uv: {api_med / uv_med:.2f}  (target <= 1.2)")
    print(f"ratio venv+pip / envmgr: {venv_pip_time / api_med:.1f}x slower than envmgr")
    return 0


if __name__ == "__main__":
    sys.exit(main())
