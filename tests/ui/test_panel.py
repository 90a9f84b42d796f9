"""The panel in a real browser: bad name, create, warm with progress, notebook on the kernel, failed update, delete."""
import os
import re

import pytest
from playwright.sync_api import expect

from helpers import unique

pytestmark = pytest.mark.ui
SHOTS = os.environ.get("ENVMGR_SCREENSHOTS")  # a folder to keep screenshots in, for a person to look at


def shot(page, name):
    if SHOTS:
        os.makedirs(SHOTS, exist_ok=True)
        page.screenshot(path=os.path.join(SHOTS, f"{name}.png"))


def launcher_labels(page):
    page.evaluate("async () => { await window.jupyterapp.commands.execute('launcher:create'); }")
    cards = page.locator(".jp-Launcher:visible .jp-LauncherCard-label")
    expect(cards.first).to_be_visible()
    return cards.all_inner_texts()


def test_panel_end_to_end(browser, lab, local_index):
    page = browser.new_page()
    page.goto(f"http://127.0.0.1:{lab.port}/lab?token={lab.token}&reset")
    page.wait_for_function("window.jupyterapp !== undefined && document.querySelector('[data-id=\"jp-envmgr-panel\"]')", timeout=60000)

    # Open the panel from its icon in the left sidebar: the empty state says how to start.
    page.locator('[data-id="jp-envmgr-panel"]').click()
    panel = page.locator("#jp-envmgr-panel")
    expect(panel.get_by_text("No environments in default yet.")).to_be_visible()

    # A bad name is explained under the field, and Create stays disabled.
    panel.get_by_role("button", name="New environment").click()
    name_field = panel.locator("#envmgr-name")
    name_field.fill("Bad_Name")
    expect(panel.locator("#envmgr-name-error")).to_contain_text("lowercase")
    create = panel.get_by_role("button", name="Create", exact=True)
    expect(create).to_be_disabled()
    shot(page, "1-bad-name")

    # Fixed: create with six and a slowly served package, so the warming can be watched.
    name_field.fill("ui-env")
    expect(panel.locator("#envmgr-name-error")).to_have_count(0)
    slow = unique("envmgr-slow")
    panel.locator("#envmgr-packages").fill(f"six\n{slow}\n")
    panel.get_by_label("extra index URL 1").fill(local_index.url)
    panel.get_by_role("button", name="Add label").click()
    panel.get_by_label("label key 1").fill("team")
    panel.get_by_label("label value 1").fill("ui")
    expect(create).to_be_enabled()
    create.click()

    # The details follow the build: progress while warming, then ready.
    expect(panel.locator(".jp-envmgr-progress")).to_be_visible(timeout=30000)
    shot(page, "2-warming")
    expect(panel.locator('.jp-envmgr-badge[data-status="ready"]')).to_be_visible(timeout=180000)
    expect(panel.locator(".jp-envmgr-log")).to_contain_text("==> done")
    expect(panel.get_by_role("table", name="Installed packages")).to_contain_text("six")
    shot(page, "3-ready")

    # Its kernel is in the launcher without a reload; a notebook on it runs code.
    assert any("ui-env" in label for label in launcher_labels(page))
    panel.get_by_role("button", name="New notebook with this environment").click()
    cell = page.locator(".jp-NotebookPanel:visible .jp-Cell .cm-content").first
    expect(cell).to_be_visible(timeout=60000)
    expect(page.locator(".jp-NotebookPanel:visible .jp-Toolbar-kernelName")).to_contain_text("ui-env", timeout=60000)
    cell.click()
    page.keyboard.type("import six; print(six.__name__)")
    page.keyboard.press("Shift+Enter")
    expect(page.locator(".jp-NotebookPanel:visible .jp-OutputArea-output").first).to_have_text(re.compile(r"^\s*six\s*$"), timeout=120000)
    shot(page, "4-notebook")

    # An update that fails leaves revision 1 ready.
    if not panel.is_visible():  # the sidebar tab toggles the panel
        page.locator('[data-id="jp-envmgr-panel"]').click()
    panel.get_by_role("button", name="Edit packages").click()
    panel.locator("#envmgr-edit-packages").fill("six\nenvmgr-no-such-package-in-ui\n")
    panel.get_by_role("button", name=re.compile("Build revision 2")).click()
    expect(panel.locator('.jp-envmgr-badge[data-status="failed"]')).to_be_visible(timeout=120000)
    expect(panel.locator(".jp-envmgr-serving")).to_have_text("revision 1 ready")
    expect(panel.get_by_role("table", name="Revisions")).to_contain_text("1 (serving)")
    shot(page, "5-failed-update")

    # Delete: confirmed, gone from the list and from the launcher.
    panel.get_by_role("button", name="Delete").click()
    page.locator(".jp-Dialog").get_by_role("button", name="Delete").click()
    expect(panel.get_by_text("No environments in default yet.")).to_be_visible(timeout=30000)
    page.wait_for_function(
        "async () => !('envmgr-ui-env' in (await window.jupyterapp.serviceManager.kernelspecs.specs).kernelspecs)", timeout=30000)
    assert not any("ui-env" in label for label in launcher_labels(page))
    shot(page, "6-deleted")
