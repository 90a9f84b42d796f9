"""Clusters (deployment locations): two kubeconfig contexts, each with its own namespace, ServiceAccount and
claim, on the real control plane. A build goes to its cluster's API, in its namespace, with its claim; each
cluster's storage (its claim's mount path) is the root of its environments and kernelspecs, which a second
server mounting only that storage lists and runs."""
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
from helpers import Server
from jupyter_envmgr.client import EnvmgrClient
from kubernetes import client

from realkube import ACCOUNT, IMAGE, PVC, kube_traits, make_namespace

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


@pytest.fixture
def west(control_plane, tmp_path) -> dict:
    """Cluster "west": its own kubeconfig context, namespace, ServiceAccount and claim, mounted at its own path."""
    root = str(tmp_path / "west-mount")
    os.makedirs(root)
    namespace = make_namespace(control_plane, root)
    config = control_plane.service_account_kubeconfig(namespace, ACCOUNT, {"west": namespace})
    return {"root": root, "namespace": namespace,
            "cluster": {"context": "west", "config_file": config, "namespaces": [namespace], "mount_path": root}}


@pytest.fixture
def envmgr_config(control_plane, kube_namespace, envmgr_root, uv_cache_dir, west) -> dict:
    """The server under test: cluster "east" (the default, at root_dir) and cluster "west" (at west's mount)."""
    traits = kube_traits(control_plane, kube_namespace, envmgr_root, uv_cache_dir)
    east = {"context": traits["kubernetes_context"], "config_file": traits["kubernetes_config_file"], "namespaces": [kube_namespace]}
    return {**traits, "clusters": {"east": east, "west": west["cluster"]}}


async def test_each_cluster_stores_its_environments_and_kernels(api, control_plane, kube_namespace, envmgr_root, west,
                                                              local_index, uv_cache_dir, tmp_path):
    east_ns, west_ns, west_root = kube_namespace, west["namespace"], west["root"]
    info = await api.ok("GET", "info")
    assert info["clusters"] == [{"name": "east", "namespaces": [east_ns]}, {"name": "west", "namespaces": [west_ns]}]
    assert info["namespaces"] == [east_ns]  # the default cluster's

    pkgs = {"packages": "envmgr-demo-pkg==1.0\n", "index_urls": [local_index.url]}
    # Refused before anything is written: an unknown cluster, a namespace of another cluster (query or body).
    for body, params, field, words in (
            ({"name": "nowhere"}, {"cluster": "north"}, "cluster", ["east, west"]),
            ({"name": "nowhere", "cluster": "north"}, {}, "cluster", ["east, west"]),
            ({"name": "nowhere"}, {"cluster": "west", "namespace": east_ns}, "namespace", ["'west'", west_ns]),
            ({"name": "nowhere", "cluster": "west", "namespace": east_ns}, {}, "namespace", ["'west'", west_ns])):
        status, error = await api.call("POST", "environments", {**body, **pkgs}, **params)
        assert status == 422 and error["field"] == field and all(w in error["message"] for w in words), (params, error)
    assert not any(os.path.exists(os.path.join(r, "envs", ns, "nowhere")) for r in (envmgr_root, west_root) for ns in (east_ns, west_ns))

    # The body's cluster alone means that cluster's first namespace (a dry run writes nothing).
    dry = await api.ok("POST", "environments", {"name": "dry-west", "cluster": "west", **pkgs}, expect=(200,), dry_run=1)
    assert (dry["cluster"], dry["namespace"]) == ("west", west_ns)

    east_env = await api.create({"name": "on-east", **pkgs})
    west_env = await api.create({"name": "on-west", **pkgs}, cluster="west")
    assert (east_env["cluster"], east_env["namespace"]) == ("east", east_ns)
    assert (west_env["cluster"], west_env["namespace"]) == ("west", west_ns)
    assert (await api.wait("on-west", timeout=180, cluster="west"))["status"] == "ready"
    assert (await api.wait("on-east", timeout=180))["status"] == "ready"

    # Everything of the west environment is on west's storage: record, revision, log, kernelspec.
    env_dir = os.path.join(west_root, "envs", west_ns, "on-west")
    assert os.path.isfile(os.path.join(env_dir, "env.json")) and os.path.isdir(os.path.join(env_dir, "rev-0001"))
    assert os.path.isfile(os.path.join(env_dir, "logs", "rev-0001.log"))
    with open(os.path.join(west_root, "jupyter", "kernels", "envmgr-on-west", "kernel.json")) as f:
        spec = json.load(f)
    assert spec["argv"][0] == os.path.join(env_dir, "rev-0001", "bin", "python")
    assert spec["env"]["PYTHONPATH"] == os.path.join(west_root, "jupyter", "lib")
    with open(os.path.join(env_dir, "builds", "rev-0001", "plan.json")) as f:  # uv-managed Pythons: west's volume
        assert json.load(f)["env"]["UV_PYTHON_INSTALL_DIR"] == os.path.join(west_root, "python")
    assert not os.path.exists(os.path.join(envmgr_root, "envs", west_ns))
    assert not os.path.exists(os.path.join(envmgr_root, "jupyter", "kernels", "envmgr-on-west"))
    [west_job] = client.BatchV1Api(control_plane.client()).list_namespaced_job(west_ns).items
    assert west_job.spec.template.spec.containers[0].volume_mounts[0].mount_path == west_root
    revisions = (await api.ok("GET", "environments/on-west/revisions", cluster="west", namespace=west_ns))["revisions"]
    assert [r["revision"] for r in revisions] == [1] and "envmgr-demo-pkg==1.0" in revisions[0]["lock"]
    kernelspecs = (await api.fetch("api", "kernelspecs")).body
    assert b'"envmgr-on-west"' in kernelspecs and b'"envmgr-on-east"' in kernelspecs

    # The list: the default namespace, or the cluster's; each record names its cluster.
    assert [(e["name"], e["cluster"]) for e in (await api.ok("GET", "environments"))["environments"]] == [("on-east", "east")]
    listed = (await api.ok("GET", "environments", cluster="west"))["environments"]
    assert [(e["name"], e["cluster"], e["namespace"]) for e in listed] == [("on-west", "west", west_ns)]

    # A notebook server inside cluster west: its one cluster, its root the west claim's mount path.
    server = Server(str(tmp_path / "west-server"), west_root, uv_cache_dir, **{
        **kube_traits(control_plane, west_ns, west_root, uv_cache_dir), "clusters": {"west": {
            k: v for k, v in west["cluster"].items() if k != "mount_path"}}})
    try:
        inside = EnvmgrClient(f"http://127.0.0.1:{server.port}/", server.token, west_ns)
        [seen] = inside.list()
        assert (seen["name"], seen["status"], seen["cluster"], seen["kernel_name"]) == ("on-west", "ready", "west", "envmgr-on-west")
        assert "envmgr-on-west" in inside.request("GET", "api/kernelspecs")["kernelspecs"]
        out = await inside.run_code("envmgr-on-west", "import envmgr_demo_pkg, sys; print(envmgr_demo_pkg.__version__, sys.prefix)")
        assert out.split() == ["1.0", os.path.join(env_dir, "rev-0001")]
    finally:
        server.stop()

    # GET / PATCH / DELETE by ?cluster= and ?namespace=; a namespace of the other cluster, or an unknown cluster: 422.
    assert (await api.get("on-west", cluster="west", namespace=west_ns))["cluster"] == "west"
    status, error = await api.call("GET", "environments/on-west", cluster="west", namespace=east_ns)
    assert status == 422 and error["field"] == "namespace" and west_ns in error["message"], error
    for path in ("environments/on-west", "environments", "events"):
        status, error = await api.call("GET", path, cluster="north")
        assert status == 422 and error["field"] == "cluster", (path, error)
    status, error = await api.call("PATCH", "environments/on-west", {"cluster": "east"}, cluster="west")
    assert status == 422 and error["field"] == "cluster", error
    patched = await api.ok("PATCH", "environments/on-west", {"description": "lives in west"}, expect=(200,),
                           cluster="west", namespace=west_ns)
    assert patched["description"] == "lives in west"
    await api.ok("DELETE", "environments/on-west", expect=(204,), cluster="west", namespace=west_ns)
    assert not os.path.exists(env_dir)
    assert not os.path.exists(os.path.join(west_root, "jupyter", "kernels", "envmgr-on-west"))

    # The east environment is untouched by all of it.
    east_env = await api.get("on-east")
    assert (east_env["status"], east_env["ready_revision"], east_env["description"]) == ("ready", 1, "")
    assert os.path.isfile(os.path.join(envmgr_root, "jupyter", "kernels", "envmgr-on-east", "kernel.json"))
    assert os.path.isdir(os.path.join(envmgr_root, "envs", east_ns, "on-east", "rev-0001"))
