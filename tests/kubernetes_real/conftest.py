"""Fixtures of the real-control-plane tests: one control plane for the session (controlplane.py), and per test
a namespace with deploy/rbac.yaml applied, a ReadWriteMany claim bound to a hostPath volume on the test's root,
and a jupyter server with backend=kubernetes that authenticates as deploy/rbac.yaml's ServiceAccount.

The node's images are names for directories of this machine: `envmgr-test-image:1` has this Python and uv
(as the stand-in's image does); `envmgr-debian-python:1` has Debian's /usr/bin/python3 first (and uv), an
interpreter that is not the server's (the conda-on-Kubernetes test).
"""
from __future__ import annotations

import os
import shutil
import sys

import pytest
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "conda"))

from controlplane import ControlPlane, binaries  # noqa: E402
from helpers import unique  # noqa: E402

PVC = "jupyter-envmgr"
ACCOUNT = "jupyter-envmgr"
IMAGE = "envmgr-test-image:1"
DEBIAN_IMAGE = "envmgr-debian-python:1"
PYTHON_VERSION = ".".join(map(str, sys.version_info[:3]))
RBAC = os.path.join(os.path.dirname(__file__), "..", "..", "deploy", "rbac.yaml")
NETWORK_ENV = ("SSL_CERT_FILE", "SSL_CERT_DIR", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
               "no_proxy", "UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_NATIVE_TLS", "UV_SYSTEM_CERTS")

def _image_path(*first: str) -> list:
    import uv

    dirs = list(first) + [os.path.dirname(sys.executable), os.path.dirname(uv.find_uv_bin())]
    return list(dict.fromkeys(dirs + ["/usr/bin", "/bin"]))


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory):
    import uv

    plane = ControlPlane(str(tmp_path_factory.mktemp("kube")), binaries(),
                         {IMAGE: _image_path(), DEBIAN_IMAGE: ["/usr/bin", "/bin", os.path.dirname(uv.find_uv_bin())]})
    try:
        plane.start()
        yield plane
    finally:
        plane.close()


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


@pytest.fixture
def rbac_drop() -> tuple:
    """Resources taken out of the Role (parametrize: ("pods/log",) for the missing-permission test)."""
    return ()


@pytest.fixture
def claim() -> dict:
    """How the namespace's claim is made (parametrize: {"access_mode": "ReadWriteOnce"}, {"bind": False})."""
    return {}


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


@pytest.fixture
def kube_namespace(control_plane, envmgr_root, rbac_drop, claim) -> str:
    return make_namespace(control_plane, envmgr_root, rbac_drop, claim)


@pytest.fixture
def kube_overrides() -> dict:
    return {}


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


@pytest.fixture
def kube_config(control_plane, kube_namespace, envmgr_root, uv_cache_dir, kube_overrides) -> dict:
    return kube_traits(control_plane, kube_namespace, envmgr_root, uv_cache_dir, **kube_overrides)


@pytest.fixture
def envmgr_config(kube_config, request) -> dict:
    if "conda_channel" in request.fixturenames:  # channel names resolve under the test channel's server
        channel = request.getfixturevalue("conda_channel")
        return {"conda_channel_alias": channel.alias, "conda_channels": ["envmgr-test-channel"], **kube_config}
    return kube_config


@pytest.fixture(autouse=True)
def _no_kubernetes_env(monkeypatch):
    """Never pick up an in-cluster service account or the machine's kubeconfig."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBECONFIG", raising=False)


@pytest.fixture
def debian_python() -> str:
    found = shutil.which("python3", path="/usr/bin")
    if not found or os.path.realpath(found) == os.path.realpath(sys.executable):
        pytest.fail("the conda-on-Kubernetes test needs Debian's /usr/bin/python3 beside the test's own Python")
    return found


@pytest.fixture(scope="session")
def conda_channel():
    """tests/conda's channel (built once, cached), served on loopback for build pods to solve against."""
    import pwd

    from conda_channel import ChannelServer, cached_channel

    cache = os.environ.get("ENVMGR_TEST_CONDA_CACHE") or os.path.join(
        pwd.getpwuid(os.getuid()).pw_dir, ".cache", "jupyter-envmgr-tests", "conda")  # tests/conda's cache
    os.makedirs(cache, exist_ok=True)
    server = ChannelServer(cached_channel(cache))
    server.alias = server.url.rsplit("/", 1)[0]
    yield server
    server.close()
