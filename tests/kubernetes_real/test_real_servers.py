"""Jupyter servers (their own processes) and a real control plane: a server killed in the middle of a build
and started again re-attaches to its Job; two servers on one root follow one Job, and its log is copied once."""
from __future__ import annotations

import os
import time

import pytest
from helpers import unique
from jupyter_envmgr.client import EnvmgrClient
from kubernetes import client

from realkube import kube_traits, make_namespace

pytestmark = pytest.mark.slow


def jobs(plane, namespace: str) -> list:
    return client.BatchV1Api(plane.client()).list_namespaced_job(namespace).items


def running_pod(plane, namespace: str) -> bool:
    return any(p.status.phase == "Running" for p in client.CoreV1Api(plane.client()).list_namespaced_pod(namespace).items)


def wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not after {timeout}s"
        time.sleep(0.3)


@pytest.fixture
def shared(servers, control_plane, uv_cache_dir):
    """Start servers on one root and one namespace: `shared(name)` -> (Server, client)."""
    os.makedirs(servers.root, exist_ok=True)
    namespace = make_namespace(control_plane, servers.root)
    traits = kube_traits(control_plane, namespace, servers.root, uv_cache_dir)

    def start(name: str):
        server = servers(name, **traits)
        # The manager reconciles records after the server answers; a create that lands before that is
        # re-queued by the reconcile and built twice (a manager race, reported): wait for its end.
        log = os.path.join(server.base, "server.log")
        wait(lambda: "jupyter_envmgr: root" in open(log, errors="replace").read(), 60, f"server {name} started")
        return server, EnvmgrClient(f"http://127.0.0.1:{server.port}/", server.token, namespace)

    start.namespace = namespace
    return start


def test_server_killed_mid_build_reattaches(shared, control_plane, local_index):
    server, a = shared("a")
    a.create({"name": "real-reattach", "packages": f"{unique('envmgr-slow')}\n", "index_urls": [local_index.url]})
    wait(lambda: running_pod(control_plane, shared.namespace), 90, "a running build pod")
    server.kill()
    _, b = shared("b")  # a new server process on the same root, as after a restart
    record = b.wait("real-reattach", timeout=180)
    assert record["status"] == "ready", record["message"]
    assert len(jobs(control_plane, shared.namespace)) == 1  # re-attached, not built again
    log = b.log("real-reattach")
    assert "==> done in" in log, log


def test_two_servers_follow_one_job(shared, control_plane, local_index):
    _, a = shared("a")
    a.create({"name": "real-twice", "packages": f"{unique('envmgr-slow')}\n", "index_urls": [local_index.url]})
    wait(lambda: running_pod(control_plane, shared.namespace), 90, "a running build pod")
    _, b = shared("b")  # starts while the Job runs: it re-attaches to it as well
    records = [c.wait("real-twice", timeout=180) for c in (a, b)]
    assert [r["status"] for r in records] == ["ready", "ready"], records
    assert len(jobs(control_plane, shared.namespace)) == 1
    log = a.log("real-twice")
    lines = [line for line in log.splitlines() if line.startswith("==> ")]
    assert len(lines) == len(set(lines)), log  # copied once, not by both
    assert "==> done in" in log, log
