"""Builds as Jobs on a real control plane, through a real jupyter server authenticated as deploy/rbac.yaml's
ServiceAccount: create -> ready -> code in its kernel -> update -> delete."""
from __future__ import annotations

import os
import sys

import jupyter_envmgr
import pytest
import rattler
from kubernetes import client

from realkube import DEBIAN_IMAGE, NETWORK_ENV

NETWORK = {k: os.environ[k] for k in NETWORK_ENV if k in os.environ}

pytestmark = pytest.mark.slow


def jobs(plane, namespace: str) -> list:
    return client.BatchV1Api(plane.client()).list_namespaced_job(namespace).items


async def test_create_ready_run_update_delete(api, control_plane, kube_namespace, local_index, envmgr_root):
    info = await api.ok("GET", "info")
    assert info["backend"] == "kubernetes"
    assert info["namespaces"] == [kube_namespace]

    await api.create({"name": "real-env", "packages": "envmgr-demo-pkg==1.0\n", "index_urls": [local_index.url],
                      "env_vars": {"ENVMGR_TEST_VAR": "from-k8s"}}, namespace=kube_namespace)
    record = await api.wait("real-env", timeout=180, namespace=kube_namespace)
    assert record["status"] == "ready", record["message"]

    # The Job the real API accepted and the real Job controller completed.
    [job] = jobs(control_plane, kube_namespace)
    assert job.metadata.labels["app.kubernetes.io/managed-by"] == "jupyter-envmgr"
    assert job.metadata.labels["envmgr.jupyter.org/revision"] == "1"
    assert job.status.succeeded == 1
    assert any(c.type == "Complete" and c.status == "True" for c in job.status.conditions)

    # The pod log, read through the API server's pods/log proxy, became the revision's log.
    status, text = await api.call("GET", "environments/real-env/log", namespace=kube_namespace)
    assert status == 200
    assert "==> done in" in text and "envmgr-demo-pkg==1.0" in text, text

    out = await api.run("envmgr-real-env", "import envmgr_demo_pkg, os; print(envmgr_demo_pkg.__version__, os.environ['ENVMGR_TEST_VAR'])")
    assert out.split() == ["1.0", "from-k8s"]

    await api.ok("PATCH", "environments/real-env", {"packages": "envmgr-demo-pkg==2.0\n"}, expect=(202,), namespace=kube_namespace)
    record = await api.wait("real-env", timeout=180, namespace=kube_namespace)
    assert record["status"] == "ready" and record["ready_revision"] == 2, record["message"]
    assert sorted(j.metadata.labels["envmgr.jupyter.org/revision"] for j in jobs(control_plane, kube_namespace)) == ["1", "2"]
    out = await api.run("envmgr-real-env", "import envmgr_demo_pkg; print(envmgr_demo_pkg.__version__)")
    assert out.strip() == "2.0"

    await api.ok("DELETE", "environments/real-env", expect=(204,), namespace=kube_namespace)
    assert not os.path.exists(os.path.join(envmgr_root, "envs", kube_namespace, "real-env"))


@pytest.mark.parametrize("kube_overrides", [{
    "kubernetes_image": DEBIAN_IMAGE, "kubernetes_python": "python3",
    # An image with the build-side programs installed: jupyter_envmgr and py-rattler on its PYTHONPATH.
    "kubernetes_extra_env": {**NETWORK, "PYTHONPATH": os.pathsep.join([os.path.dirname(os.path.dirname(jupyter_envmgr.__file__)),
                                                          os.path.dirname(os.path.dirname(rattler.__file__))])},
}])
async def test_conda_build_runs_on_the_images_interpreter(api, control_plane, kube_namespace, conda_channel, debian_python):
    """The conda step runs on the build image's python (here Debian's /usr/bin/python3), never on the
    server's sys.executable: with a real image the server's interpreter does not exist in the pod."""
    ns = kube_namespace
    packages = ("channels:\n  - envmgr-test-channel\ndependencies:\n  - envmgr-conda-demo=1.0\n"
                "  - pip:\n    - ipykernel\n")
    await api.create({"name": "real-conda", "manager": "conda", "python": "3.11", "packages": packages}, namespace=ns)
    record = await api.wait("real-conda", timeout=240, namespace=ns)
    assert record["status"] == "ready", record["message"]
    [job] = jobs(control_plane, ns)
    assert job.spec.template.spec.containers[0].command[0] == "python3"
    status, log = await api.call("GET", "environments/real-conda/log", namespace=ns)
    [conda_step] = [line for line in log.splitlines() if line.startswith("==> [1/")]
    assert "python3 -m jupyter_envmgr.conda_build" in conda_step and sys.executable not in conda_step, conda_step
    out = await api.run("envmgr-real-conda", "import envmgr_conda_demo, sys; print(envmgr_conda_demo.__name__, sys.prefix)")
    assert out.split()[0] == "envmgr_conda_demo" and "real-conda" in out


def test_render_job_is_what_the_real_api_accepts(control_plane, kube_namespace, tmp_path, capsys):
    """`jupyter envmgr render-job` prints a Job the real API server validates and admits (server-side dry run)."""
    import json

    import yaml
    from jupyter_envmgr.cli import build_parser, run

    config = tmp_path / "jupyter_server_config.json"
    config.write_text(json.dumps({"EnvManagerApp": {
        "backend": "kubernetes", "root_dir": str(tmp_path), "namespaces": [kube_namespace], "kubernetes_image": "x:1"}}))
    assert run(build_parser().parse_args(["render-job", "torch", "--gpu", "1", "--config", str(config)])) == 0
    manifest = yaml.safe_load(capsys.readouterr().out)
    accepted = client.BatchV1Api(control_plane.client()).create_namespaced_job(kube_namespace, manifest, dry_run="All")
    assert accepted.spec.template.spec.containers[0].resources.limits["nvidia.com/gpu"] == "1"
    assert accepted.spec.template.spec.security_context.run_as_non_root is True


async def test_reflector_lists_again_on_its_own(control_plane, kube_namespace, tmp_path):
    """A watch is re-listed every kubernetes_resync_seconds, so a lost event cannot go unnoticed for long."""
    import asyncio

    from jupyter_envmgr.app import EnvManagerApp
    from jupyter_envmgr.builders.kubernetes import KubernetesBuilder

    from realkube import ACCOUNT

    kubeconfig = control_plane.service_account_kubeconfig(kube_namespace, ACCOUNT, {"envmgr": kube_namespace})
    builder = KubernetesBuilder(EnvManagerApp(root_dir=str(tmp_path), namespaces=[kube_namespace], kubernetes_context="envmgr",
                                              kubernetes_config_file=kubeconfig, kubernetes_resync_seconds=1.0))
    try:
        await builder.prepare()
        state = builder.state()
        await asyncio.sleep(3.5)
        assert state.jobs[kube_namespace].stats["lists"] >= 3, state.jobs[kube_namespace].stats
        assert state.jobs[kube_namespace].stats["errors"] == 0, state.jobs[kube_namespace].last_error
    finally:
        await builder.stop()
