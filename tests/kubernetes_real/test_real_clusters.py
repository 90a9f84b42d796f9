"""Clusters (deployment locations): two kubeconfig contexts, each with its own namespace, ServiceAccount and
claim, on the real control plane. A build goes to its cluster's API, in its namespace, with its claim."""
from __future__ import annotations

import json
import os

import pytest
from jupyter_envmgr.app import EnvManagerApp
from jupyter_envmgr.builders.base import Build
from jupyter_envmgr.builders.kubernetes import KubernetesBuilder
from jupyter_envmgr.errors import EnvmgrError
from jupyter_envmgr.recipes import BuildPaths
from jupyter_envmgr.spec import EnvSpec
from kubernetes import client

from realkube import ACCOUNT, IMAGE, PVC, make_namespace

pytestmark = pytest.mark.slow


def build(root: str, namespace: str, name: str, code: str, cluster: str) -> Build:
    env = os.path.join(root, "envs", namespace, name)
    paths = BuildPaths(prefix=os.path.join(env, "rev-0001"), build_dir=os.path.join(env, "builds", "rev-0001"),
                       log=os.path.join(env, "logs", "rev-0001.log"), resources_dir=os.path.join(env, "resources"))
    os.makedirs(paths.build_dir)
    os.makedirs(os.path.dirname(paths.log))
    plan = {"log": paths.log, "result": paths.result, "timeout": 60, "env": {},
            "steps": [{"name": "work", "argv": ["python", "-c", code], "env": {}, "stdout": None, "timeout": None}]}
    with open(paths.plan, "w") as f:
        json.dump(plan, f)
    return Build(namespace, name, 1, EnvSpec(name=name), paths, 60.0, cluster=cluster)


async def test_builds_go_to_their_clusters(control_plane, tmp_path):
    east_root, west_root = str(tmp_path / "east"), str(tmp_path / "west")
    os.makedirs(east_root)
    os.makedirs(west_root)
    east_ns, west_ns = make_namespace(control_plane, east_root), make_namespace(control_plane, west_root)
    east_cfg = control_plane.service_account_kubeconfig(east_ns, ACCOUNT, {"east": east_ns})
    west_cfg = control_plane.service_account_kubeconfig(west_ns, ACCOUNT, {"west": west_ns})
    config = EnvManagerApp(
        root_dir=east_root, kubernetes_image=IMAGE, kubernetes_api_timeout=5.0, kubernetes_api_retries=2,
        kubernetes_start_timeout=60.0, kubernetes_termination_grace_period_seconds=2,
        clusters={"east": {"context": "east", "config_file": east_cfg, "namespaces": [east_ns]},
                  "west": {"context": "west", "config_file": west_cfg, "namespaces": [west_ns], "mount_path": west_root}},
    )
    builder = KubernetesBuilder(config)
    assert builder.clusters() == [{"name": "east", "namespaces": [east_ns]}, {"name": "west", "namespaces": [west_ns]}]
    assert [s["path"] for s in builder.storages()] == [east_root, west_root]
    try:
        await builder.check_storage(west_ns, cluster="west")
        with pytest.raises(EnvmgrError) as unknown:
            await builder.check_storage(west_ns, cluster="north")
        assert unknown.value.status == 422 and "east, west" in unknown.value.message

        east = build(east_root, east_ns, "on-east", "print('east')", cluster="east")
        west = build(west_root, west_ns, "on-west", "print('west')", cluster="west")
        handles = [await builder.start(b) for b in (east, west)]
        assert [(h["cluster"], h["namespace"]) for h in handles] == [("east", east_ns), ("west", west_ns)]
        results = [await builder.wait(b) for b in (east, west)]
        assert [r["status"] for r in results] == ["ready", "ready"], results
        with open(west.paths.log) as f:
            assert "west" in f.read()

        batch = client.BatchV1Api(control_plane.client())
        [east_job] = batch.list_namespaced_job(east_ns).items
        [west_job] = batch.list_namespaced_job(west_ns).items
        for job, root in ((east_job, east_root), (west_job, west_root)):
            pod = job.spec.template.spec
            assert pod.volumes[0].persistent_volume_claim.claim_name == PVC
            assert pod.containers[0].volume_mounts[0].mount_path == root
        # Each cluster's ServiceAccount may act only in its own namespace: the routing used the right one.
        assert builder.owns(handles[1]) and not builder.owns({**handles[1], "cluster": "north"})
    finally:
        await builder.stop()
