"""A server restart in the middle of Job builds: real `jupyter server` processes, the first one killed.

While no server runs, one build ends and another's Job is deleted behind its back; the next server
re-attaches to the build still running, finishes the ended one, and fails the one whose Job is gone.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from helpers import unique

pytestmark = pytest.mark.slow  # servers, builds and the stand-in's processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`jupyter server` as its own process, with the extension and the given EnvManagerApp traits."""

    def __init__(self, workdir: str, traits: dict, name: str):
        self.port = free_port()
        self.token = "restart-test-token"
        os.makedirs(workdir, exist_ok=True)
        config = os.path.join(workdir, f"{name}_config.json")
        with open(config, "w") as f:
            json.dump({"ServerApp": {"jpserver_extensions": {"jupyter_envmgr": True}, "allow_root": True,
                                     "open_browser": False, "port": self.port, "port_retries": 0, "ip": "127.0.0.1",
                                     "root_dir": workdir},
                       "IdentityProvider": {"token": self.token}, "EnvManagerApp": traits}, f)
        env = dict(os.environ, JUPYTER_CONFIG_DIR=os.path.join(workdir, "config"), JUPYTER_DATA_DIR=os.path.join(workdir, "data"),
                   JUPYTER_RUNTIME_DIR=os.path.join(workdir, "runtime"), HOME=workdir, JUPYTER_PLATFORM_DIRS="1")
        env.pop("KUBERNETES_SERVICE_HOST", None)
        self.log = open(os.path.join(workdir, f"{name}.log"), "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "jupyter_server", f"--config={config}"], env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.call("GET", "info")
                return
            except (urllib.error.URLError, ConnectionError):
                assert self.proc.poll() is None and time.monotonic() < deadline, open(self.log.name).read()[-3000:]
                time.sleep(0.2)

    def call(self, method: str, path: str, body=None):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/envmgr/api/{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                text = resp.read().decode()
                return resp.status, (json.loads(text) if text and resp.headers.get_content_type() == "application/json" else text)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def wait(self, name: str, predicate, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            status, record = self.call("GET", f"environments/{name}")
            assert status == 200, record
            if predicate(record):
                return record
            assert time.monotonic() < deadline, f"{name}: {record}"
            time.sleep(0.2)

    def kill(self) -> None:
        """As a crash or an OOM kill would: no chance to clean up."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


def wait_until(predicate, timeout: float = 60, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not reached"
        time.sleep(0.1)


def test_restart_mid_job(standin, kube_config, local_index, tmp_path, envmgr_root):
    traits = dict(kube_config, max_concurrent_builds=3, user_kernelspecs=False)
    first = Server(str(tmp_path / "server"), traits, "first")
    try:
        specs = {
            "r-running": f"{unique('envmgr-slow')}\n",  # still building when the next server starts
            "r-finished": f"{unique('envmgr-brief')}\n",  # ends (in ~5 s) while no server runs
            "r-gone": f"{unique('envmgr-slow')}\n",  # its Job is deleted while no server runs
        }
        for name, packages in specs.items():
            status, body = first.call("POST", "environments", {"name": name, "packages": packages, "index_urls": [local_index.url]})
            assert status == 202, body
        for name in specs:
            first.wait(name, lambda r: r["status"] == "warming")
        wait_until(lambda: len(standin.state()["processes"]) == 3, what="three running build containers")
        jobs = {j["metadata"]["labels"]["envmgr.jupyter.org/name"]: j["metadata"]["name"] for j in standin.jobs()}
        first.kill()
    finally:
        first.stop()

    standin.delete_job(jobs["r-gone"], policy="Background")
    wait_until(lambda: any(c["type"] == "Complete" for c in (standin.state()["objects"].get(f"jobs/default/{jobs['r-finished']}", {})
                                                                 .get("status", {}).get("conditions") or [])),
               what="r-finished's Job complete")
    assert len(standin.state()["processes"]) == 1  # r-running still runs

    second = Server(str(tmp_path / "server"), traits, "second")
    try:
        running = second.wait("r-running", lambda r: True)
        assert running["status"] == "warming"  # re-attached, not failed, not rebuilt
        finished = second.wait("r-finished", lambda r: r["status"] != "warming")
        assert finished["status"] == "ready", finished["message"]
        gone = second.wait("r-gone", lambda r: r["status"] != "warming")
        assert gone["status"] == "failed" and "left no result" in gone["message"], gone

        running = second.wait("r-running", lambda r: r["status"] != "warming", timeout=120)
        assert running["status"] == "ready", running["message"]
        assert len(standin.requests("POST", "/jobs")) == 3  # nothing was created again
        # The log of the re-attached build: what the first server copied, then the rest, no line twice.
        status, text = second.call("GET", "environments/r-running/log")
        steps = [line.split(":")[0] for line in text.splitlines() if line.startswith("==> ")]
        assert steps[:5] == ["==> [1/5] venv", "==> [2/5] install", "==> [3/5] bytecode", "==> [4/5] lock",
                             "==> [5/5] seal"] and len(steps) == 6, text
        assert steps[5].startswith("==> done in"), text
        assert text == standin.pod_log(jobs["r-running"])
        kernels = os.listdir(os.path.join(envmgr_root, "jupyter", "kernels"))
        assert {"envmgr-r-running", "envmgr-r-finished"} <= set(kernels)
    finally:
        second.stop()
