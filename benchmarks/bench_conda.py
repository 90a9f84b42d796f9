"""Benchmark: a conda environment created through the REST API (create → ready) against a raw py-rattler
solve + install of the same spec, in the same run, on the same local channel and the same filesystem.

    python benchmarks/bench_conda.py [--rounds 5]
    python benchmarks/bench_conda.py --real [--rounds 2]   # real sizes (issue 14): numpy pandas matplotlib scikit-learn

Cold: empty package and repodata caches for both (the server's root caches are removed between rounds).
Warm: caches already filled (a second environment on the same root). Prints both timings and the ratio
API / raw (target: at most 1.2 cold). The channel is the tests' one (tests/conda/conda_channel.py):
a `python` package cut from this interpreter plus small noarch packages, served on 127.0.0.1.
The environment is conda-only (base packages: python) so that raw py-rattler installs exactly the same.
With --real the channel holds the real wheels of numpy, pandas, matplotlib, scikit-learn and their
dependencies, repackaged as conda packages (conda_channel.real_channel; the wheels come from the Python
package index, the only one this machine reaches), plus the same `python` package cut from this interpreter.
The API build also compiles bytecode (the prefix's lib/, linked from the bytecode cache where an earlier
build compiled the same files); raw py-rattler compiles nothing.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import pwd
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "conda"))

from conda_channel import ChannelServer, cached_channel, real_channel  # noqa: E402

from jupyter_envmgr.client import EnvmgrClient  # noqa: E402
from jupyter_envmgr.demo import free_port, start_server, wait_for_server  # noqa: E402

SPEC_DEPS = ["envmgr-conda-demo"]
REAL_DEPS = ["numpy", "pandas", "matplotlib", "scikit-learn"]
PYTHON = "3.11"
CACHE = os.environ.get("ENVMGR_TEST_CONDA_CACHE") or os.path.join(
    pwd.getpwuid(os.getuid()).pw_dir, ".cache", "jupyter-envmgr-tests", "conda")


def environment_yaml(channel_url: str, deps: list) -> str:
    return "channels:\n  - " + channel_url + "\ndependencies:\n" + "".join(f"  - {d}\n" for d in deps)


async def raw_rattler(channel_url: str, prefix: str, cache: str, deps: list) -> int:
    """What the engine itself costs: solve + install with py-rattler, nothing else."""
    import rattler

    platform = str(rattler.Platform.current())
    records = await rattler.solve(
        sources=[channel_url], specs=[*deps, f"python={PYTHON}"],
        gateway=rattler.Gateway(cache_dir=os.path.join(cache, "repodata")), platforms=[platform, "noarch"],
        virtual_packages=rattler.VirtualPackage.detect(),
    )
    await rattler.install(records, target_prefix=prefix, cache_dir=os.path.join(cache, "pkgs"), show_progress=False)
    return len(records)


def api_create(client: EnvmgrClient, name: str, channel_url: str, deps: list) -> float:
    """POST, then follow the build log until the server says the build ended (as `jupyter envmgr` does):
    no polling loop competing with the build for the CPU."""
    start = time.perf_counter()
    client.create({"name": name, "manager": "conda", "python": PYTHON, "packages": environment_yaml(channel_url, deps)})
    for _ in client.follow_log(name):
        pass
    record = client.get(name)
    elapsed = time.perf_counter() - start
    if record["status"] != "ready":
        raise RuntimeError(f"{name} {record['status']}: {record['message']}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--real", action="store_true", help="numpy pandas matplotlib scikit-learn from real wheels")
    args = parser.parse_args()
    deps = REAL_DEPS if args.real else SPEC_DEPS

    os.makedirs(CACHE, exist_ok=True)
    channel = ChannelServer(real_channel(CACHE, REAL_DEPS) if args.real else cached_channel(CACHE))
    base = tempfile.mkdtemp(prefix="envmgr-bench-conda-")
    root = os.path.join(base, "root")
    token = secrets.token_hex(8)
    port = free_port()
    proc = start_server(base, port, token, {
        "root_dir": root, "conda_channels": [channel.url],
        "base_packages": {"pip": ["ipykernel"], "conda": ["python"]},
    })
    try:
        client = EnvmgrClient(f"http://127.0.0.1:{port}/", token)
        info = wait_for_server(client, proc)
        assert "conda" in info["managers"], info
        cold_api, cold_raw, warm_api, warm_raw = [], [], [], []
        for n in range(args.rounds):
            # Cold: nothing cached anywhere.
            for cache in ("conda-pkgs", "conda-repodata", "bytecode"):
                shutil.rmtree(os.path.join(root, "cache", cache), ignore_errors=True)
            raw_dir = os.path.join(base, f"raw-{n}")

            def raw(kind):
                start = time.perf_counter()
                count = asyncio.run(raw_rattler(channel.url, os.path.join(raw_dir, kind), os.path.join(raw_dir, "cache"), deps))
                return time.perf_counter() - start, count

            # Alternate which side goes first, so neither always gets the warmer page cache.
            if n % 2 == 0:
                cold_api.append(api_create(client, f"cold-{n}", channel.url, deps))
                elapsed, count = raw("cold")
                cold_raw.append(elapsed)
            else:
                elapsed, count = raw("cold")
                cold_raw.append(elapsed)
                cold_api.append(api_create(client, f"cold-{n}", channel.url, deps))
            # Warm: the same again with the caches each side just filled.
            warm_api.append(api_create(client, f"warm-{n}", channel.url, deps))
            warm_raw.append(raw("warm")[0])
            if args.real and n == 0:  # what was built works (outside the timings)
                python = os.path.join(root, "envs", "default", f"warm-{n}", "current", "bin", "python")
                subprocess.run([python, "-c", "import numpy, pandas, matplotlib, sklearn"], check=True)
            print(f"round {n + 1}: cold api {cold_api[-1]:.2f}s raw {cold_raw[-1]:.2f}s | "
                  f"warm api {warm_api[-1]:.2f}s raw {warm_raw[-1]:.2f}s ({count} packages)", flush=True)
        ca, cr = statistics.median(cold_api), statistics.median(cold_raw)
        wa, wr = statistics.median(warm_api), statistics.median(warm_raw)
        # Paired: each round's API run against the raw run next to it (same load on the machine).
        ratio = statistics.median(a / r for a, r in zip(cold_api, cold_raw))
        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; {' '.join(deps)}")
        print(f"cold (empty caches): API create->ready {ca:.2f}s, raw py-rattler solve+install {cr:.2f}s (medians); "
              f"ratio {ratio:.2f} (median of per-round ratios; target <= 1.2)")
        print(f"warm (caches filled): API create->ready {wa:.2f}s, raw py-rattler solve+install {wr:.2f}s, "
              f"ratio {wa / wr:.2f}, fixed overhead of the API path {wa - wr:.2f}s (server, runner, one step process)")
        return 0 if ratio <= 1.2 else 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        channel.close()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
