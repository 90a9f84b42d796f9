"""Builds as Jobs through a real jupyter server and the API stand-in: create, run code, cancel, delete."""
from __future__ import annotations

import json
import os

import pytest
from kubernetes.client import V1Job, V1Pod

from helpers import unique

PVC = "jupyter-envmgr"


async def test_create_ready_run_delete(api, standin, local_index, envmgr_root):
    info = await api.ok("GET", "info")
    assert info["backend"] == "kubernetes"
    assert info["namespaces"] == ["default"]
    assert info["storages"] == [{"name": PVC, "path": envmgr_root, "access_mode": "ReadWriteMany"}]

    created = await api.create({"name": "k8s-env", "packages": "envmgr-demo-pkg==1.0\n", "index_urls": [local_index.url],
                                "env_vars": {"ENVMGR_TEST_VAR": "from-k8s"}})
    assert created["status"] in ("pending", "warming")
    record = await api.wait("k8s-env", timeout=120)
    assert record["status"] == "ready", record["message"]

    # The Job that ran it: labels, restricted security, the volume at the root's own path, the same runner.
    [job] = standin.jobs()
    V1Job.from_dict(job)
    meta, spec = job["metadata"], job["spec"]
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "jupyter-envmgr"
    assert meta["labels"]["envmgr.jupyter.org/name"] == "k8s-env"
    assert meta["labels"]["envmgr.jupyter.org/namespace"] == "default"
    assert meta["labels"]["envmgr.jupyter.org/revision"] == "1"
    assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] > 0 and spec["ttlSecondsAfterFinished"] == 3600
    pod_spec = spec["template"]["spec"]
    assert pod_spec["automountServiceAccountToken"] is False
    [container] = pod_spec["containers"]
    assert container["command"][0] == "python"
    assert container["command"][1].startswith(os.path.join(envmgr_root, ".envmgr", "runner-"))
    assert container["command"][2] == os.path.join(envmgr_root, "envs", "default", "k8s-env", "builds", "rev-0001", "plan.json")
    assert container["volumeMounts"] == [{"name": "envmgr", "mountPath": envmgr_root}]
    assert pod_spec["volumes"] == [{"name": "envmgr", "persistentVolumeClaim": {"claimName": PVC}}]
    assert standin.state()["violations"] == []
    assert any(c["type"] == "Complete" for c in job["status"]["conditions"])
    for pod in standin.pods():
        V1Pod.from_dict(pod)

    # The pod log became the revision's log, and the log route serves it.
    status, text = await api.call("GET", "environments/k8s-env/log")
    assert status == 200
    assert "==> [1/3] venv:" in text and "==> [2/3] install:" in text and "==> done in" in text
    assert "envmgr-demo-pkg==1.0" in text

    # The environment is a kernel of this server and runs code.
    out = await api.run("envmgr-k8s-env", "import envmgr_demo_pkg, os; print(envmgr_demo_pkg.__version__, os.environ['ENVMGR_TEST_VAR'])")
    assert out.split() == ["1.0", "from-k8s"]
    packages = (await api.ok("GET", "environments/k8s-env/packages"))["packages"]
    assert {"name": "envmgr-demo-pkg", "version": "1.0"} in packages

    # An update is revision 2, its own Job.
    await api.ok("PATCH", "environments/k8s-env", {"packages": "envmgr-demo-pkg==2.0\n"}, expect=(202,))
    record = await api.wait("k8s-env", timeout=120)
    assert record["status"] == "ready" and record["ready_revision"] == 2, record["message"]
    assert sorted(j["metadata"]["labels"]["envmgr.jupyter.org/revision"] for j in standin.jobs()) == ["1", "2"]
    out = await api.run("envmgr-k8s-env", "import envmgr_demo_pkg; print(envmgr_demo_pkg.__version__)")
    assert out.strip() == "2.0"

    await api.ok("DELETE", "environments/k8s-env", expect=(204,))
    assert not os.path.exists(os.path.join(envmgr_root, "envs", "default", "k8s-env"))
