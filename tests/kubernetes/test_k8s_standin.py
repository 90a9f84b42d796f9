"""The stand-in itself, through the official client unchanged: the semantics the builder relies on are the API's."""
from __future__ import annotations

import time

import pytest
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from jupyter_envmgr.app import EnvManagerApp
from jupyter_envmgr.builders.kubernetes import objects

pytestmark = pytest.mark.slow  # servers, builds and the stand-in's processes


@pytest.fixture
def kube(standin):
    cfg = client.Configuration()
    config.load_kube_config(config_file=standin.kubeconfig, context="standin", client_configuration=cfg)
    api = client.ApiClient(cfg)
    yield client.CoreV1Api(api), client.BatchV1Api(api)
    api.close()


def job(envmgr_root, name: str, code: str, **edit) -> client.V1Job:
    config = EnvManagerApp(root_dir=envmgr_root, kubernetes_termination_grace_period_seconds=2)
    m = objects.job_manifest(config, claim="jupyter-envmgr", mount_path=envmgr_root, active_deadline=3600, namespace="default", env_name="x", revision=1, name=name,
                             plan_path=f"{envmgr_root}/plan.json", runner_path=f"{envmgr_root}/runner.py")
    m["spec"]["template"]["spec"]["containers"][0]["command"] = ["python", "-c", code]
    for path, value in edit.items():
        target = m
        *parents, last = path.split(".")
        for p in parents:
            target = target[int(p)] if p.isdigit() else target[p]
        if value is None:
            del target[last]
        else:
            target[last] = value
    return client.V1Job.from_dict(m)


def conditions(j) -> list:
    return [c.type for c in (j.status.conditions or [])]


def test_needs_the_token(standin):
    cfg = client.Configuration(host=standin.url)
    with pytest.raises(ApiException) as e:
        client.CoreV1Api(client.ApiClient(cfg)).list_namespace()
    assert e.value.status == 401


def test_watch_semantics(kube, standin, envmgr_root):
    core, batch = kube
    listed = batch.list_namespaced_job("default")
    rv = listed.metadata.resource_version
    batch.create_namespaced_job("default", job(envmgr_root, "w1", "print('hi')"))
    with pytest.raises(ApiException) as e:
        batch.create_namespaced_job("default", job(envmgr_root, "w1", "print('hi')"))
    assert e.value.status == 409

    # From a resourceVersion: every change after it, in order, until the Job completes.
    seen = []
    w = watch.Watch()
    for event in w.stream(batch.list_namespaced_job, "default", resource_version=rv, timeout_seconds=20):
        seen.append((event["type"], int(event["object"].metadata.resource_version)))
        if "Complete" in conditions(event["object"]):
            w.stop()
    assert seen[0][0] == "ADDED" and all(t == "MODIFIED" for t, _ in seen[1:])
    assert [v for _, v in seen] == sorted(v for _, v in seen)
    last = seen[-1][1]

    # timeoutSeconds ends the stream cleanly; nothing newer means no events.
    start = time.monotonic()
    assert list(watch.Watch().stream(batch.list_namespaced_job, "default", resource_version=str(last), timeout_seconds=1)) == []
    assert 0.9 < time.monotonic() - start < 5

    # Without a resourceVersion a watch starts with the current objects as ADDED.
    events = list(watch.Watch().stream(batch.list_namespaced_job, "default", timeout_seconds=1))
    assert [(e["type"], e["object"].metadata.name) for e in events] == [("ADDED", "w1")]

    # A version older than the compacted history: 410 Gone.
    standin.compact()
    with pytest.raises(ApiException) as e:
        list(watch.Watch().stream(batch.list_namespaced_job, "default", resource_version=rv, timeout_seconds=2))
    assert e.value.status == 410

    # The pod: its log, its labels, its owner.
    [pod] = core.list_namespaced_pod("default", label_selector="job-name=w1").items
    assert pod.metadata.owner_references[0].name == "w1" and pod.status.phase == "Succeeded"
    assert core.read_namespaced_pod_log(pod.metadata.name, "default", container="build") == "hi\n"


def test_restricted_pods_are_refused(kube, standin, envmgr_root):
    _, batch = kube
    insecure = job(envmgr_root, "w2", "print(1)", **{"spec.template.spec.containers.0.securityContext": None})
    batch.create_namespaced_job("default", insecure)  # the Job is accepted; its pod never is
    time.sleep(0.3)
    [violation] = standin.state()["violations"]
    assert violation["job"] == "w2" and any("allowPrivilegeEscalation" in p for p in violation["problems"])
    assert standin.pods() == []
    root = job(envmgr_root, "w3", "print(1)", **{"spec.template.spec.securityContext.runAsUser": 0})
    batch.create_namespaced_job("default", root)
    time.sleep(0.3)
    assert [v["job"] for v in standin.state()["violations"]] == ["w2", "w3"]


def test_deletion_propagation(kube, standin, envmgr_root):
    core, batch = kube
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    for name in ("orphan", "foreground"):
        batch.create_namespaced_job("default", job(envmgr_root, name, stubborn))
    deadline = time.monotonic() + 20
    while len(standin.state()["processes"]) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)

    # No propagationPolicy: the API's default for Jobs orphans the pod, which keeps running.
    batch.delete_namespaced_job("orphan", "default")
    time.sleep(0.5)
    [orphan] = core.list_namespaced_pod("default", label_selector="job-name=orphan").items
    assert orphan.metadata.owner_references is None and orphan.status.phase == "Running"

    # Foreground: the Job stays, marked, until its pod is gone (SIGTERM ignored: SIGKILL after the grace period).
    batch.delete_namespaced_job("foreground", "default", propagation_policy="Foreground")
    marked = batch.read_namespaced_job("foreground", "default")
    assert marked.metadata.deletion_timestamp and "foregroundDeletion" in marked.metadata.finalizers
    deadline = time.monotonic() + 20
    while any(j.metadata.name == "foreground" for j in batch.list_namespaced_job("default").items):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert core.list_namespaced_pod("default", label_selector="job-name=foreground").items == []
