"""Kubernetes manifests and status readings for build Jobs, as pure functions.

Nothing here talks to an API server: every function takes plain data (and the settings object, whose
`kubernetes_*` traits it reads) and returns plain data (dicts in the API's own camelCase JSON shape), so what
a create would submit can be rendered, reviewed and tested without a cluster (`jupyter envmgr render-job`).
"""
from __future__ import annotations

import hashlib
import re
from typing import Optional

MANAGED_BY = "jupyter-envmgr"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_NAME = "envmgr.jupyter.org/name"
LABEL_NAMESPACE = "envmgr.jupyter.org/namespace"
LABEL_REVISION = "envmgr.jupyter.org/revision"
ANNOTATION_PLAN = "envmgr.jupyter.org/plan"
ANNOTATION_ROOT = "envmgr.jupyter.org/root"
CONTAINER = "build"
VOLUME = "envmgr"
#: The selector every watch and list of this server uses.
SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
#: The image used when c.EnvManagerApp.kubernetes_image is not set: Python 3.12 and uv, Debian slim.
DEFAULT_IMAGE = "astral/uv:0.8.11-python3.12-bookworm-slim"
#: Waiting reasons after which a build pod will never start on its own.
FATAL_WAITING = {"InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError"}
#: Waiting reasons worth showing while a pod does not start (it may still start later).
SLOW_WAITING = {"ErrImagePull", "ImagePullBackOff", "CreateContainerError", "RunContainerError"}


def labels(namespace: str, name: str, revision: int, extra: Optional[dict] = None) -> dict:
    out = dict(extra or {})
    out.update({
        LABEL_MANAGED_BY: MANAGED_BY,
        "app.kubernetes.io/name": "jupyter-envmgr",
        "app.kubernetes.io/component": "build",
        LABEL_NAME: name,
        LABEL_NAMESPACE: namespace,
        LABEL_REVISION: str(revision),
    })
    return out


def job_name(name: str, revision: int, nonce: str) -> str:
    """`envmgr-<name>-r<N>-<nonce>`, at most 63 characters (the Job's name becomes a pod label value)."""
    nonce = re.sub(r"[^a-z0-9]", "", nonce.lower())[:8] or "0"
    tail = f"-r{revision}-{nonce}"
    head = f"envmgr-{name}"[: 63 - len(tail)].rstrip("-")
    return head + tail


def runner_file_name(runner_source: bytes) -> str:
    """The runner is copied onto the volume under a content-addressed name, so an upgrade never edits
    the file a running Job reads."""
    return f"runner-{hashlib.sha256(runner_source).hexdigest()[:12]}.py"


def pod_security_context(config) -> dict:
    ctx = {
        "runAsNonRoot": True,
        "runAsUser": config.kubernetes_run_as_user,
        "runAsGroup": config.kubernetes_run_as_group,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if config.kubernetes_fs_group >= 0:
        ctx["fsGroup"] = config.kubernetes_fs_group
        ctx["fsGroupChangePolicy"] = "OnRootMismatch"
    return ctx


def container_security_context() -> dict:
    """The `restricted` Pod Security Standard, stated on the container as well as on the pod."""
    return {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def resources(config, gpu: int) -> dict:
    requests = {k: str(v) for k, v in config.kubernetes_requests.items()}
    limits = {k: str(v) for k, v in config.kubernetes_limits.items()}
    if gpu > 0:
        # Extended resources must be equal in requests and limits.
        requests[config.kubernetes_gpu_resource] = str(gpu)
        limits[config.kubernetes_gpu_resource] = str(gpu)
    out = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def job_manifest(
    config,
    *,
    claim: str,
    mount_path: str,
    active_deadline: int,
    namespace: str,
    env_name: str,
    revision: int,
    name: str,
    plan_path: str,
    runner_path: str,
    gpu: int = 0,
) -> dict:
    """The batch/v1 Job that runs `python runner.py PLAN` on the shared volume (the claim at `mount_path`)."""
    meta_labels = labels(namespace, env_name, revision, config.kubernetes_extra_labels)
    annotations = dict(config.kubernetes_extra_annotations)
    annotations[ANNOTATION_PLAN] = plan_path
    annotations[ANNOTATION_ROOT] = mount_path
    env = {"PYTHONUNBUFFERED": "1", "HOME": "/tmp", "JUPYTER_ENVMGR_BUILD": f"{namespace}/{env_name}/{revision}"}
    env.update({k: str(v) for k, v in config.kubernetes_extra_env.items()})
    container = {
        "name": CONTAINER,
        "image": config.kubernetes_image,
        "imagePullPolicy": config.kubernetes_image_pull_policy,
        "command": [config.kubernetes_python, runner_path, plan_path],
        "workingDir": "/tmp",
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "volumeMounts": [{"name": VOLUME, "mountPath": mount_path}],
        "securityContext": container_security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    res = resources(config, gpu)
    if res:
        container["resources"] = res
    pod_spec = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": config.kubernetes_termination_grace_period_seconds,
        "securityContext": pod_security_context(config),
        "containers": [container],
        "volumes": [{"name": VOLUME, "persistentVolumeClaim": {"claimName": claim}}],
    }
    if config.kubernetes_service_account:
        pod_spec["serviceAccountName"] = config.kubernetes_service_account
    if config.kubernetes_priority_class_name:
        pod_spec["priorityClassName"] = config.kubernetes_priority_class_name
    if config.kubernetes_image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": s} for s in config.kubernetes_image_pull_secrets]
    node_selector = dict(config.kubernetes_node_selector)
    tolerations = list(config.kubernetes_tolerations)
    if gpu > 0:
        node_selector.update(config.kubernetes_gpu_node_selector)
        tolerations += [t for t in config.kubernetes_gpu_tolerations if t not in tolerations]
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    if tolerations:
        pod_spec["tolerations"] = tolerations
    spec = {
        "backoffLimit": 0,
        "activeDeadlineSeconds": int(active_deadline),
        "template": {"metadata": {"labels": dict(meta_labels), "annotations": dict(annotations)}, "spec": pod_spec},
    }
    if config.kubernetes_ttl_seconds_after_finished >= 0:
        spec["ttlSecondsAfterFinished"] = int(config.kubernetes_ttl_seconds_after_finished)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": meta_labels, "annotations": annotations},
        "spec": spec,
    }


def to_yaml(manifest: dict) -> str:
    import yaml

    return yaml.safe_dump(manifest, sort_keys=False, default_flow_style=False)


# ---------------------------------------------------------------- reading what the API returns


def pvc_problem(pvc: dict, namespace: str) -> Optional[str]:
    """Why a PersistentVolumeClaim cannot hold builds shared with notebook pods, or None."""
    name = pvc.get("metadata", {}).get("name", "?")
    modes = (pvc.get("status") or {}).get("accessModes") or (pvc.get("spec") or {}).get("accessModes") or []
    phase = (pvc.get("status") or {}).get("phase")
    if "ReadWriteMany" not in modes:
        return (f"storage: the PersistentVolumeClaim {name!r} in namespace {namespace!r} has access modes "
                f"{', '.join(modes) or 'none'}, but builds and notebook pods on other nodes must share it: use a "
                "ReadWriteMany claim (NFS, CephFS, Azure Files, EFS...) and set c.EnvManagerApp.kubernetes_pvc_name")
    if phase != "Bound":
        return (f"storage: the PersistentVolumeClaim {name!r} in namespace {namespace!r} is {phase or 'not bound'}, "
                "not Bound; check its storage class and `kubectl describe pvc`")
    return None


def condition(obj: dict, kind: str) -> Optional[dict]:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind and c.get("status") == "True":
            return c
    return None


def job_state(job: dict) -> str:
    """'running', 'complete' or 'failed' from the Job's conditions (terminal ones only)."""
    if condition(job, "Complete"):
        return "complete"
    if condition(job, "Failed"):
        return "failed"
    return "running"


def job_failure_message(job: dict, active_deadline: Optional[int] = None) -> str:
    c = condition(job, "Failed") or {}
    reason = c.get("reason", "")
    if reason == "DeadlineExceeded":
        limit = active_deadline or (job.get("spec") or {}).get("activeDeadlineSeconds")
        return (f"the build Job ran past its activeDeadlineSeconds ({limit}s, "
                "c.EnvManagerApp.kubernetes_active_deadline_seconds) and was stopped")
    if reason == "BackoffLimitExceeded":
        return "the build pod failed"
    message = (c.get("message") or "").strip()
    return f"the build Job failed ({reason or 'no reason given'})" + (f": {message}" if message else "")


def owner_job(pod: dict) -> Optional[str]:
    labels_ = (pod.get("metadata") or {}).get("labels") or {}
    return labels_.get("batch.kubernetes.io/job-name") or labels_.get("job-name")


def container_status(pod: dict) -> dict:
    for s in (pod.get("status") or {}).get("containerStatuses") or []:
        if s.get("name") == CONTAINER:
            return s
    return {}


def container_started(pod: dict) -> bool:
    """True once the build container runs or ran (its log can be read)."""
    state = container_status(pod).get("state") or {}
    return "running" in state or "terminated" in state


def container_terminated(pod: dict) -> Optional[dict]:
    state = container_status(pod).get("state") or {}
    if "terminated" in state:
        return state["terminated"]
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return {"reason": (pod.get("status") or {}).get("reason", ""), "exitCode": None}
    return None


def pod_waiting(pod: dict) -> tuple:
    """(reason, message) of why the build container does not run yet, or ('', '')."""
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "False":
            return c.get("reason", "Unschedulable"), c.get("message", "")
    waiting = (container_status(pod).get("state") or {}).get("waiting") or {}
    if waiting.get("reason"):
        return waiting["reason"], waiting.get("message", "")
    return "", ""


def pod_failure_message(pod: dict) -> str:
    """What the kubelet says about a build container that ended badly (OOMKilled, Error, Evicted...)."""
    term = container_terminated(pod) or {}
    reason = term.get("reason") or (pod.get("status") or {}).get("reason") or "unknown"
    code = term.get("exitCode")
    if reason == "OOMKilled":
        return ("the build container ran out of memory (OOMKilled); raise "
                "c.EnvManagerApp.kubernetes_limits['memory']")
    detail = f" with exit code {code}" if code is not None else ""
    message = (term.get("message") or (pod.get("status") or {}).get("message") or "").strip()
    return f"the build container ended ({reason}{detail})" + (f": {message[-400:]}" if message else "")
