"""Browser tests: a real `jupyter lab` subprocess on loopback, Debian's chromium driven by Playwright.

Everything the server writes (config, data, runtime, notebooks, the envmgr storage root) lives in a
temporary directory, so a run never touches the user's Jupyter. A uv cache shared between runs is
used when $ENVMGR_TEST_UV_CACHE names one, so only the first run downloads ipykernel.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect

import jupyter_envmgr

# A busy CI machine (builds beside the browser) renders slower than a laptop: assertions wait up to 20 s.
expect.set_options(timeout=20_000)

CHROMIUM = os.environ.get("ENVMGR_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = os.environ.get("ENVMGR_SCREENSHOTS")  # a folder to keep screenshots in, for a person to look at


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """One `jupyter lab` process: its URL, token and log."""

    def __init__(self, base, extra_args=(), config=None):
        self.port = free_port()
        self.token = os.urandom(12).hex()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = base / "server.log"
        dirs = {name: base / name for name in ("config", "data", "runtime", "notebooks", "envmgr-root")}
        for path in dirs.values():
            path.mkdir()
        self.notebooks = dirs["notebooks"]
        # The extension on, the app reachable from the page, and no "news?" toast over the panel.
        (dirs["config"] / "jupyter_server_config.json").write_text(json.dumps({
            "ServerApp": {"jpserver_extensions": {"jupyter_envmgr": True}},
            "LabApp": {"expose_app_in_browser": True},
            **(config or {}),  # more traits of the server under test (EnvManagerApp's, say)
        }))
        # The frontend that belongs to the jupyter_envmgr under test (the user data dir wins over sys.prefix).
        built = Path(jupyter_envmgr.__file__).parent / "labextension"
        if not (built / "package.json").exists():
            pytest.fail(f"{built} has no built extension: run `jlpm build` in labextension/ (pip install does)")
        (dirs["data"] / "labextensions").mkdir()
        (dirs["data"] / "labextensions" / "jupyter-envmgr").symlink_to(built, target_is_directory=True)
        (dirs["config"] / "labconfig").mkdir()
        (dirs["config"] / "labconfig" / "page_config.json").write_text(json.dumps(
            {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
        # In a virtual environment jupyter_core puts sys.prefix before the user dirs, and a copy that pip
        # installed there (older than the source under test) would be served: the user dirs come first.
        env = {**os.environ, "JUPYTER_CONFIG_DIR": str(dirs["config"]), "JUPYTER_DATA_DIR": str(dirs["data"]),
               "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]), "JUPYTER_ENVMGR_ROOT": str(dirs["envmgr-root"]),
               "JUPYTER_PREFER_ENV_PATH": "0"}
        argv = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
                f"--IdentityProvider.token={self.token}", "--ServerApp.allow_root=True",
                f"--ServerApp.root_dir={dirs['notebooks']}",
                "--ServerApp.port_retries=0", *extra_args]
        cache = os.environ.get("ENVMGR_TEST_UV_CACHE")
        if cache:
            os.makedirs(cache, exist_ok=True)
            env["UV_CACHE_DIR"] = cache
            argv.append(f"--EnvManagerApp.uv_cache_dir={cache}")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=base)
        self._wait_until_up(timeout=60)

    def _wait_until_up(self, timeout):
        request = urllib.request.Request(self.url + "envmgr/api/info", headers={"Authorization": f"token {self.token}"})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        self.stop()
        pytest.fail(f"jupyter lab did not serve /envmgr/api/info:\n{self.log_tail()}")

    def log_tail(self, lines=60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    """One server for the run (it takes seconds to start); tests use distinct environment names."""
    server = Lab(tmp_path_factory.mktemp("lab"))
    yield server
    server.stop()


@contextlib.contextmanager
def chromium_contexts(count: int):
    """`count` fresh browser contexts (each its own cookies and storage) in one Debian chromium."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield [chromium.new_context(viewport={"width": 1400, "height": 900}) for _ in range(count)]
        finally:
            chromium.close()


@pytest.fixture
def browser():
    """A fresh browser context per test."""
    with chromium_contexts(1) as (context,):
        yield context


def open_lab(browser, lab):
    """JupyterLab of `lab` loaded in a new page, its app exposed as window.jupyterapp, the environments icon in the sidebar."""
    page = browser.new_page()
    page.set_default_timeout(30000)
    page.goto(f"{lab.url}lab?token={lab.token}&reset")
    page.wait_for_function("window.jupyterapp !== undefined && document.querySelector('[data-id=\"jp-envmgr-panel\"]')",
                           timeout=60000)
    # Settled: the layout restored and the Launcher that fills an empty main area shown (its activation takes
    # the focus, which would close a command palette opened before it).
    page.evaluate("() => window.jupyterapp.restored")
    page.wait_for_function("document.querySelector('#jp-main-dock-panel .jp-Launcher') !== null", timeout=60000)
    return page


@pytest.fixture
def page(browser, lab):
    return open_lab(browser, lab)


@pytest.fixture
def shot(tmp_path_factory):
    """Save a screenshot named after the step: under $ENVMGR_SCREENSHOTS, else pytest's temporary dir."""
    folder = SCREENSHOTS or str(tmp_path_factory.getbasetemp() / "screenshots")
    os.makedirs(folder, exist_ok=True)

    def take(page, name):
        page.screenshot(path=os.path.join(folder, f"{name}.png"))
    return take
