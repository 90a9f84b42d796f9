"""Fixtures of the Kubernetes backend's tests: the API stand-in (its own process, real HTTP), a kubeconfig
for it, and a jupyter server configured with `c.EnvManagerApp.backend = "kubernetes"` against it.

The stand-in's "image" is this machine's Python and uv (the directory of sys.executable), and the
PersistentVolumeClaim `jupyter-envmgr` is backed by the test's root, mounted at the root's own path.
"""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from standin.control import StandIn  # noqa: E402

PVC = "jupyter-envmgr"
#: What a cluster administrator passes to build pods through kubernetes_extra_env (proxies, CA bundles),
#: taken from this machine so that builds in the stand-in's pods reach the same package index.
NETWORK_ENV = ("SSL_CERT_FILE", "SSL_CERT_DIR", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
               "no_proxy", "UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_NATIVE_TLS", "UV_SYSTEM_CERTS")
PYTHON_VERSION = ".".join(map(str, sys.version_info[:3]))


def image_path() -> list:
    import shutil

    import uv

    dirs = [os.path.dirname(sys.executable), os.path.dirname(uv.find_uv_bin())]
    for tool in ("python3",):
        found = shutil.which(tool)
        if found:
            dirs.append(os.path.dirname(found))
    return list(dict.fromkeys(dirs + ["/usr/bin", "/bin"]))


@pytest.fixture(scope="session")
def local_index():
    """The package index of tests/conftest.py with shorter slow packages (`envmgr-slow-*` take 10s here)."""
    from helpers import LocalIndex

    index = LocalIndex(slow_seconds=10.0)
    index.add("envmgr-demo-pkg", "1.0")
    index.add("envmgr-demo-pkg", "2.0")
    yield index
    index.close()


@pytest.fixture
def standin_namespaces() -> list:
    """More namespaces (labelled envmgr.jupyter.org/enabled=true, each with the claim); parametrize to add."""
    return []


@pytest.fixture
def standin(tmp_path, envmgr_root, standin_namespaces):
    s = StandIn(str(tmp_path / "standin"), image_path())
    s.pvc(PVC, envmgr_root)
    for ns in standin_namespaces:
        s.namespace(ns, {"envmgr.jupyter.org/enabled": "true"})
        s.pvc(PVC, envmgr_root, namespace=ns)  # claims on the same storage, as NFS-backed PVs give
    yield s
    s.close()


@pytest.fixture
def kube_overrides() -> dict:
    """Override per test with @pytest.mark.parametrize("kube_overrides", [{...}])."""
    return {}


@pytest.fixture
def kube_config(standin, envmgr_root, uv_cache_dir, kube_overrides) -> dict:
    """EnvManagerApp traits of a server whose builds run as Jobs on the stand-in."""
    return {
        "root_dir": envmgr_root,
        "uv_cache_dir": uv_cache_dir,  # shared by the test run so only the first build downloads
        "build_timeout": 120.0,
        "backend": "kubernetes",
        "kubernetes_context": "standin",
        "kubernetes_config_file": standin.kubeconfig,
        "kubernetes_pvc_name": PVC,
        # The venvs' base interpreter: a path that exists in "the image" and in the server (this machine).
        "kubernetes_python_interpreters": {PYTHON_VERSION: sys.executable},
        "kubernetes_api_timeout": 2.0,
        "kubernetes_api_retries": 2,
        "kubernetes_api_retry_backoff": 0.2,
        "kubernetes_watch_timeout": 15,
        "kubernetes_start_timeout": 60.0,
        "kubernetes_extra_env": {k: os.environ[k] for k in NETWORK_ENV if k in os.environ},
        **kube_overrides,
    }


@pytest.fixture
def envmgr_config(kube_config) -> dict:
    return kube_config


@pytest.fixture(autouse=True)
def _no_kubernetes_env(monkeypatch):
    """Never pick up an in-cluster service account or a real kubeconfig."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBECONFIG", raising=False)
