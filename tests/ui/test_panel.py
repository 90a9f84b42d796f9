"""The environments panel in a real browser against a real server, as a user drives it."""
import json
import re
import urllib.request

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.ui

NAME = "ui-six"
KERNEL = f"envmgr-{NAME}"


def open_panel(page):
    """The panel, opened from its icon in the left sidebar (the icon toggles it)."""
    panel = page.locator("#jp-envmgr-panel")
    if not panel.is_visible():
        page.locator('[data-id="jp-envmgr-panel"]').click()
    expect(panel).to_be_visible()
    return panel


def kernel_names(page):
    """What the kernel picker offers: the app's kernelspecs, as the page has them (no reload, no refresh of ours)."""
    return page.evaluate("() => Object.keys(window.jupyterapp.serviceManager.kernelspecs.specs?.kernelspecs || {})")


def launcher_labels(page):
    page.evaluate("async () => { await window.jupyterapp.commands.execute('launcher:create'); }")
    cards = page.locator(".jp-Launcher:visible .jp-LauncherCard-label")
    expect(cards.first).to_be_visible()
    return cards.all_inner_texts()


def server_info(lab):
    request = urllib.request.Request(lab.url + "envmgr/api/info", headers={"Authorization": f"token {lab.token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def test_create_warm_use_update_delete(page, shot):
    panel = open_panel(page)
    expect(panel.get_by_text("No environments in default yet.")).to_be_visible()

    # A bad name is explained under the field as it is typed, and Create stays disabled.
    panel.get_by_role("button", name="New environment").click()
    name = panel.get_by_label("Name", exact=True)
    name.fill("Bad_Name")
    expect(panel.locator("#envmgr-name-error")).to_contain_text("lowercase")
    create = panel.get_by_role("button", name="Create", exact=True)
    expect(create).to_be_disabled()
    shot(page, "form-bad-name")

    # Fixed, with six, a label, and an init script that keeps the build warming long enough to watch.
    name.fill(NAME)
    expect(panel.locator("#envmgr-name-error")).to_have_count(0)
    panel.get_by_label("Packages (requirements.txt)").fill("six\n")
    panel.get_by_role("button", name="Add label").click()
    panel.get_by_label("label key 1").fill("team")
    panel.get_by_label("label value 1").fill("ui")
    panel.get_by_label(re.compile("^Init script")).fill("import time\ntime.sleep(4)\nprint('init done')\n")
    expect(create).to_be_enabled()
    create.click()

    # The details follow the build: a progress bar while warming, then ready with its log and packages.
    expect(panel.locator('.jp-envmgr-badge[data-status="warming"]')).to_be_visible()
    expect(panel.locator(".jp-envmgr-progress")).to_be_visible()
    shot(page, "details-warming")
    expect(panel.locator('.jp-envmgr-badge[data-status="ready"]')).to_be_visible(timeout=180000)
    expect(panel.locator(".jp-envmgr-progress")).to_have_count(0)
    expect(panel.get_by_label("Build log")).to_contain_text("init done")
    expect(panel.get_by_role("table", name="Installed packages")).to_contain_text("six")
    shot(page, "details-ready")

    # Its kernel reached the kernel picker and the launcher without a reload.
    page.wait_for_function(f"() => '{KERNEL}' in (window.jupyterapp.serviceManager.kernelspecs.specs?.kernelspecs || {{}})")
    assert any(NAME in label for label in launcher_labels(page))

    # A notebook on it, from the panel, runs code that imports six.
    open_panel(page).get_by_role("button", name="New notebook with this environment").click()
    notebook = page.locator(".jp-NotebookPanel:visible")
    expect(notebook.locator(".jp-Toolbar-kernelName")).to_contain_text(NAME, timeout=60000)
    notebook.locator(".jp-Cell .cm-content").first.click()
    page.keyboard.type("import six; print(six.__name__)")
    page.keyboard.press("Shift+Enter")
    expect(notebook.locator(".jp-OutputArea-output").first).to_have_text(re.compile(r"^\s*six\s*$"), timeout=120000)
    shot(page, "notebook")

    # The list shows it with its facts, and the filters work.
    panel = open_panel(page)
    panel.get_by_role("button", name="Back to the list").click()
    item = panel.locator(f'.jp-envmgr-item[data-name="{NAME}"]')
    expect(item).to_contain_text("pip")
    expect(item).to_contain_text("team=ui")
    expect(item.locator('.jp-envmgr-badge[data-status="ready"]')).to_be_visible()
    panel.get_by_label("Filter by label").fill("team=other")
    expect(item).to_have_count(0)
    expect(panel.get_by_text("No environment matches the filters.")).to_be_visible()
    panel.get_by_label("Filter by label").fill("team=ui")
    expect(item).to_be_visible()
    panel.get_by_label("Filter by status").select_option("failed")
    expect(item).to_have_count(0)
    panel.get_by_label("Filter by status").select_option("")
    panel.get_by_label("Filter by text").fill("six")
    expect(item).to_be_visible()
    shot(page, "list")

    # The server refuses a taken name: the message lands under the name, nothing typed is lost.
    panel.get_by_role("button", name="New environment").click()
    panel.get_by_label("Name", exact=True).fill(NAME)
    panel.get_by_label("Packages (requirements.txt)").fill("six\n")
    panel.get_by_label("Description").fill("a second one")
    panel.get_by_role("button", name="Create", exact=True).click()
    expect(panel.locator("#envmgr-name-error")).to_contain_text("already exists")
    expect(panel.get_by_label("Packages (requirements.txt)")).to_have_value("six\n")
    expect(panel.get_by_label("Description")).to_have_value("a second one")
    panel.get_by_role("button", name="Cancel").click()

    # An update that fails: status failed with its message, revision 1 still serves its kernel.
    item.get_by_role("button", name=f"Open {NAME}").click()
    panel.get_by_role("button", name="Edit packages").click()
    panel.get_by_label(re.compile("^Packages of the next revision")).fill("six\nenvmgr-no-such-package-xyz\n")
    panel.get_by_role("button", name="Build revision 2").click()
    expect(panel.locator('.jp-envmgr-badge[data-status="failed"]')).to_be_visible(timeout=120000)
    expect(panel.locator(".jp-envmgr-message")).to_contain_text("envmgr-no-such-package-xyz")
    expect(panel.locator(".jp-envmgr-serving")).to_have_text("revision 1 ready")
    expect(panel.get_by_role("table", name="Revisions")).to_contain_text("1 (serving)")
    assert KERNEL in kernel_names(page)
    shot(page, "details-failed-update")

    # Delete, confirmed: it leaves the list, the kernel picker and the launcher.
    panel.get_by_role("button", name="Delete").click()
    page.locator(".jp-Dialog").get_by_role("button", name="Delete").click()
    expect(panel.get_by_text("No environments in default yet.")).to_be_visible()
    page.wait_for_function(f"() => !('{KERNEL}' in (window.jupyterapp.serviceManager.kernelspecs.specs?.kernelspecs || {{}}))")
    assert not any(NAME in label for label in launcher_labels(page))


ACCESSIBLE_NAME = """panel => [...panel.querySelectorAll('input, select, textarea, button')]
  .filter(el => !(el.getAttribute('aria-label') || el.labels?.length && el.labels[0].textContent.trim()
                  || el.tagName === 'BUTTON' && el.textContent.trim()))
  .map(el => el.outerHTML)"""


def test_keyboard_dark_theme_and_labels(page, lab, shot):
    page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})")
    expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "false")
    panel = open_panel(page)
    assert panel.evaluate(ACCESSIBLE_NAME) == []

    # From the keyboard: the palette command opens the form, the name field has the focus.
    page.keyboard.press("Control+Shift+C")
    page.keyboard.type("New Environment")
    page.keyboard.press("Enter")
    expect(panel.get_by_role("form", name="Create an environment")).to_be_visible()
    expect(panel.get_by_label("Name", exact=True)).to_be_focused()
    page.keyboard.type("-bad")
    expect(panel.locator("#envmgr-name-error")).to_be_visible()
    for _ in range(4):
        page.keyboard.press("Backspace")
    page.keyboard.type("kb-env")
    expect(panel.get_by_label("Name", exact=True)).to_have_value("kb-env")
    expect(panel.locator("#envmgr-name-error")).to_have_count(0)
    assert panel.evaluate(ACCESSIBLE_NAME) == []

    # The manager follows /info: CONDA is offered only when the server can build it, else says why.
    conda = panel.get_by_role("radio", name="CONDA")
    if "conda" in server_info(lab)["managers"]:
        conda.check()
        expect(panel.get_by_label("Packages (environment.yaml)")).to_be_visible()
        panel.get_by_label("Packages (environment.yaml)").fill("numpy\n")
        expect(panel.locator("#envmgr-packages-error")).to_contain_text("dependencies")
        panel.get_by_role("radio", name="PIP").check()
    else:
        expect(conda).to_be_disabled()
        expect(panel.locator("#envmgr-conda-reason")).to_be_visible()

    # A preset adds its lines without repeating what is there; a bad label key is explained.
    packages = panel.get_by_label("Packages (requirements.txt)")
    packages.fill("numpy==2.*\n")
    panel.get_by_label("Add a set of packages").select_option("data-analysis")
    expect(packages).to_have_value("numpy==2.*\npandas\npyarrow\n")
    panel.get_by_role("button", name="Add label").press("Enter")
    panel.get_by_label("label key 1").fill("bad key")
    expect(panel.locator("#envmgr-labels-error")).to_contain_text("bad key")
    expect(panel.get_by_role("button", name="Create", exact=True)).to_be_disabled()
    shot(page, "form-dark")

    panel.get_by_role("button", name="Cancel").press("Enter")
    expect(panel.get_by_text("No environments in default yet.")).to_be_visible()
    shot(page, "list-empty-dark")
