"""One environment, many places (issue 17): a Job built from `jupyter envmgr pod-spec` runs on the real control
plane a script that imports a package only the environment has, as deploy/rbac.yaml's ServiceAccount."""
from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys

import pytest
from kubernetes import client, config
from realkube import IMAGE, PVC

pytestmark = pytest.mark.slow

SCRIPT = "import envmgr_demo_pkg, sys; print('version', envmgr_demo_pkg.__version__); print('prefix', sys.prefix)"


async def test_job_from_pod_spec_runs_in_the_environment(api, kube_namespace, kube_config, local_index, envmgr_root, tmp_path):
    ns = kube_namespace
    assert importlib.util.find_spec("envmgr_demo_pkg") is None, "the package must be the environment's alone"
    await api.create({"name": "used-elsewhere", "packages": "envmgr-demo-pkg==2.0\n", "index_urls": [local_index.url]},
                     namespace=ns)
    record = await api.wait("used-elsewhere", timeout=180, namespace=ns)
    assert record["status"] == "ready", record["message"]

    # The CLI as a user runs it where the storage is mounted, with the server's own configuration.
    server_config = tmp_path / "jupyter_server_config.json"
    server_config.write_text(json.dumps({"EnvManagerApp": kube_config}))
    argv = [sys.executable, "-m", "jupyter_envmgr.cli", "pod-spec", "--root", envmgr_root, "--config", str(server_config),
            "--claim", PVC, "--image", IMAGE, "--job", "use-1", "--json", "used-elsewhere", "--", "-c", SCRIPT]
    done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    manifest = json.loads(done.stdout)
    assert manifest["metadata"] == {"name": "use-1", "namespace": ns}

    # Created and read with the credentials of the test's server (deploy/rbac.yaml's Role), not as an admin.
    api_client = config.new_client_from_config(kube_config["kubernetes_config_file"], context="envmgr")
    batch, core = client.BatchV1Api(api_client), client.CoreV1Api(api_client)
    await asyncio.to_thread(batch.create_namespaced_job, ns, manifest)
    deadline = asyncio.get_running_loop().time() + 90
    while True:
        job = await asyncio.to_thread(batch.read_namespaced_job, "use-1", ns)
        if job.status.succeeded or job.status.failed or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.5)
    [pod] = (await asyncio.to_thread(core.list_namespaced_pod, ns, label_selector="job-name=use-1")).items
    assert job.status.succeeded == 1, [s.state for s in pod.status.container_statuses or []]
    log = await asyncio.to_thread(core.read_namespaced_pod_log, pod.metadata.name, ns)
    lines = dict(line.split(" ", 1) for line in log.splitlines())
    assert lines["version"] == "2.0", log
    assert lines["prefix"].startswith(f"{envmgr_root}/envs/{ns}/used-elsewhere/"), log  # the serving revision's own
