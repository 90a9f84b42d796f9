"""Fixtures: a real jupyter_server with the extension, a temporary root, a local package index.

ipykernel and its dependencies come through one uv cache shared by the whole run (and kept
between runs when $ENVMGR_TEST_UV_CACHE or ~/.cache is there), so only the first build downloads.
"""
from __future__ import annotations

import os
import pwd

import pytest

from helpers import Api, LocalIndex, Server

pytest_plugins = ["pytest_jupyter.jupyter_server"]

# Resolved at import, before pytest-jupyter points $HOME at a temporary dir.
UV_CACHE = os.environ.get("ENVMGR_TEST_UV_CACHE") or os.path.join(
    pwd.getpwuid(os.getuid()).pw_dir, ".cache", "jupyter-envmgr-tests", "uv"
)


@pytest.fixture(scope="session")
def uv_cache_dir() -> str:
    os.makedirs(UV_CACHE, exist_ok=True)
    return UV_CACHE


@pytest.fixture(scope="session")
def local_index():
    index = LocalIndex()
    index.add("envmgr-demo-pkg", "1.0")
    index.add("envmgr-demo-pkg", "2.0")
    index.add("envmgr-extra-pkg", "0.3")
    yield index
    index.close()


@pytest.fixture
def envmgr_root(tmp_path) -> str:
    root = tmp_path / "envmgr-root"
    root.mkdir()
    return str(root)


@pytest.fixture
def envmgr_overrides() -> dict:
    """Override per test with @pytest.mark.parametrize("envmgr_overrides", [{...}])."""
    return {}


@pytest.fixture
def envmgr_config(envmgr_root, uv_cache_dir, envmgr_overrides) -> dict:
    """EnvManagerApp traits of the test server."""
    return {"root_dir": envmgr_root, "uv_cache_dir": uv_cache_dir, "build_timeout": 300.0, **envmgr_overrides}


@pytest.fixture
def jp_server_config(envmgr_config):
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_envmgr": True}},
        "EnvManagerApp": envmgr_config,
    }


@pytest.fixture
def api(jp_fetch, jp_serverapp, jp_asyncio_loop):
    # What a started server does once its loop runs (pytest-jupyter does not): reconcile, GC schedule...
    jp_asyncio_loop.run_until_complete(jp_serverapp.extension_manager.start_all_extensions())
    yield Api(jp_fetch, jp_serverapp)
    # Stop what is still building so no runner outlives its test.
    manager = jp_serverapp.web_app.settings["envmgr_manager"]
    for namespace, name in list(manager.builds.active):
        try:
            jp_asyncio_loop.run_until_complete(manager.delete(namespace, name))
        except Exception:
            pass


@pytest.fixture
def servers(tmp_path, uv_cache_dir):
    started = []
    root = str(tmp_path / "shared-root")

    def start(name, **envmgr):
        server = Server(str(tmp_path / name), root, uv_cache_dir, **envmgr)
        started.append(server)
        return server

    start.root = root
    yield start
    for server in started:
        server.stop()


#: Fixtures that start a jupyter server, a build or a browser: a test using one is in the slow tier.
SLOW_FIXTURES = {"api", "servers", "team", "jp_serverapp", "jp_fetch", "lab", "page", "browser", "conda_channel", "standin"}


def pytest_collection_modifyitems(items):
    """`pytest -m "not slow"` is the fast tier (unit tests, < 1 min); the README's command runs everything."""
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
