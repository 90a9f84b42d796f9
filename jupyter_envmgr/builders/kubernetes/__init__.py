"""The Kubernetes backend: builds as batch/v1 Jobs on one or more clusters (`c.EnvManagerApp.backend = "kubernetes"`).

config.py (traits, clusters), client.py (bounded, retried calls), reflector.py (list-then-watch caches),
logs.py (the pod log follower), objects.py (pure manifests), builder.py (start, wait, cancel, adopt).
"""
from __future__ import annotations

import logging
import os
import secrets
from typing import Optional

from ... import runner as runner_module
from . import objects
from .builder import KubernetesBuilder
from .config import KubernetesConfig, active_deadline, clusters, in_cluster, own_namespace

log = logging.getLogger("jupyter_envmgr.kubernetes")

__all__ = ["KubernetesBuilder", "KubernetesConfig", "builder_from_config", "render_job_yaml"]


def builder_from_config(config) -> KubernetesBuilder:
    """The builder of `c.EnvManagerApp.backend = "kubernetes"`; also settles the namespaces `config` offers.

    Namespaces: listed from the API when kubernetes_namespace_selector is set; else c.EnvManagerApp.namespaces
    when configured; else, in a pod, the pod's own namespace.
    """
    if "namespaces" not in config.config.get("EnvManagerApp", {}) and in_cluster() and own_namespace():
        config.namespaces = [own_namespace()]
    builder = KubernetesBuilder(config)
    uid = os.getuid()
    if uid not in (0, config.kubernetes_run_as_user):
        log.warning("this server runs as UID %s but build pods as %s (c.EnvManagerApp.kubernetes_run_as_user): "
                    "they may not be able to read the build plans or write the environments", uid, config.kubernetes_run_as_user)
    namespaces = builder.namespaces()
    if namespaces != list(config.namespaces):
        config.namespaces = namespaces
    return builder


def render_job_yaml(config, name: str, namespace: Optional[str] = None, revision: int = 1, gpu: int = 0,
                    cluster: Optional[str] = None) -> str:
    """The Job YAML a create of environment `name` would submit (nothing is submitted or written)."""
    from ...store import Store

    found = clusters(config)
    target = next((c for c in found if c.name == cluster), None) if cluster else found[0]
    if target is None:
        raise ValueError(f"no cluster {cluster!r}; configured: {', '.join(c.name for c in found)}")
    namespace = namespace or target.namespaces[0]
    plan = os.path.join(Store(target.mount_path).build_dir(namespace, name, revision), "plan.json")
    with open(runner_module.__file__, "rb") as f:
        runner_path = os.path.join(target.mount_path, ".envmgr", objects.runner_file_name(f.read()))
    manifest = objects.job_manifest(
        config, claim=target.pvc_name, mount_path=target.mount_path, active_deadline=active_deadline(config),
        namespace=namespace, env_name=name, revision=revision, name=objects.job_name(name, revision, secrets.token_hex(3)),
        plan_path=plan, runner_path=runner_path, gpu=gpu,
    )
    return objects.to_yaml(manifest)
