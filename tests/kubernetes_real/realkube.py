"""What the real-control-plane tests share: names, deploy/rbac.yaml per namespace, a namespace with its claim,
and the EnvManagerApp traits of a server that builds there. A module of its own (not conftest) so that test
modules import it unambiguously beside tests/kubernetes/conftest.py."""
from __future__ import annotations

import os
import sys

import yaml
from helpers import unique

from controlplane import ControlPlane

PVC = "jupyter-envmgr"
ACCOUNT = "jupyter-envmgr"
IMAGE = "envmgr-test-image:1"
DEBIAN_IMAGE = "envmgr-debian-python:1"
PYTHON_VERSION = ".".join(map(str, sys.version_info[:3]))
RBAC = os.path.join(os.path.dirname(__file__), "..", "..", "deploy", "rbac.yaml")
NETWORK_ENV = ("SSL_CERT_FILE", "SSL_CERT_DIR", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
               "no_proxy", "UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_NATIVE_TLS", "UV_SYSTEM_CERTS")


def image_path(*first: str) -> list:
    import uv

    dirs = list(first) + [os.path.dirname(sys.executable), os.path.dirname(uv.find_uv_bin())]
    return list(dict.fromkeys(dirs + ["/usr/bin", "/bin"]))


def rbac_docs(namespace: str, drop_rules: tuple = ()) -> list:
    """deploy/rbac.yaml's namespaced objects, in `namespace` (the cluster-wide namespace lister is optional)."""
    docs = []
    with open(RBAC) as f:
        for doc in yaml.safe_load_all(f):
            if not doc or doc["kind"].startswith("Cluster"):
                continue
            doc["metadata"]["namespace"] = namespace
            for subject in doc.get("subjects", []):
                subject["namespace"] = namespace
            if doc["kind"] == "Role":
                doc["rules"] = [r for r in doc["rules"] if not set(r["resources"]) & set(drop_rules)]
            docs.append(doc)
    return docs


def make_namespace(plane: ControlPlane, root: str, drop: tuple = (), claim: dict | None = None) -> str:
    """A namespace with deploy/rbac.yaml's ServiceAccount and Role, and the claim on `root`."""
    claim = claim or {}
    namespace = unique("envmgr")
    plane.namespace(namespace)
    plane.apply(rbac_docs(namespace, drop))
    plane.volume(namespace, PVC, root, **claim)
    if claim.get("bind", True):
        plane.wait_bound(namespace, PVC)
    return namespace


def kube_traits(plane: ControlPlane, namespace: str, root: str, uv_cache_dir: str, **overrides) -> dict:
    """EnvManagerApp traits of a server whose builds run as Jobs in `namespace`, as its ServiceAccount."""
    kubeconfig = plane.service_account_kubeconfig(namespace, ACCOUNT, {"envmgr": namespace})
    return {
        "root_dir": root,
        "uv_cache_dir": uv_cache_dir,
        "build_timeout": 180.0,
        "backend": "kubernetes",
        "namespaces": [namespace],
        "kubernetes_context": "envmgr",
        "kubernetes_config_file": kubeconfig,
        "kubernetes_pvc_name": PVC,
        "kubernetes_image": IMAGE,
        "kubernetes_python_interpreters": {PYTHON_VERSION: sys.executable},
        "kubernetes_api_timeout": 5.0,
        "kubernetes_api_retries": 3,
        "kubernetes_api_retry_backoff": 0.3,
        "kubernetes_watch_timeout": 20,
        "kubernetes_start_timeout": 60.0,
        "kubernetes_extra_env": {k: os.environ[k] for k in NETWORK_ENV if k in os.environ},
        **overrides,
    }
