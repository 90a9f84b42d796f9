"""Builds as Jobs through a real jupyter server and the API stand-in, for what the real control plane of
tests/kubernetes_real cannot show here: the `restricted` Pod Security admission of the Job, image errors,
namespaces listed by label. Cancel, GPU scheduling, deadlines and claims are tested on the real one."""
from __future__ import annotations

import os

import pytest
from helpers import unique
from kubernetes.client import V1Job, V1Pod

pytestmark = pytest.mark.slow  # servers, builds and the stand-in's processes

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
    assert "==> [1/5] venv:" in text and "==> [2/5] install:" in text and "==> done in" in text
    assert "==> [3/5] bytecode:" in text and "/.envmgr/bytecode-" in text  # the volume's copy: nothing of ours in the image
    assert "envmgr-demo-pkg==1.0" in text

    # The environment is a kernel of this server and runs code.
    out = await api.run("envmgr-k8s-env", "import envmgr_demo_pkg, os; print(envmgr_demo_pkg.__version__, os.environ['ENVMGR_TEST_VAR'])")
    assert out.split() == ["1.0", "from-k8s"]
    packages = (await api.ok("GET", "environments/k8s-env/packages"))["packages"]
    assert {"name": "envmgr-demo-pkg", "version": "1.0", "requested": True, "base": False, "required_by": []} in packages

    # An update is revision 2, its own Job.
    await api.ok("PATCH", "environments/k8s-env", {"packages": "envmgr-demo-pkg==2.0\n"}, expect=(202,))
    record = await api.wait("k8s-env", timeout=120)
    assert record["status"] == "ready" and record["ready_revision"] == 2, record["message"]
    assert sorted(j["metadata"]["labels"]["envmgr.jupyter.org/revision"] for j in standin.jobs()) == ["1", "2"]
    out = await api.run("envmgr-k8s-env", "import envmgr_demo_pkg; print(envmgr_demo_pkg.__version__)")
    assert out.strip() == "2.0"

    await api.ok("DELETE", "environments/k8s-env", expect=(204,))
    assert not os.path.exists(os.path.join(envmgr_root, "envs", "default", "k8s-env"))


async def _running(api, standin, name: str) -> dict:
    """Wait until the build's container runs and its log has reached the install step."""
    await standin.until(lambda: standin.state()["processes"], timeout=60, what="a running build container")
    return await api.wait_for(name, lambda r: r["status"] == "warming" and r["message"] not in ("starting", "queued"), timeout=60)


async def test_delete_while_building(api, standin, local_index, envmgr_root):
    slow = unique("envmgr-slow")
    await api.create({"name": "k8s-delete", "packages": f"{slow}\n", "index_urls": [local_index.url]})
    await _running(api, standin, "k8s-delete")
    await api.ok("DELETE", "environments/k8s-delete", expect=(204,))
    assert (await api.call("GET", "environments/k8s-delete"))[0] == 404
    assert not os.path.exists(os.path.join(envmgr_root, "envs", "default", "k8s-delete"))
    assert standin.jobs() == [] and standin.pods() == [] and standin.state()["processes"] == {}


@pytest.mark.parametrize("kube_overrides", [{"kubernetes_pvc_name": "no-such-claim"}])
async def test_missing_claim(api, standin, envmgr_root):
    status, body = await api.call("POST", "environments", {"name": "k8s-refused", "packages": "six\n"})
    assert status == 422, body
    assert "no PersistentVolumeClaim 'no-such-claim' in namespace 'default'" in body["message"]
    assert not os.path.exists(os.path.join(envmgr_root, "envs", "default", "k8s-refused"))
    assert standin.jobs() == []


@pytest.mark.parametrize("kube_overrides", [{"kubernetes_image": "Not/A:Valid image"}])
async def test_image_that_cannot_run(api, standin, local_index):
    await api.create({"name": "k8s-badimage", "packages": "envmgr-demo-pkg\n", "index_urls": [local_index.url]})
    record = await api.wait("k8s-badimage", timeout=60)
    assert record["status"] == "failed"
    assert record["message"].startswith("the build pod cannot start: InvalidImageName"), record["message"]
    assert standin.jobs() == []


@pytest.mark.parametrize("standin_namespaces", [["team-b", "team-a"]])
@pytest.mark.parametrize("kube_overrides", [{"kubernetes_namespace_selector": "envmgr.jupyter.org/enabled=true",
                                             "kubernetes_ttl_seconds_after_finished": 1}])
async def test_namespaces_listed_from_the_api_and_jobs_expire(api, standin, local_index, envmgr_root):
    info = await api.ok("GET", "info")
    assert info["namespaces"] == ["team-a", "team-b"]  # "default" has not the label
    await api.create({"name": "ns-env", "packages": "envmgr-demo-pkg\n", "index_urls": [local_index.url]}, namespace="team-b")
    record = await api.wait("ns-env", timeout=120, namespace="team-b")
    assert record["status"] == "ready", record["message"]
    assert record["kernel_name"] == "envmgr-team-b.ns-env"
    assert os.path.isdir(os.path.join(envmgr_root, "envs", "team-b", "ns-env", "rev-0001"))
    assert standin.requests("POST", "/namespaces/team-b/jobs") and not standin.requests("POST", "/namespaces/team-a/jobs")
    # ttlSecondsAfterFinished: Kubernetes removes the ended Job and its pod; the record keeps what it learnt.
    await standin.until(lambda: standin.jobs("team-b") == [] and standin.pods("team-b") == [], timeout=30, what="the Job expired")
    assert (await api.get("ns-env", namespace="team-b"))["status"] == "ready"
