"""`jupyter envmgr demo`: the whole path on a private server, timed, with nothing left behind.

A real `jupyter server` on a free loopback port with a temporary root; an environment with one
small package, warmed by uv; code run in its kernel through the server.
"""
from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Optional

from .client import ClientError, EnvmgrClient


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(base: str, port: int, token: str, envmgr: Optional[dict] = None, extra: Optional[dict] = None,
                 user: Optional[str] = None) -> subprocess.Popen:
    """A private jupyter server with only this extension's config, its own dirs and root.

    `envmgr` overrides EnvManagerApp settings, `extra` adds other sections (the tests start several
    servers on one root, and JupyterLab with its app exposed to the browser); `user` runs it as that
    Unix account (the tests' other users).
    """
    extra = dict(extra or {})
    config = os.path.join(base, "config")
    os.makedirs(config, exist_ok=True)
    with open(os.path.join(config, "jupyter_server_config.json"), "w") as f:
        json.dump({
            "ServerApp": {"jpserver_extensions": {"jupyter_envmgr": True}, "open_browser": False,
                          "ip": "127.0.0.1", "port": port, "port_retries": 0, "allow_root": True,
                          "root_dir": base, **extra.pop("ServerApp", {})},
            "IdentityProvider": {"token": token},
            "EnvManagerApp": {"root_dir": os.path.join(base, "root"), "user_kernelspecs": False, **(envmgr or {})},
            **extra,
        }, f)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=config, JUPYTER_RUNTIME_DIR=os.path.join(base, "runtime"),
               JUPYTER_DATA_DIR=os.path.join(base, "data"))
    log = open(os.path.join(base, "server.log"), "ab")
    account = None
    if user:
        import pwd
        import shutil

        account = pwd.getpwnam(user)
        env.update(HOME=account.pw_dir, USER=user)
        for directory, _, files in os.walk(base):
            for path in [directory] + [os.path.join(directory, f) for f in files]:
                shutil.chown(path, account.pw_uid, account.pw_gid)
    return subprocess.Popen([sys.executable, "-m", "jupyter_server"], env=env, stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL, start_new_session=True, user=user, group=(account.pw_gid if user else None),
                            extra_groups=[] if user else None)


def wait_for_server(client: EnvmgrClient, proc: subprocess.Popen, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.info()
        except ClientError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def run_demo(package: str = "six", keep: bool = False) -> int:
    base = tempfile.mkdtemp(prefix="envmgr-demo-")
    port, token = free_port(), secrets.token_hex(16)
    client = EnvmgrClient(f"http://127.0.0.1:{port}/", token)
    timings = []

    def step(what, fn):
        start = time.monotonic()
        result = fn()
        timings.append((what, time.monotonic() - start))
        print(f"  {what:<44} {timings[-1][1]:7.2f} s", flush=True)
        return result

    print(f"jupyter-envmgr demo: private server on 127.0.0.1:{port}, root {base}/root")
    proc = start_server(base, port, token)
    try:
        info = step("start a Jupyter server with the extension", lambda: wait_for_server(client, proc))
        print(f"    backend {info['backend']}, managers {info['managers']}, pythons {info['python_versions']}")
        name = "demo"
        record = step(f"create environment '{name}' with {package}",
                      lambda: client.create({"name": name, "packages": f"{package}\n", "description": "jupyter envmgr demo"}))
        record = step("warm it with uv until ready", lambda: client.wait(name, timeout=900))
        if record["status"] != "ready":
            print(f"  the build ended {record['status']}: {record['message']}")
            print(client.log(name))
            return 1
        print(f"    kernel {record['kernel_name']} on {record['prefix']}")
        module = package.replace("-", "_")
        code = f"import {module}, sys; print({module}.__name__, getattr({module}, '__version__', ''), sys.prefix)"
        output = step("start its kernel and run code", lambda: asyncio.run(client.run_code(record["kernel_name"], code)))
        print(f"    kernel said: {output.strip()}")
        packages = step("list what is installed", lambda: client.packages(name))
        print(f"    {len(packages)} packages, lock of {len(client.export(name, 'requirements').splitlines())} lines")
        step("delete it (kernel and files)", lambda: client.delete(name))
        total = sum(t for _, t in timings)
        print(f"demo: OK in {total:.1f} s")
        return 0
    except ClientError as e:
        print(f"demo failed: {e.message}; server log: {base}/server.log", file=sys.stderr)
        keep = True
        return 1
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
