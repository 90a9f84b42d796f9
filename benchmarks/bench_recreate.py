"""Instant re-create (issue 14): create→ready of an environment whose lock equals a ready revision's,
against a warm raw uv install of the same lock, in one run.

  envmgr  POST /envmgr/api/environments {"packages": "numpy\\npandas\\n"} while another environment with
          the same packages is ready: the server resolves the lock (uv pip compile), finds the ready
          revision with the same lock and makes the new revision a hard-linked copy of it; the clock
          stops when `/events` (opened before the POST) says the environment is ready
  uv      uv venv + uv pip install -r <that lock> into a scratch dir, same interpreter, same warm cache
Target: envmgr <= 0.5 s.

The index of the run (both sides use it, as their default index, through UV_DEFAULT_INDEX):
  --index local   (default) a PEP 503 index on loopback serving the wheels that `pip download` fetched
                  for the packages and ipykernel (kept in --wheels between runs), threaded, and sending
                  `Cache-Control: max-age=600, public` on its simple pages as the public index does, so
                  uv's HTTP cache works the way it does in production
  --index default whatever uv is configured to use (the public index, or the proxy of this machine,
                  which drops the public index's Cache-Control: every resolve downloads its pages again)

    cd benchmarks && python bench_recreate.py [--runs 5] [--packages "numpy pandas"] [--index local|default]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import uv

from seed import HERE  # noqa: F401  (puts tests/ on sys.path)

from helpers import LocalIndex, Server  # noqa: E402


def create_until_ready(server: Server, name: str, packages: str) -> float:
    """Seconds from the POST until the `/events` stream says `name` is ready (no polling interval)."""
    stream = server.client._open("GET", "envmgr/api/events", timeout=600)
    try:
        assert stream.readline().startswith(b": connected")
        started = time.perf_counter()
        server.client.create({"name": name, "packages": packages})
        while True:
            line = stream.readline()
            assert line, "the event stream ended"
            if not line.startswith(b"data: "):
                continue
            record = json.loads(line[6:]).get("environment") or {}
            if record.get("name") == name and record.get("status") not in ("pending", "warming"):
                took = time.perf_counter() - started
                assert record["status"] == "ready", record
                return took
    finally:
        stream.close()


def raw_uv(scratch: str, cache: str, lock: str) -> tuple:
    env = dict(os.environ, UV_CACHE_DIR=cache, UV_PYTHON_DOWNLOADS="never", VIRTUAL_ENV="", NO_COLOR="1")
    prefix = os.path.join(scratch, f"uv-{time.monotonic_ns()}")
    started = time.perf_counter()
    subprocess.run([uv.find_uv_bin(), "venv", "--no-project", "--python", sys.executable, prefix], env=env, check=True, capture_output=True)
    venv = time.perf_counter() - started
    subprocess.run([uv.find_uv_bin(), "pip", "install", "--python", os.path.join(prefix, "bin", "python"), "-r", lock],
                   env=env, check=True, capture_output=True)
    return time.perf_counter() - started, time.perf_counter() - started - venv


def local_index(wheels: str, packages: list) -> LocalIndex:
    """The run's index: the wheels of `packages` + ipykernel (fetched by pip once), served like the public index."""
    os.makedirs(wheels, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--dest", wheels,
                    *packages, "ipykernel"], check=True, stderr=subprocess.DEVNULL)
    index = LocalIndex(max_age=600)
    for filename in sorted(os.listdir(wheels)):
        if filename.endswith(".whl"):
            index.add_file(os.path.join(wheels, filename))
    return index


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--packages", default="numpy pandas")
    parser.add_argument("--index", choices=("local", "default"), default="local")
    parser.add_argument("--wheels", default=os.path.join(tempfile.gettempdir(), "envmgr-bench-wheels"))
    args = parser.parse_args()
    packages = "".join(f"{p}\n" for p in args.packages.split())
    index = local_index(args.wheels, args.packages.split()) if args.index == "local" else None
    if index is not None:
        os.environ["UV_DEFAULT_INDEX"] = index.url  # the server's builds and the raw uv runs alike
    base = tempfile.mkdtemp(prefix="envmgr-bench-recreate-")
    root = os.path.join(base, "root")
    cache, scratch = os.path.join(root, "cache", "uv"), os.path.join(base, "scratch")
    os.makedirs(scratch)
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    server = Server(os.path.join(base, "server"), root, cache, default_python=python)
    try:
        first = create_until_ready(server, "original", packages)  # installs (fills the cache)
        lock = os.path.join(base, "lock.txt")
        with open(lock, "w") as f:
            f.write(server.client.export("original", "requirements"))
        raw_uv(scratch, cache, lock)  # warm for uv too
        api_times, uv_times, install_times = [], [], []
        for i in range(args.runs):  # interleaved, so drift in the machine hits both alike
            api_times.append(create_until_ready(server, f"copy-{i}", packages))
            total, install = raw_uv(scratch, cache, lock)
            uv_times.append(total)
            install_times.append(install)
        copied = server.client.log("copy-0")
        assert "==> reuse" in copied
        with open(lock) as f:
            count = sum(1 for line in f if "==" in line)
    finally:
        server.stop()
        if index is not None:
            index.close()
        shutil.rmtree(base, ignore_errors=True)
    api_med, uv_med = statistics.median(api_times), statistics.median(uv_times)
    print("".join(f"  {line}\n" for line in copied.splitlines()), end="")
    where = "local index sending max-age=600" if index is not None else "uv's configured index"
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores; "
          f"{args.packages} + ipykernel = {count} pinned packages; {where}")
    print(f"first create (installs, cache cold for this root): {first:.2f} s")
    print(f"re-create via REST API (same lock: hard-linked copy): median {api_med:.3f} s over {args.runs} runs "
          f"({', '.join(f'{t:.3f}' for t in api_times)})")
    print(f"raw uv venv + uv pip install -r lock (warm cache):    median {uv_med:.3f} s "
          f"(the install alone {statistics.median(install_times):.3f} s)")
    print(f"ratio envmgr / raw uv: {api_med / uv_med:.2f}; target <= 0.5 s: {'OK' if api_med <= 0.5 else 'MISSED'}")
    return 0 if api_med <= 0.5 else 1


if __name__ == "__main__":
    sys.exit(main())
