"""KubernetesBuilder on its own against the stand-in: adoption of a Job whose handle was lost, a Job deleted
behind its back, a container that dies before the runner can write a result."""
from __future__ import annotations

import json
import os

import pytest

from jupyter_envmgr.app import EnvManagerApp
from jupyter_envmgr.builders.base import Build
from jupyter_envmgr.builders.kubernetes import KubernetesBuilder
from jupyter_envmgr.recipes import BuildPaths
from jupyter_envmgr.spec import EnvSpec

pytestmark = pytest.mark.slow  # servers, builds and the stand-in's processes

PVC = "jupyter-envmgr"


def builder(standin, root: str, **job) -> KubernetesBuilder:
    return KubernetesBuilder(EnvManagerApp(
        root_dir=root, namespaces=["default"], kubernetes_pvc_name=PVC, kubernetes_context="standin",
        kubernetes_config_file=standin.kubeconfig, kubernetes_api_timeout=2.0, kubernetes_api_retries=2,
        kubernetes_api_retry_backoff=0.2, kubernetes_watch_timeout=15, kubernetes_start_timeout=30.0,
        kubernetes_termination_grace_period_seconds=2, **{f"kubernetes_{k}": v for k, v in job.items()}))


def build(root: str, name: str, code: str) -> Build:
    env = os.path.join(root, "envs", "default", name)
    paths = BuildPaths(prefix=os.path.join(env, "rev-0001"), build_dir=os.path.join(env, "builds", "rev-0001"),
                       log=os.path.join(env, "logs", "rev-0001.log"), resources_dir=os.path.join(env, "resources"))
    os.makedirs(paths.build_dir)
    os.makedirs(os.path.dirname(paths.log))
    plan = {"log": paths.log, "result": paths.result, "timeout": 60, "env": {},
            "steps": [{"name": "work", "argv": ["python", "-c", code], "env": {}, "stdout": None, "timeout": None}]}
    with open(paths.plan, "w") as f:
        json.dump(plan, f)
    return Build("default", name, 1, EnvSpec(name=name), paths, 60.0)


async def test_a_lost_handle_adopts_the_running_job(standin, envmgr_root):
    b = build(envmgr_root, "adopt", "import time; print('working', flush=True); time.sleep(2); print('done')")
    first = builder(standin, envmgr_root)
    handle = await first.start(b)
    await standin.until(lambda: standin.state()["processes"], what="the container running")
    await first.stop()  # the server stops before it could save the handle

    b.handle = None
    second = builder(standin, envmgr_root)
    await second.prepare()
    adopted = await second.start(b)
    assert adopted["job"] == handle["job"]
    assert len(standin.requests("POST", "/jobs")) == 1
    result = await second.wait(b)
    assert result["status"] == "ready", result
    with open(b.paths.log) as f:
        text = f.read()
    assert text == standin.pod_log(handle["job"]) and "working\ndone\n" in text
    await second.stop()


async def test_a_job_deleted_behind_the_servers_back(standin, envmgr_root):
    b = build(envmgr_root, "gone", "import time; time.sleep(60)")
    k = builder(standin, envmgr_root)
    handle = await k.start(b)
    await standin.until(lambda: standin.state()["processes"], what="the container running")
    standin.delete_job(handle["job"], policy="Background")
    result = await k.wait(b)
    assert result["status"] == "failed"
    assert "was deleted before it finished" in result["message"]
    await k.stop()


async def test_a_container_that_dies_before_the_runner(standin, envmgr_root):
    b = build(envmgr_root, "dies", "print('never runs')")
    k = builder(standin, envmgr_root, python="false")  # the image's "python" fails at once
    await k.start(b)
    result = await k.wait(b)
    assert result["status"] == "failed"
    assert result["message"].startswith("the build pod failed: the build container ended (Error with exit code 1)"), result
    with open(b.paths.log) as f:
        assert f.read().endswith(f"==> failed: {result['message']}\n")
    await k.stop()
