"""The longest event-loop stall of a real jupyter server with the extension, under storage load.

A ticker task in the server's own loop wants to wake every 5 ms; the longest gap beyond that is the
stall a user's kernel messages would feel. Measured, in one run:
  baseline   the same server, idle (the empty loop)
  delete     DELETE of an environment of 40,000 files
  gc         a full garbage collection (old revisions, orphans, trash)
  list       50 clients listing 1,000 environments, 10 times each
Target (issue "Many servers, one root"): max stall < 50 ms.  Usage: python benchmarks/bench_loop.py
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from jupyter_server.serverapp import ServerApp

N_ENVS = 1000
N_FILES = 40_000
CLIENTS = 50
TARGET_MS = 50.0


class Ticker:
    def __init__(self):
        self.max_stall = 0.0

    async def run(self):
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.005)
            self.max_stall = max(self.max_stall, time.perf_counter() - before - 0.005)


def seed_root(root: str) -> None:
    """1,000 ready-looking records (a record and an empty prefix each) and one environment of 40k files."""
    from jupyter_envmgr import lifecycle
    from jupyter_envmgr.store import Store

    store = Store(root)
    store.ensure_layout(["default"])
    for i in range(N_ENVS):
        name = f"env-{i:04d}"
        spec = {"name": name, "manager": "pip", "python": "3.11", "packages": "six\n", "index_urls": [],
                "description": "", "labels": {"team": f"t{i % 7}"}, "annotations": {}, "env_vars": {}, "gpu": 0,
                "storage": "default", "namespace": "default", "init_script": ""}
        record = lifecycle.new_record(spec, {"packages": "six\n"}, "bench", store.current_link("default", name),
                                      {"server": "seed", "expires": 0}, "2026-11-24T00:00:00Z")
        record = lifecycle.started(record, 1, "seed", {"kind": "none"}, "2026-11-24T00:00:00Z")
        record = lifecycle.finished(record, 1, "ready", "ready", None, "2026-11-24T00:00:00Z")
        store.create("default", name, record)
        os.makedirs(store.prefix("default", name, 1))
    bulk = os.path.join(store.prefix("default", "env-0000", 1), "bulk")
    for d in range(N_FILES // 1000):
        os.makedirs(os.path.join(bulk, str(d)))
        for f in range(1000):
            with open(os.path.join(bulk, str(d), f"m{f}.py"), "w") as fh:
                fh.write("x = 1\n")


def get(url: str, token: str) -> bytes:
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return resp.read()


async def measure(label: str, work, results: dict) -> None:
    ticker = Ticker()
    task = asyncio.ensure_future(ticker.run())
    await asyncio.sleep(0.2)
    started = time.perf_counter()
    await work()
    elapsed = time.perf_counter() - started
    task.cancel()
    results[label] = (ticker.max_stall * 1000, elapsed)


async def main() -> int:
    base = tempfile.mkdtemp(prefix="envmgr-bench-loop-")
    root = os.path.join(base, "root")
    print(f"seeding {N_ENVS} environments and one of {N_FILES} files under {root} ...", flush=True)
    seed_root(root)
    token = os.urandom(8).hex()
    app = ServerApp.instance()
    app.initialize(argv=[
        "--ServerApp.port=0", "--ServerApp.open_browser=False", f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={base}", "--ServerApp.jpserver_extensions={'jupyter_envmgr': True}",
        f"--EnvManagerApp.root_dir={root}", "--EnvManagerApp.user_kernelspecs=False", "--EnvManagerApp.gc_interval=0",
    ], new_httpserver=True)
    await app.extension_manager.start_all_extensions()
    manager = app.web_app.settings["envmgr_manager"]
    url = f"http://127.0.0.1:{app.port}{app.base_url}envmgr/api/"
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(CLIENTS)
    results: dict = {}

    async def idle():
        await asyncio.sleep(3)

    async def delete():
        await loop.run_in_executor(pool, lambda: urllib.request.urlopen(urllib.request.Request(
            url + "environments/env-0000", method="DELETE", headers={"Authorization": f"token {token}"}), timeout=60).read())
        while os.listdir(os.path.join(root, "trash")):  # until the files are really gone
            await asyncio.sleep(0.05)

    async def collect():
        from jupyter_envmgr import gc

        await gc.collect(manager.records, 1)

    async def lists():
        # The clients are another process, as real ones are (in this one they would fight the loop for the GIL).
        proc = await asyncio.create_subprocess_exec(sys.executable, __file__, "--clients", url, token)
        assert await proc.wait() == 0, "a client got a wrong list"

    for label, work in (("baseline (idle loop)", idle), ("delete 40k files", delete), ("gc", collect),
                        (f"{CLIENTS} clients x 10 lists of {N_ENVS}", lists)):
        await measure(label, work, results)
    base_ms = results["baseline (idle loop)"][0]
    print(f"\n{'case':<36} {'max stall':>10} {'x baseline':>11} {'took':>8}")
    worst = 0.0
    for label, (stall, took) in results.items():
        worst = max(worst, stall) if not label.startswith("baseline") else worst
        print(f"{label:<36} {stall:>8.1f}ms {stall / max(base_ms, 0.1):>10.1f}x {took:>7.2f}s")
    print(f"\nworst stall under load: {worst:.1f} ms (target < {TARGET_MS:.0f} ms): {'OK' if worst < TARGET_MS else 'MISSED'}")
    await app._cleanup() if hasattr(app, "_cleanup") else None
    return 0 if worst < TARGET_MS else 1


def clients(url: str, token: str) -> int:
    """In a separate process: CLIENTS threads, each listing 10 times."""
    def client(_):
        for _ in range(10):
            assert len(json.loads(get(url + "environments", token))["environments"]) == N_ENVS - 1

    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(client, range(CLIENTS)))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--clients"]:
        sys.exit(clients(sys.argv[2], sys.argv[3]))
    sys.exit(asyncio.run(main()))
