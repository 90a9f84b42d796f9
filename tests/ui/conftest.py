"""Browser tests: a real `jupyter lab` on loopback, Debian's chromium driven by Playwright."""
import os
import shutil

import pytest

CHROMIUM = os.environ.get("ENVMGR_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def browser(tmp_path_factory):
    """Per test: it must close before pytest-jupyter closes the event loop that Playwright runs on."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (tests/run.sh does)")
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, args=ARGS,
                                                       viewport={"width": 1400, "height": 900})
        yield context
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def lab(servers):
    """JupyterLab (the server loads jupyterlab and this extension) with the app reachable from the page."""
    return servers("lab", config={"LabApp": {"expose_app_in_browser": True}})
