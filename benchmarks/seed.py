"""A root of N ready-looking environments (a record and an empty prefix each), for the scale benchmarks.

No build runs: the records are made by the lifecycle functions the server itself uses, so the server
reads them, resyncs their kernelspecs and lists them exactly as it would real ones.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))


def seed_root(root: str, count: int) -> None:
    from jupyter_envmgr import lifecycle
    from jupyter_envmgr.store import Store

    store = Store(root)
    store.ensure_layout(["default"])
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    for i in range(count):
        name = f"env-{i:04d}"
        spec = {"name": name, "manager": "pip", "python": python, "packages": "six\n", "index_urls": [],
                "description": "", "labels": {"team": f"t{i % 7}"}, "annotations": {}, "env_vars": {}, "gpu": 0,
                "storage": "default", "namespace": "default", "init_script": ""}
        record = lifecycle.new_record(spec, {"packages": "six\n"}, "bench", store.current_link("default", name),
                                      {"server": "seed", "expires": 0}, "2026-11-24T00:00:00Z")
        record = lifecycle.started(record, 1, "seed", {"kind": "none"}, "2026-11-24T00:00:00Z")
        record = lifecycle.finished(record, 1, "ready", "ready", f"envmgr-{name}", "2026-11-24T00:00:00Z")
        store.create("default", name, record)
        os.makedirs(store.prefix("default", name, 1))


def seeded_server(name: str, count: int, **settings) -> tuple:
    """A temporary dir whose root holds `count` seeded environments, and a real server on it:
    (base dir, root, Server). The caller stops the server and removes the base dir."""
    import tempfile

    from helpers import Server  # the tests' real-server helper (tests/ is on sys.path)

    base = tempfile.mkdtemp(prefix=f"envmgr-bench-{name}-")
    root = os.path.join(base, "root")
    seed_root(root, count)
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    return base, root, Server(os.path.join(base, "server"), root, os.path.join(root, "cache", "uv"),
                              default_python=python, **settings)


def plain_server(base: str, port: int, token: str, jupyter_path: str) -> subprocess.Popen:
    """A jupyter server without the extension, finding kernelspecs on `jupyter_path` (the floor)."""
    env = dict(os.environ, JUPYTER_CONFIG_DIR=os.path.join(base, "config"), JUPYTER_RUNTIME_DIR=os.path.join(base, "runtime"),
               JUPYTER_DATA_DIR=os.path.join(base, "data"), JUPYTER_PATH=jupyter_path)
    os.makedirs(base, exist_ok=True)
    log = open(os.path.join(base, "server.log"), "ab")
    argv = [sys.executable, "-m", "jupyter_server", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
            "--ServerApp.ip=127.0.0.1", "--ServerApp.open_browser=False", "--ServerApp.allow_root=True", f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={base}", "--ServerApp.jpserver_extensions={'jupyter_envmgr': False}"]
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 90
    while True:
        try:
            get(f"http://127.0.0.1:{port}/api/status", token)
            return proc
        except (OSError, urllib.error.URLError):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def get(url: str, token: str, headers: dict = None) -> tuple:
    """(status, body, headers) of a GET; a 304 is a status, not an error."""
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as e:
        if e.code == 304:
            return 304, b"", e.headers
        raise


def timed_gets(url: str, token: str, count: int, headers: dict = None) -> list:
    """Milliseconds of `count` sequential GETs."""
    out = []
    for _ in range(count):
        start = time.perf_counter()
        get(url, token, headers)
        out.append((time.perf_counter() - start) * 1000)
    return out


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_share(pid: int, seconds: float) -> float:
    """The share of a core the process uses over the next `seconds`."""
    before, started = cpu_seconds(pid), time.perf_counter()
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / (time.perf_counter() - started)


def p(values: list, q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]
