"""Real sizes (issue 14): create→ready of `numpy pandas matplotlib scikit-learn` through the REST API,
cold and warm, against raw uv in the same run.

  envmgr         POST /envmgr/api/environments until ready (reuse_revisions off, so every run installs:
                 a new environment of another name; the build compiles bytecode, linking what an earlier
                 build compiled from the same files from the bytecode cache, bytecode.py)
  uv             uv venv + uv pip install of the same packages (+ ipykernel), same interpreter
  uv + bytecode  the same with --compile-bytecode (uv compiles everything every time)
Cold: each side with its own empty caches (downloads everything, compiles everything); warm: the caches
each filled. Target: envmgr within 1.2x raw uv.

    cd benchmarks && python bench_real.py [--warm-runs 3]
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

from seed import HERE  # noqa: F401  (puts tests/ on sys.path)

from helpers import Server  # noqa: E402

PACKAGES = ["numpy", "pandas", "matplotlib", "scikit-learn"]


def through_api(server: Server, name: str) -> float:
    """POST, then follow the build log until the server says the build ended (as `jupyter envmgr` does):
    no polling loop competing with the build for the CPU."""
    started = time.perf_counter()
    server.client.create({"name": name, "packages": "".join(f"{p}\n" for p in PACKAGES)})
    for _ in server.client.follow_log(name):
        pass
    record = server.client.get(name)
    took = time.perf_counter() - started
    assert record["status"] == "ready", record
    steps = [line for line in server.client.log(name).splitlines() if line.startswith("==> done in")]
    print(f"  {name}: {took:.2f} s through the API; the build log: {steps[-1][4:] if steps else '?'}", flush=True)
    return took


def raw_uv(scratch: str, cache: str, compile_bytecode: bool) -> float:
    """uv venv + uv pip install, timed together."""
    env = dict(os.environ, UV_CACHE_DIR=cache, UV_PYTHON_DOWNLOADS="never", VIRTUAL_ENV="", NO_COLOR="1")
    prefix = os.path.join(scratch, f"uv-{time.monotonic_ns()}")
    started = time.perf_counter()
    subprocess.run([uv.find_uv_bin(), "venv", "--no-project", "--python", sys.executable, prefix], env=env, check=True, capture_output=True)
    subprocess.run([uv.find_uv_bin(), "pip", "install", *(["--compile-bytecode"] if compile_bytecode else []),
                    "--python", os.path.join(prefix, "bin", "python"), "ipykernel", *PACKAGES], env=env, check=True, capture_output=True)
    took = time.perf_counter() - started
    shutil.rmtree(prefix, ignore_errors=True)
    return took


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--warm-runs", type=int, default=3)
    args = parser.parse_args()
    base = tempfile.mkdtemp(prefix="envmgr-bench-real-")
    root, scratch = os.path.join(base, "root"), os.path.join(base, "scratch")
    raw_cache = os.path.join(base, "raw-cache")  # on the same filesystem, so uv links too
    os.makedirs(scratch)
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    server = Server(os.path.join(base, "server"), root, os.path.join(root, "cache", "uv"), default_python=python,
                    reuse_revisions=False, max_concurrent_builds=1)
    try:
        cold_api = through_api(server, "cold")
        cold_uv = raw_uv(scratch, raw_cache, compile_bytecode=False)
        cold_compiled = raw_uv(scratch, os.path.join(base, "raw-cache-2"), compile_bytecode=True)
        api, plain, compiled = [], [], []
        for i in range(args.warm_runs):  # interleaved, so drift in the machine hits all alike, and in turn
            # first: the index answers a burst of the same requests faster the second time within seconds
            if i % 2:
                plain.append(raw_uv(scratch, raw_cache, compile_bytecode=False))
            api.append(through_api(server, f"warm-{i}"))
            if not i % 2:
                plain.append(raw_uv(scratch, raw_cache, compile_bytecode=False))
            compiled.append(raw_uv(scratch, raw_cache, compile_bytecode=True))
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    api_med, plain_med, compiled_med = statistics.median(api), statistics.median(plain), statistics.median(compiled)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; {' '.join(PACKAGES)} + ipykernel")
    print(f"cold: envmgr {cold_api:.1f} s, raw uv {cold_uv:.1f} s, raw uv --compile-bytecode {cold_compiled:.1f} s: "
          f"ratio {cold_api / cold_uv:.2f} / {cold_api / cold_compiled:.2f} (a cold envmgr build compiles everything once)")
    print(f"warm: envmgr median {api_med:.2f} s, raw uv {plain_med:.2f} s, raw uv --compile-bytecode {compiled_med:.2f} s "
          f"over {args.warm_runs} runs")
    ok = api_med / plain_med <= 1.2
    print(f"warm ratio envmgr / raw uv: {api_med / plain_med:.2f} (target <= 1.2): {'OK' if ok else 'MISSED'}; "
          f"envmgr / raw uv --compile-bytecode: {api_med / compiled_med:.2f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
