"""The Kubernetes backend's settings, `c.EnvManagerApp.kubernetes_*` and `c.EnvManagerApp.clusters`.

`KubernetesConfig` is mixed into EnvManagerApp; the backend reads these traits from the config object it is
given, where it uses them (no copies with defaults of their own). `clusters(config)` resolves the clusters.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from traitlets import Dict, Float, HasTraits, Int, List, Unicode

from ...layout import namespace_roots
from .objects import DEFAULT_IMAGE

SERVICEACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
IN_CLUSTER = "in-cluster"
CLUSTER_KEYS = {"context", "config_file", "namespaces", "pvc_name", "mount_path"}


class KubernetesConfig(HasTraits):
    """The Kubernetes backend's settings; mixed into EnvManagerApp, so they are `c.EnvManagerApp.kubernetes_*`."""

    kubernetes_context = Unicode(
        "", config=True,
        help="""The kubeconfig context (the cluster and user) builds are submitted with. Empty: the in-cluster
        service account when the server runs in a pod, else the kubeconfig's current context.""",
    )
    kubernetes_config_file = Unicode(
        "", config=True, help="The kubeconfig file to read contexts from. Empty: $KUBECONFIG, else ~/.kube/config.",
    )
    kubernetes_namespace_selector = Unicode(
        "", config=True,
        help="""When set (a label selector such as `envmgr.jupyter.org/enabled=true`), the namespaces offered are
        listed from the API at start instead of taken from c.EnvManagerApp.namespaces (needs `list` on
        namespaces, a ClusterRole). An environment's namespace is the Kubernetes namespace its Jobs run in.""",
    )
    kubernetes_pvc_name = Unicode(
        "jupyter-envmgr", config=True,
        help="""The ReadWriteMany PersistentVolumeClaim that holds the root (c.EnvManagerApp.root_dir). It is
        mounted into every build Job at root_dir, which must be where notebook pods mount it too, because
        environments refer to their interpreters by absolute path. Each namespace offered needs a claim of this
        name on the same storage. A claim that is not ReadWriteMany or not Bound is refused with 422.""",
    )
    kubernetes_image = Unicode(
        DEFAULT_IMAGE, config=True,
        help=f"""The image of build Jobs. It needs `python` (any 3.x; it runs only the standard-library build
        runner) and `uv` on its PATH. Default: {DEFAULT_IMAGE} (Debian slim with Python 3.12 and uv).""",
    )
    kubernetes_image_pull_policy = Unicode("IfNotPresent", config=True, help="imagePullPolicy of the build container.")
    kubernetes_image_pull_secrets = List(Unicode(), config=True, help="Names of Secrets used to pull the build image.")
    kubernetes_python = Unicode("python", config=True, help="The interpreter in the build image that runs the build runner.")
    kubernetes_uv = Unicode("uv", config=True, help="The uv executable in the build image.")
    kubernetes_python_interpreters = Dict(
        config=True,
        help="""Base interpreters for environments, {"3.12.3": "/path/python3.12"}, as paths that exist both in
        the build image and in every notebook pod (a Python on the shared volume, such as a conda prefix under
        the root). Empty (the default): uv installs the Pythons of kubernetes_python_versions under
        <root>/python on the volume the first time a build asks for them (the build pods need network access
        to uv's Python downloads).""",
    )
    kubernetes_python_versions = List(
        Unicode(), ["3.10", "3.11", "3.12", "3.13"], config=True,
        help="Python versions offered when kubernetes_python_interpreters is empty (installed by uv on the volume).",
    )
    kubernetes_requests = Dict(
        {"cpu": "500m", "memory": "1Gi"}, config=True, help="Resource requests of the build container.",
    )
    kubernetes_limits = Dict(
        {"cpu": "2", "memory": "4Gi"}, config=True,
        help="Resource limits of the build container; large wheels (torch) need a few GiB of memory to install.",
    )
    kubernetes_gpu_resource = Unicode(
        "nvidia.com/gpu", config=True,
        help="The extended resource requested, `gpu` times, by builds of environments with gpu > 0.",
    )
    kubernetes_node_selector = Dict(config=True, help="nodeSelector of every build pod.")
    kubernetes_tolerations = List(Dict(), config=True, help="Tolerations of every build pod.")
    kubernetes_gpu_node_selector = Dict(
        config=True, help="nodeSelector added for builds of environments with gpu > 0 (e.g. to preload CUDA wheels on GPU nodes).",
    )
    kubernetes_gpu_tolerations = List(
        Dict(), [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}], config=True,
        help="Tolerations added for builds of environments with gpu > 0 (GPU nodes are usually tainted).",
    )
    kubernetes_active_deadline_seconds = Int(
        0, config=True,
        help="""activeDeadlineSeconds of build Jobs: Kubernetes stops the Job after this long, whatever happens to
        the server. 0 (the default): build_timeout + kubernetes_start_timeout.""",
    )
    kubernetes_ttl_seconds_after_finished = Int(
        3600, config=True,
        help="""ttlSecondsAfterFinished of build Jobs: ended Jobs and their pods are removed after this long. The
        server needs an ended Job only until it has read its result, so an hour is plenty; -1 keeps them.""",
    )
    kubernetes_run_as_user = Int(
        1000, config=True,
        help="""UID of build pods. Use the UID of notebook pods (1000 in Zero to JupyterHub) so that both may
        write the environments. Must not be 0: builds run under the `restricted` Pod Security Standard.""",
    )
    kubernetes_run_as_group = Int(100, config=True, help="GID of build pods (the notebook pods' GID; 100 in Zero to JupyterHub).")
    kubernetes_fs_group = Int(
        -1, config=True, help="fsGroup of build pods (-1, the default: none; NFS and most RWX volumes ignore it).",
    )
    kubernetes_termination_grace_period_seconds = Int(
        10, config=True, help="terminationGracePeriodSeconds of build pods: how long a cancelled build may take to stop.",
    )
    kubernetes_service_account = Unicode(
        "", config=True, help="serviceAccountName of build pods (its token is never mounted). Empty: the namespace's default.",
    )
    kubernetes_priority_class_name = Unicode("", config=True, help="priorityClassName of build pods.")
    kubernetes_extra_labels = Dict(config=True, help="Labels added to build Jobs and pods.")
    kubernetes_extra_annotations = Dict(config=True, help="Annotations added to build Jobs and pods.")
    kubernetes_extra_env = Dict(
        config=True, help="Environment variables of the build container (e.g. proxies); the build plan's own env comes on top.",
    )
    kubernetes_start_timeout = Float(
        600.0, config=True,
        help="""Seconds a build pod may take to start (scheduling, image pull) before the build fails with the
        reason Kubernetes gives (e.g. insufficient nvidia.com/gpu, ImagePullBackOff) and its Job is deleted.""",
    )
    kubernetes_api_timeout = Float(10.0, config=True, help="Seconds one Kubernetes API request may take before it counts as failed.")
    kubernetes_api_retries = Int(
        4, config=True,
        help="""How often a failed API request (connection error, time-out, 429, 5xx) is retried, with exponential
        backoff from kubernetes_api_retry_backoff seconds, before the request fails with 503.""",
    )
    kubernetes_api_retry_backoff = Float(0.5, config=True, help="Seconds before the first retry of a failed API request; doubles each time (at most 10 s).")
    kubernetes_watch_timeout = Int(
        300, config=True,
        help="timeoutSeconds of each watch request; the watch then resumes from the last resourceVersion seen.",
    )
    kubernetes_resync_seconds = Float(
        600.0, config=True,
        help="""Seconds after which the Jobs and pods are listed again instead of resuming the watch: a watch
        event lost on the way (a proxy, an API server restart) is then noticed, never taken for a build that
        ran past its time limit.""",
    )
    kubernetes_log_reread_seconds = Float(
        2.0, config=True,
        help="""Seconds to wait before reading a build pod's log again after the API server ended the stream
        while the container still runs (a floor, so a proxy that cuts streams short costs one request per
        interval, not hundreds).""",
    )
    clusters = Dict(
        config=True,
        help="""Clusters (deployment locations) builds may go to, by name: {"gpu-east": {"context": "east",
        "config_file": "", "namespaces": ["team-a"], "pvc_name": "jupyter-envmgr", "mount_path": "/envs"}}.
        `context` is a kubeconfig context ("in-cluster" or empty: the service account of the pod the server
        runs in); a key left out takes the kubernetes_* trait of the same meaning (namespaces: c.EnvManagerApp.
        namespaces; mount_path: root_dir). The first cluster is the default of a request without ?cluster=.
        A namespace belongs to one cluster (two clusters naming the same namespace is an error): it decides
        where an environment is built and stored, and its cluster's mount_path is the root of its records,
        revisions, caches and kernelspecs (every server that mounts that storage registers its kernels).
        Empty (the default): one cluster, "default", made of the kubernetes_* traits.""",
    )


def in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.exists(SERVICEACCOUNT_NAMESPACE)


def own_namespace() -> Optional[str]:
    try:
        with open(SERVICEACCOUNT_NAMESPACE) as f:
            return f.read().strip() or None
    except OSError:
        return None


@dataclass(frozen=True)
class Cluster:
    """One deployment location, resolved: where its API is, which namespaces and which claim it offers."""

    name: str
    context: str  # a kubeconfig context, or "" for the in-cluster service account (or the current context)
    config_file: str
    namespaces: tuple
    pvc_name: str
    mount_path: str  # where the claim is mounted in build pods, notebook pods and this server

    def public(self) -> dict:
        """What `/info` `clusters` shows."""
        return {"name": self.name, "namespaces": list(self.namespaces)}


def clusters(config) -> list:
    """The configured clusters, in order (the first is the default); each key left out of an entry of
    c.EnvManagerApp.clusters is taken from the trait of the same meaning."""
    root = os.path.abspath(os.path.expanduser(config.root_dir))
    entries = dict(config.clusters) or {"default": {}}
    out = []
    for name, entry in entries.items():
        unknown = set(entry) - CLUSTER_KEYS
        if unknown:
            raise ValueError(f"c.EnvManagerApp.clusters[{name!r}]: unknown keys {sorted(unknown)}; "
                             f"use {sorted(CLUSTER_KEYS)}")
        context = entry.get("context", config.kubernetes_context)
        out.append(Cluster(
            name=name,
            context="" if context == IN_CLUSTER else context,
            config_file=entry.get("config_file", config.kubernetes_config_file),
            namespaces=tuple(entry.get("namespaces") or config.namespaces),
            pvc_name=entry.get("pvc_name", config.kubernetes_pvc_name),
            mount_path=os.path.abspath(entry.get("mount_path", root)),
        ))
    namespace_roots({c.name: (c.mount_path, c.namespaces) for c in out})  # a namespace in two clusters: ValueError
    return out


def active_deadline(config) -> int:
    """activeDeadlineSeconds of build Jobs: the setting, else the build time-out plus the start time-out."""
    return config.kubernetes_active_deadline_seconds or int(config.build_timeout + config.kubernetes_start_timeout)
