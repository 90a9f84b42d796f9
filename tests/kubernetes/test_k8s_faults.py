"""The Kubernetes API failing: 500s and time-outs retried then reported as 503, dropped watches resumed,
410 Gone answered with a fresh list, a lost create answer resolved by the 409 that follows."""
from __future__ import annotations

import os

import pytest
from helpers import unique

pytestmark = pytest.mark.slow  # servers, builds and the stand-in's processes

PVC_PATH = "/persistentvolumeclaims/jupyter-envmgr"


@pytest.mark.parametrize("kube_overrides", [{"kubernetes_api_retries": 3}])
async def test_transient_failures_are_retried(api, standin, local_index):
    standin.faults(
        {"method": "GET", "path": PVC_PATH, "status": 500, "times": 2},
        {"method": "GET", "path": PVC_PATH, "delay": 3.0, "times": 1},  # > kubernetes_api_timeout (2s)
        # The create takes effect but its answer is lost: the retry meets 409 and finds the Job is ours.
        {"method": "POST", "path": "/jobs$", "status": 500, "after": True, "times": 1},
    )
    status, body = await api.call("POST", "environments", {"name": "k8s-flaky", "packages": "envmgr-demo-pkg\n",
                                                           "index_urls": [local_index.url]})
    assert status == 202, body
    record = await api.wait("k8s-flaky", timeout=120)
    assert record["status"] == "ready", record["message"]
    assert len(standin.requests("GET", PVC_PATH)) == 4
    creates = standin.requests("POST", "/jobs")
    assert [r["status"] for r in creates] == [500, 409]
    assert len(standin.jobs()) == 1


@pytest.mark.parametrize("fault", [{"status": 500}, {"status": 503}, {"delay": 3.0}], ids=["500", "503", "timeout"])
async def test_unreachable_api_gives_503_and_writes_nothing(api, standin, envmgr_root, fault):
    standin.faults(dict(fault, method="GET", path=PVC_PATH, times=100))
    status, body = await api.call("POST", "environments", {"name": "k8s-down", "packages": "six\n"})
    assert status == 503, body
    assert body["reason"] == "unavailable"
    assert "did not answer" in body["message"] and "after 3 attempts" in body["message"]
    assert len(standin.requests("GET", PVC_PATH)) == 3  # kubernetes_api_retries = 2
    assert not os.path.exists(os.path.join(envmgr_root, "envs", "default", "k8s-down"))
    assert standin.requests("POST", "/jobs") == []


@pytest.mark.parametrize("kube_overrides", [{"kubernetes_api_retries": 0}])
async def test_job_create_refused_fails_the_revision(api, standin, local_index):
    standin.faults({"method": "POST", "path": "/jobs$", "status": 500, "times": 100})
    await api.create({"name": "k8s-nocreate", "packages": "envmgr-demo-pkg\n", "index_urls": [local_index.url]})
    record = await api.wait("k8s-nocreate", timeout=60)
    assert record["status"] == "failed"
    assert "create Job" in record["message"] and "HTTP 500" in record["message"]


def _watches(standin, kind: str) -> list:
    return [r for r in standin.requests("GET", f"/{kind}") if r["query"].get("watch") == "true"]


def _lists(standin, kind: str) -> list:
    return [r for r in standin.requests("GET", f"/{kind}") if r["path"].endswith(f"/{kind}") and r["query"].get("watch") != "true"]


async def test_dropped_watch_resumes_and_gone_relists(api, standin, local_index, envmgr_root):
    slow = unique("envmgr-slow")
    await api.create({"name": "k8s-watch", "packages": f"{slow}\n", "index_urls": [local_index.url]})
    await standin.until(lambda: standin.state()["processes"], what="a running build container")
    await api.wait_for("k8s-watch", lambda r: r["message"] not in ("queued", "starting"))
    lists, watches = len(_lists(standin, "jobs")), len(_watches(standin, "jobs"))
    assert lists == 1 and watches >= 1

    # A connection cut: the watch resumes from the last resourceVersion it saw, without listing again.
    standin.drop()
    await standin.until(lambda: len(_watches(standin, "jobs")) > watches, what="a resumed watch")
    resumed = _watches(standin, "jobs")[-1]
    assert resumed["query"].get("resourceVersion") not in (None, "", "0")
    assert len(_lists(standin, "jobs")) == 1

    # History compacted, then a cut: the resumed watch gets 410 Gone and the server lists afresh.
    standin.compact()
    standin.drop()
    await standin.until(lambda: len(_lists(standin, "jobs")) == 2, what="a fresh list after 410")

    record = await api.wait("k8s-watch", timeout=120)
    assert record["status"] == "ready", record["message"]
    # The log stream was cut too: it resumed without losing or repeating a line.
    status, text = await api.call("GET", "environments/k8s-watch/log")
    [job] = standin.jobs()
    assert text == standin.pod_log(job["metadata"]["name"])
    lines = text.splitlines()
    for step in ("venv", "install", "lock"):
        assert sum(1 for line in lines if line.startswith("==> [") and f"] {step}:" in line) == 1
    assert lines[-1].startswith("==> done in")
