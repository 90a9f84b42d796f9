"""Start the stand-in as its own process, write a kubeconfig for it, and drive its /_standin/ routes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "server.py")
TOKEN = "standin-token"


class StandIn:
    def __init__(self, state_dir: str, image_path: list):
        os.makedirs(state_dir, exist_ok=True)
        self.state_dir = state_dir
        self.stderr = open(os.path.join(state_dir, "standin.stderr"), "wb")
        self.proc = subprocess.Popen(
            [sys.executable, SERVER, "--state", state_dir, "--image-path", os.pathsep.join(image_path)],
            stdout=subprocess.PIPE, stderr=self.stderr, start_new_session=True,
        )
        line = self.proc.stdout.readline()
        if not line.strip():
            raise RuntimeError("the stand-in did not start: " + open(self.stderr.name).read())
        self.port = int(line)
        self.url = f"http://127.0.0.1:{self.port}"
        self.kubeconfig = os.path.join(state_dir, "kubeconfig.yaml")
        with open(self.kubeconfig, "w") as f:
            json.dump({  # JSON is YAML: the client reads it as a kubeconfig
                "apiVersion": "v1", "kind": "Config", "current-context": "standin",
                "clusters": [{"name": "standin", "cluster": {"server": self.url}}],
                "users": [{"name": "tester", "user": {"token": TOKEN}}],
                "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "tester", "namespace": "default"}}],
            }, f)

    # ------------------------------------------------------------ control routes

    def control(self, what: str, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}/_standin/{what}", data=data, method="POST" if data is not None else "GET",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def state(self) -> dict:
        return self.control("state")

    def pvc(self, name: str, path: str, namespace: str = "default", access_modes=("ReadWriteMany",), phase: str = "Bound"):
        return self.control("pvc", {"name": name, "path": path, "namespace": namespace,
                                    "access_modes": list(access_modes), "phase": phase})

    def namespace(self, name: str, labels=None):
        return self.control("namespace", {"name": name, "labels": labels or {}})

    def faults(self, *rules):
        return self.control("faults", {"rules": list(rules)})

    def drop(self):
        return self.control("drop", {})

    def compact(self):
        return self.control("compact", {})

    def settings(self, **kw):
        return self.control("settings", kw)

    def node(self, **kw):
        return self.control("node", kw)

    def delete_job(self, name: str, namespace: str = "default", policy: str = "Background"):
        return self.control("delete-job", {"name": name, "namespace": namespace, "policy": policy})

    # ------------------------------------------------------------ reading the state

    def objects(self, kind: str, namespace: str = "default") -> list:
        prefix = f"{kind}/{namespace}/"
        return [o for k, o in self.state()["objects"].items() if k.startswith(prefix)]

    def jobs(self, namespace: str = "default") -> list:
        return self.objects("jobs", namespace)

    def pods(self, namespace: str = "default") -> list:
        return self.objects("pods", namespace)

    def pod_log(self, job: str, namespace: str = "default") -> str:
        """What the kubelet captured of a Job's (first) pod: the reference a copied log must equal."""
        [pod] = [p for p in self.pods(namespace) if p["metadata"]["labels"].get("job-name") == job]
        with open(os.path.join(self.state_dir, "logs", f"{namespace}_{pod['metadata']['name']}_build.log")) as f:
            return f.read()

    def requests(self, method: str = None, path_part: str = "") -> list:
        return [r for r in self.state()["requests"] if (method is None or r["method"] == method) and path_part in r["path"]]

    async def until(self, predicate, timeout: float = 60, what: str = "condition"):
        """Wait for the stand-in to reach a state, without blocking the event loop (the server runs on it)."""
        import asyncio

        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"stand-in: {what} not reached within {timeout}s")
            await asyncio.sleep(0.1)

    def close(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.stderr.close()
