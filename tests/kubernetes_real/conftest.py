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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "conda"))

from controlplane import ControlPlane, binaries  # noqa: E402
from realkube import DEBIAN_IMAGE, IMAGE, image_path, kube_traits, make_namespace  # noqa: E402


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory):
    import uv

    plane = ControlPlane(str(tmp_path_factory.mktemp("kube")), binaries(),
                         {IMAGE: image_path(), DEBIAN_IMAGE: ["/usr/bin", "/bin", os.path.dirname(uv.find_uv_bin())]})
    try:
        plane.start()
        yield plane
    finally:
        plane.close()


@pytest.fixture
def rbac_drop() -> tuple:
    """Resources taken out of the Role (parametrize: ("pods/log",) for the missing-permission test)."""
    return ()


@pytest.fixture
def claim() -> dict:
    """How the namespace's claim is made (parametrize: {"access_mode": "ReadWriteOnce"}, {"bind": False})."""
    return {}


@pytest.fixture
def kube_namespace(control_plane, envmgr_root, rbac_drop, claim) -> str:
    return make_namespace(control_plane, envmgr_root, rbac_drop, claim)


@pytest.fixture
def kube_overrides() -> dict:
    return {}


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
