"""Job manifests (pure functions) and `jupyter envmgr render-job`, checked against the client's own models."""
from __future__ import annotations

import json
import os

import pytest
import yaml
from kubernetes.client import ApiClient, V1Job

from jupyter_envmgr.app import EnvManagerApp
from jupyter_envmgr.builders.kubernetes import objects, render_job_yaml
from jupyter_envmgr.cli import app_from_config, build_parser, run

ROOT = "/srv/envmgr"


def manifest(gpu: int = 0, **options) -> dict:
    config = EnvManagerApp(root_dir=ROOT, kubernetes_requests={"cpu": "500m", "memory": "1Gi"},
                           kubernetes_limits={"memory": "4Gi"}, **{f"kubernetes_{k}": v for k, v in options.items()})
    return objects.job_manifest(config, claim="jupyter-envmgr", mount_path=ROOT, active_deadline=3600, namespace="team-a", env_name="torch", revision=3, name=objects.job_name("torch", 3, "abc123"),
                                plan_path=f"{ROOT}/envs/team-a/torch/builds/rev-0003/plan.json",
                                runner_path=f"{ROOT}/.envmgr/runner-0123456789ab.py", gpu=gpu)


def roundtrip(m: dict) -> dict:
    """Into the client's V1Job and back: an unknown or misspelt field would be lost on the way."""
    return ApiClient().sanitize_for_serialization(V1Job.from_dict(m))


@pytest.mark.parametrize("gpu", [0, 2])
def test_manifest_is_a_valid_job(gpu):
    m = manifest(gpu)
    assert roundtrip(m) == m
    job = V1Job.from_dict(m)
    assert job.spec.backoff_limit == 0 and job.spec.ttl_seconds_after_finished == 3600
    labels = job.metadata.labels
    assert labels["app.kubernetes.io/managed-by"] == "jupyter-envmgr"
    assert (labels["envmgr.jupyter.org/name"], labels["envmgr.jupyter.org/namespace"], labels["envmgr.jupyter.org/revision"]) == ("torch", "team-a", "3")
    assert job.spec.template.metadata.labels == labels
    pod = job.spec.template.spec
    assert pod.restart_policy == "Never" and pod.automount_service_account_token is False
    assert pod.security_context.run_as_non_root is True and pod.security_context.run_as_user == 1000
    assert pod.security_context.seccomp_profile.type == "RuntimeDefault"
    [c] = pod.containers
    assert c.security_context.allow_privilege_escalation is False
    assert c.security_context.capabilities.drop == ["ALL"]
    assert c.command == ["python", f"{ROOT}/.envmgr/runner-0123456789ab.py", f"{ROOT}/envs/team-a/torch/builds/rev-0003/plan.json"]
    assert [(m.name, m.mount_path) for m in c.volume_mounts] == [("envmgr", ROOT)]
    assert pod.volumes[0].persistent_volume_claim.claim_name == "jupyter-envmgr"
    if gpu:
        assert c.resources.requests["nvidia.com/gpu"] == c.resources.limits["nvidia.com/gpu"] == "2"
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in m["spec"]["template"]["spec"]["tolerations"]
    else:
        assert "nvidia.com/gpu" not in c.resources.requests and "tolerations" not in m["spec"]["template"]["spec"]


def test_gpu_scheduling_options():
    m = manifest(1, gpu_node_selector={"accelerator": "a100"}, node_selector={"pool": "builds"},
                 tolerations=[{"key": "builds", "operator": "Exists"}],
                 gpu_tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}])
    spec = m["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"pool": "builds", "accelerator": "a100"}
    assert len(spec["tolerations"]) == 2
    assert "nodeSelector" in manifest(0, node_selector={"pool": "builds"})["spec"]["template"]["spec"]
    assert "accelerator" not in manifest(0, gpu_node_selector={"accelerator": "a100"})["spec"]["template"]["spec"].get("nodeSelector", {})
    assert roundtrip(m) == m


def test_job_names_fit_in_a_label():
    name = objects.job_name("a" * 63, 12345, "ffffff")
    assert len(name) <= 63 and name.endswith("-r12345-ffffff") and not name.startswith("-")
    assert objects.job_name("torch", 1, "ab12cd") == "envmgr-torch-r1-ab12cd"


def test_pvc_problems():
    bound_rwx = {"metadata": {"name": "c"}, "spec": {"accessModes": ["ReadWriteMany"]}, "status": {"phase": "Bound", "accessModes": ["ReadWriteMany"]}}
    assert objects.pvc_problem(bound_rwx, "default") is None
    rwo = {"metadata": {"name": "c"}, "spec": {"accessModes": ["ReadWriteOnce"]}, "status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"]}}
    assert "ReadWriteMany" in objects.pvc_problem(rwo, "default")
    pending = {"metadata": {"name": "c"}, "spec": {"accessModes": ["ReadWriteMany"]}, "status": {"phase": "Pending"}}
    assert "not Bound" in objects.pvc_problem(pending, "default")


def test_job_states_and_messages():
    assert objects.job_state({"status": {}}) == "running"
    assert objects.job_state({"status": {"conditions": [{"type": "Complete", "status": "True"}]}}) == "complete"
    failed = {"spec": {"activeDeadlineSeconds": 60},
              "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]}}
    assert objects.job_state(failed) == "failed"
    assert "activeDeadlineSeconds (60s" in objects.job_failure_message(failed)
    oom = {"status": {"phase": "Failed", "containerStatuses": [{"name": "build", "state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}]}}
    assert "out of memory" in objects.pod_failure_message(oom)
    unscheduled = {"status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "Insufficient nvidia.com/gpu"}]}}
    assert objects.pod_waiting(unscheduled) == ("Unschedulable", "Insufficient nvidia.com/gpu")


def test_render_job_command(tmp_path, monkeypatch, capsys):
    config = tmp_path / "jupyter_server_config.json"
    config.write_text(json.dumps({"EnvManagerApp": {
        "backend": "kubernetes", "root_dir": ROOT, "kubernetes_image": "registry.example/team/builder:1",
        "kubernetes_pvc_name": "team-envs", "kubernetes_limits": {"memory": "8Gi"}, "namespaces": ["team-a"],
    }}))
    args = build_parser().parse_args(["render-job", "torch", "--gpu", "1", "--config", str(config)])
    assert run(args) == 0
    m = yaml.safe_load(capsys.readouterr().out)
    assert roundtrip(m) == m
    assert m["metadata"]["namespace"] == "team-a"
    pod = m["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry.example/team/builder:1"
    assert pod["containers"][0]["resources"]["limits"] == {"memory": "8Gi", "nvidia.com/gpu": "1"}
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "team-envs"
    assert pod["containers"][0]["command"][2] == f"{ROOT}/envs/team-a/torch/builds/rev-0001/plan.json"
    assert not os.path.exists(ROOT)  # nothing written

    # The Jupyter config path is read when no file is named.
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path))
    text = render_job_yaml(app_from_config(), "other", namespace="team-b", revision=2)
    assert yaml.safe_load(text)["metadata"]["labels"]["envmgr.jupyter.org/revision"] == "2"


def test_render_job_for_a_cluster(tmp_path, capsys):
    config = tmp_path / "jupyter_server_config.json"
    config.write_text(json.dumps({"EnvManagerApp": {"backend": "kubernetes", "root_dir": ROOT, "clusters": {
        "east": {"context": "east", "namespaces": ["team-a"]},
        "west": {"context": "west", "namespaces": ["team-b"], "pvc_name": "west-envs", "mount_path": "/srv/west"}}}}))
    assert run(build_parser().parse_args(["render-job", "torch", "--cluster", "west", "--config", str(config)])) == 0
    m = yaml.safe_load(capsys.readouterr().out)
    pod = m["spec"]["template"]["spec"]
    assert m["metadata"]["namespace"] == "team-b"
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "west-envs"
    assert pod["containers"][0]["volumeMounts"][0]["mountPath"] == "/srv/west"
    assert pod["containers"][0]["command"][2].startswith("/srv/west/envs/team-b/torch/")
    assert run(build_parser().parse_args(["render-job", "torch", "--cluster", "north", "--config", str(config)])) == 2
    assert "no cluster 'north'; configured: east, west" in capsys.readouterr().err
