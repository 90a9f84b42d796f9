"""The environments panel and views in a real browser against a real server, as a user drives them.

The side panel is checked at JupyterLab's default (and minimum) sidebar width, 250 px, and at
600 px: nothing wider than the panel, no button whose text overflows it.
"""
import json
import re
import time
import urllib.error
import urllib.request

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.ui, pytest.mark.slow]

# Everything in the panel fits inside it; no button's text is wider than the button.
LAYOUT_PROBLEMS = """root => {
  const box = root.getBoundingClientRect();
  const out = [];
  if (root.scrollWidth > root.clientWidth + 1) out.push(`scrolls sideways: ${root.scrollWidth} > ${root.clientWidth}`);
  for (const el of root.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (!r.width || getComputedStyle(el).visibility === 'hidden') continue;
    if (r.right > box.right + 1 || r.left < box.left - 1) out.push(`wider than the panel (${Math.round(r.left)}-${Math.round(r.right)} of ${Math.round(box.left)}-${Math.round(box.right)}): ${el.outerHTML.slice(0, 120)}`);
    if (el.tagName === 'BUTTON' && el.scrollWidth > el.clientWidth + 1) out.push(`button text overflows: ${el.outerHTML.slice(0, 120)}`);
  }
  return out;
}"""

ACCESSIBLE_NAME = """root => [...root.querySelectorAll('input, select, textarea, button')]
  .filter(el => !(el.getAttribute('aria-label') || el.labels?.length && el.labels[0].textContent.trim()
                  || el.tagName === 'BUTTON' && el.textContent.trim()))
  .map(el => el.outerHTML)"""


def call(lab, method, path, body=None, token=None):
    """The REST API of `lab` as its owner (or whoever `token` is): (status, JSON body)."""
    request = urllib.request.Request(
        lab.url + "envmgr/api/" + path, method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"token {token or lab.token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read()
            return response.status, json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        text = e.read()
        try:
            return e.code, json.loads(text or b"null")
        except ValueError:  # a route this server does not have answers with Tornado's HTML page
            return e.code, text.decode(errors="replace")


def streams_events(lab):
    """Whether the server has GET /envmgr/api/events (it answers 200 and keeps the stream open)."""
    request = urllib.request.Request(lab.url + "envmgr/api/events", headers={"Authorization": f"token {lab.token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status == 200
    except urllib.error.HTTPError:
        return False


def open_panel(page):
    """The panel, opened from its icon in the left sidebar (the icon toggles it)."""
    panel = page.locator("#jp-envmgr-panel")
    if not panel.is_visible():
        page.locator('[data-id="jp-envmgr-panel"]').click()
    expect(panel).to_be_visible()
    return panel


def check_layout(panel):
    assert panel.evaluate(LAYOUT_PROBLEMS) == []
    assert panel.evaluate(ACCESSIBLE_NAME) == []


def set_sidebar_width(page, width):
    """Drag the handle between the left sidebar and the main area, as a user does."""
    panel = page.locator("#jp-envmgr-panel")
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first
    box = handle.bounding_box()
    start = box["x"] + box["width"] / 2
    page.mouse.move(start, box["y"] + 200)
    page.mouse.down()
    page.mouse.move(start + width - panel.bounding_box()["width"], box["y"] + 200, steps=5)
    page.mouse.up()
    page.wait_for_function(f"() => Math.abs(document.querySelector('#jp-envmgr-panel').getBoundingClientRect().width - {width}) < 12")


def kernel_names(page):
    """What the kernel picker offers: the app's kernelspecs, as the page has them (no reload)."""
    return page.evaluate("() => Object.keys(window.jupyterapp.serviceManager.kernelspecs.specs?.kernelspecs || {})")


def launcher_labels(page):
    page.evaluate("async () => { await window.jupyterapp.commands.execute('launcher:create'); }")
    cards = page.locator(".jp-Launcher:visible .jp-LauncherCard-label")
    expect(cards.first).to_be_visible()
    return cards.all_inner_texts()


def focused(page):
    return page.evaluate("() => { const e = document.activeElement; return e.getAttribute('aria-label') || e.textContent || e.tagName; }")


def view_of(page, name):
    return page.locator(f'.jp-envmgr-view[aria-label="Environment {name}"]')


def test_create_warm_use_edit_fail_delete(page, lab, shot):
    name, kernel = "ui-six", "envmgr-ui-six"
    requests = []  # what the page asks the server for
    page.on("request", lambda request: requests.append(request.url))
    panel = open_panel(page)
    assert round(panel.bounding_box()["width"]) == 250  # JupyterLab's default sidebar width
    expect(panel.get_by_text("No environments in default yet.")).to_be_visible()
    check_layout(panel)
    expect(panel.locator('.jp-ToolbarButtonComponent[title="Refresh the list"]')).to_be_visible()  # a tooltip

    # "New" opens the form in the main area with the focus in the name; a bad name is explained as it is typed.
    panel.get_by_role("button", name="New", exact=True).click()
    form = page.get_by_role("form", name="Create an environment")
    expect(form).to_be_visible()
    expect(form.get_by_label("Name", exact=True)).to_be_focused()
    page.keyboard.type("Bad_Name")
    expect(form.locator("#envmgr-name-error")).to_contain_text("lowercase")
    create = form.get_by_role("button", name="Create", exact=True)
    expect(create).to_be_disabled()
    shot(page, "form-bad-name")

    # Fixed; a new label row takes the focus, so what is typed next lands in it.
    form.get_by_label("Name", exact=True).fill(name)
    expect(form.locator("#envmgr-name-error")).to_have_count(0)
    form.get_by_label("Packages (requirements.txt)").fill("six\n")
    form.get_by_role("button", name="Add label").press("Enter")
    expect(form.get_by_label("label key 1")).to_be_focused()
    page.keyboard.type("team")
    page.keyboard.press("Tab")
    page.keyboard.type("ui")
    # A bad second label: the error sits under that row and says which row.
    form.get_by_role("button", name="Add label").press("Enter")
    page.keyboard.type("bad key")
    error = form.locator("#envmgr-labels-error")
    expect(error).to_contain_text("label 2")
    expect(form.get_by_label("label key 2")).to_have_attribute("aria-invalid", "true")
    expect(form.get_by_label("label key 1")).to_have_attribute("aria-invalid", "false")
    expect(create).to_be_disabled()
    form.get_by_role("button", name="remove label 2").click()
    expect(error).to_have_count(0)
    form.get_by_label("Description").fill("six for the UI test")
    form.get_by_label(re.compile("^Init script")).fill(
        "import os, time\ntime.sleep(4)\nprint('init done')\n"
        "with open(os.environ['ENVMGR_ENV_FILE'], 'a') as f:\n    f.write('FROM_INIT=yes\\n')\n")
    expect(create).to_be_enabled()
    create.click()

    # The view opens on the build log with the focus on its title, and follows the build to ready.
    view = view_of(page, name)
    expect(view).to_be_visible()
    expect(view.locator(".jp-envmgr-view-title")).to_be_focused()
    expect(view.get_by_role("tab", name="Build log")).to_have_attribute("aria-selected", "true")
    expect(view.locator(".jp-envmgr-progress")).to_be_visible()
    shot(page, "view-warming")
    expect(view.locator('.jp-envmgr-view-head .jp-envmgr-badge[data-status="ready"]')).to_be_visible(timeout=180000)
    expect(view.locator(".jp-envmgr-log")).to_contain_text("init done")
    expect(view.locator(".jp-envmgr-progress")).to_have_count(0)
    # The log was followed by one streamed request, not re-downloaded.
    log_requests = [url for url in requests if f"/environments/{name}/log" in url]
    assert log_requests and all("follow=1" in url for url in log_requests), log_requests

    # Every field the user entered is shown; the packages tell requested from dependencies.
    view.get_by_role("tab", name="Overview").click()
    facts = view.locator(".jp-envmgr-facts")
    for text in ("six for the UI test", "team", "default", "six\n"):
        expect(facts).to_contain_text(text.strip())
    owner = facts.locator("dt:text('Owner') + dd").inner_text()
    assert not re.fullmatch(r"[0-9a-f]{32}", owner), f"owner shown as a hash: {owner}"
    view.get_by_role("tab", name="Packages").click()
    table = view.get_by_role("table", name="Installed packages")
    expect(table.locator('tr[data-role="requested"]')).to_contain_text("six")
    expect(table.locator('tr[data-role="base"]')).to_contain_text("ipykernel")
    expect(table.locator('tr[data-role="dependency"]').first).to_be_visible()
    view.get_by_label("Search packages").fill("six")
    expect(table.locator("tbody tr")).to_have_count(1)
    view.get_by_role("tab", name="Resources").click()
    expect(view.get_by_label("Init script")).to_contain_text("init done")
    expect(view.get_by_label("Variables set for kernels")).to_contain_text("FROM_INIT = yes")
    shot(page, "view-ready")
    # The tabs follow the arrow keys.
    view.get_by_role("tab", name="Resources").press("ArrowRight")
    expect(view.get_by_role("tab", name="Overview")).to_be_focused()
    expect(view.get_by_role("tab", name="Overview")).to_have_attribute("aria-selected", "true")
    page.keyboard.press("ArrowLeft")
    expect(view.get_by_role("tab", name="Resources")).to_be_focused()

    # Its kernel reached the kernel picker and the launcher without a reload; a notebook on it runs six.
    page.wait_for_function(f"() => '{kernel}' in (window.jupyterapp.serviceManager.kernelspecs.specs?.kernelspecs || {{}})")
    assert any(name in label for label in launcher_labels(page))
    page.locator('.lm-TabBar-tab[data-id^="envmgr-view-"]').first.click()
    view.get_by_role("button", name="New notebook").click()
    notebook = page.locator(".jp-NotebookPanel:visible")
    expect(notebook.locator(".jp-Toolbar-kernelName")).to_contain_text(name, timeout=60000)
    expect(notebook.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(1, timeout=60000)
    cell = notebook.locator(".jp-Cell .cm-content").first
    cell.click()
    page.keyboard.type("import six; print(six.__name__)")
    expect(cell).to_have_text("import six; print(six.__name__)")
    page.keyboard.press("Shift+Enter")
    expect(notebook.locator(".jp-OutputArea-output").first).to_have_text(re.compile(r"^\s*six\s*$"), timeout=120000)

    # The list: one compact item with its facts; filters; at 250 px nothing sticks out.
    panel = open_panel(page)
    item = panel.locator(f'.jp-envmgr-item[data-name="{name}"]')
    expect(item).to_contain_text("Python")
    expect(item).to_contain_text("pip")
    expect(item).to_contain_text("team=ui")
    expect(item.locator('.jp-envmgr-badge[data-status="ready"]')).to_be_visible()
    panel.get_by_label("Filter by label").fill("team=other")
    expect(item).to_have_count(0)
    expect(panel.get_by_text("No environment matches the filters.")).to_be_visible()
    panel.get_by_label("Filter by label").fill("team=ui")
    panel.get_by_label("Filter by text").fill("six")
    expect(item).to_be_visible()
    check_layout(panel)
    shot(page, "list")

    # Edit from the overview: a metadata change says so and makes no revision.
    item.get_by_role("button", name=f"Open {name}").click()
    expect(view.locator(".jp-envmgr-view-title")).to_be_focused()
    view.get_by_role("tab", name="Overview").click()
    view.get_by_role("button", name="Edit", exact=True).click()
    edit = view.get_by_role("form", name=f"Edit {name}")
    edit.get_by_label("Description").fill("six, described again")
    expect(edit.locator("#envmgr-save-effect")).to_contain_text("metadata only")
    edit.get_by_role("button", name="Save", exact=True).click()
    expect(view.get_by_role("button", name="Edit", exact=True)).to_be_focused()
    expect(view.locator(".jp-envmgr-facts")).to_contain_text("six, described again")
    assert call(lab, "GET", f"environments/{name}")[1]["revision"] == 1

    # An update that fails: said to build revision 2 before saving; then honest: still ready, the failure a notice.
    view.get_by_role("button", name="Edit", exact=True).click()
    edit.get_by_label("Packages (requirements.txt)").fill("six\nenvmgr-no-such-package-xyz\n")
    expect(edit.locator("#envmgr-save-effect")).to_contain_text("builds revision 2")
    edit.get_by_role("button", name="Save and build revision 2").click()
    notice = view.locator(".jp-envmgr-view-head .jp-envmgr-notice")
    expect(notice).to_contain_text("update 2 failed", timeout=120000)  # the words of the list, the CLI and the magics
    expect(notice).to_contain_text("revision 1 keeps serving")
    expect(notice).to_contain_text("envmgr-no-such-package-xyz")
    expect(view.locator('.jp-envmgr-view-head .jp-envmgr-badge[data-status="ready"]')).to_be_visible()
    assert kernel in kernel_names(page)
    view.get_by_role("tab", name="Revisions").click()
    revisions = view.get_by_role("table", name="Revisions")
    expect(revisions.locator('tr[data-revision="2"]')).to_contain_text("failed")
    expect(revisions.locator('tr[data-revision="2"] .jp-envmgr-reason')).to_contain_text("envmgr-no-such-package-xyz")
    expect(revisions.locator('tr[data-revision="1"]')).to_contain_text("1 (serving)")
    assert view.evaluate(ACCESSIBLE_NAME) == []
    shot(page, "view-failed-update")
    # Editing starts from what the serving revision asked for, not from the failed request.
    view.get_by_role("tab", name="Overview").click()
    view.get_by_role("button", name="Edit", exact=True).click()
    expect(edit.get_by_label("Packages (requirements.txt)")).to_have_value("six\n")
    edit.get_by_label("Packages (requirements.txt)").press("Escape")
    expect(edit).to_have_count(0)

    # In the list: ready with the failure as a one-line notice; the status filter follows the shown status.
    panel = open_panel(page)
    panel.get_by_label("Filter by text").fill("")
    expect(item.locator('.jp-envmgr-badge[data-status="ready"]')).to_be_visible()
    expect(item.locator(".jp-envmgr-message")).to_contain_text("update 2 failed")
    assert item.locator(".jp-envmgr-message").evaluate("e => e.getBoundingClientRect().height") < 24
    panel.get_by_label("Filter by status").select_option("failed")  # a failed update is found as failed too
    expect(item).to_be_visible()
    panel.get_by_label("Filter by status").select_option("ready")
    expect(item).to_be_visible()
    panel.get_by_label("Filter by status").select_option("")
    check_layout(panel)
    shot(page, "list-failed-update")

    # "Show in list" closes the view and puts the focus on the environment's item.
    item.get_by_role("button", name=f"Open {name}").click()
    view.get_by_role("button", name="Show in list").click()
    expect(view).to_have_count(0)
    expect(item.get_by_role("button", name=f"Open {name}")).to_be_focused()

    # At 600 px the same holds.
    set_sidebar_width(page, 600)
    check_layout(panel)
    shot(page, "list-600")
    set_sidebar_width(page, 250)

    # Delete, confirmed: progress is shown, then it leaves the list, the kernel picker and the launcher.
    item.get_by_role("button", name=f"Open {name}").click()
    view.get_by_role("button", name="Delete").click()
    page.locator(".jp-Dialog").get_by_role("button", name="Delete").click()
    expect(panel.get_by_text("No environments in default yet.")).to_be_visible(timeout=60000)
    page.wait_for_function(f"() => !('{kernel}' in (window.jupyterapp.serviceManager.kernelspecs.specs?.kernelspecs || {{}}))")
    assert not any(name in label for label in launcher_labels(page))
    expect(view).to_have_count(0)


def test_keyboard_escape_and_dark_theme(page, lab, shot):
    page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})")
    expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "false")
    panel = open_panel(page)
    check_layout(panel)

    # From the keyboard: the palette command opens the form with the focus in the name.
    page.keyboard.press("Control+Shift+C")
    expect(page.locator(".jp-ModalCommandPalette .lm-CommandPalette-input")).to_be_focused()  # keys typed before are lost
    page.keyboard.type("Environments: New Environment")
    expect(page.locator(".jp-ModalCommandPalette .lm-CommandPalette-item.lm-mod-active")).to_contain_text("New Environment")
    page.keyboard.press("Enter")
    form = page.get_by_role("form", name="Create an environment")
    expect(form).to_be_visible()
    expect(form.get_by_label("Name", exact=True)).to_be_focused()
    page.keyboard.type("kb-env")
    assert page.evaluate(ACCESSIBLE_NAME.replace("root =>", "() =>").replace("root.", "document.querySelector('.jp-envmgr-form').")) == []

    # The manager follows /info: CONDA is offered only when the server can build it, else says why.
    conda = form.get_by_role("radio", name="CONDA")
    if "conda" in call(lab, "GET", "info")[1]["managers"]:
        conda.check()
        form.get_by_label("Packages (environment.yaml)").fill("numpy\n")
        expect(form.locator("#envmgr-packages-error")).to_contain_text("dependencies")
        form.get_by_role("radio", name="PIP").check()
    else:
        expect(conda).to_be_disabled()
        expect(form.locator("#envmgr-conda-reason")).to_be_visible()

    # What only the administrator's policy decides (a local path) is judged by the server: as it is
    # typed where the server has ?dry_run=1, else when Create is pressed; either way under the packages.
    packages = form.get_by_label("Packages (requirements.txt)")
    packages.fill("-e ./pkg\n")
    if "clusters" not in call(lab, "GET", "info")[1]:  # a server without ?dry_run=1
        form.get_by_role("button", name="Create", exact=True).click()
    expect(form.locator("#envmgr-packages-error")).to_contain_text(re.compile("editable|-e"), timeout=10000)
    expect(form.get_by_role("button", name="Create", exact=True)).to_be_disabled()
    # A policy's refusal (an option line) is said under the field; it is not the namespace's permission, so no
    # "Request it" is offered to a user who may write here.
    packages.fill("--index-url https://mirror.example/simple\nsix\n")
    expect(form.locator("#envmgr-packages-error")).to_contain_text("--index-url", timeout=10000)
    expect(form.locator("#envmgr-submit-why")).to_contain_text("Change what the server refused")
    expect(form.get_by_role("button", name="Request it")).to_have_count(0)
    assert call(lab, "GET", "environments/kb-env")[0] == 404  # nothing was created

    # A preset adds its lines without repeating what is there; a variable row takes the focus.
    packages = form.get_by_label("Packages (requirements.txt)")
    packages.fill("numpy==2.*\n")
    form.get_by_label("Add a set of packages").select_option("data-analysis")
    expect(packages).to_have_value("numpy==2.*\npandas\npyarrow\n")
    form.get_by_role("button", name="Add variable").press("Enter")
    expect(form.get_by_label("variable name 1")).to_be_focused()
    page.keyboard.type("1BAD")
    expect(form.locator("#envmgr-env-vars-error")).to_contain_text("variable 1")
    shot(page, "form-dark")

    # Escape closes the form, and the focus goes back to the panel.
    page.keyboard.press("Escape")
    expect(form).to_have_count(0)
    expect(panel.get_by_role("button", name="New", exact=True)).to_be_focused()
    shot(page, "list-empty-dark")


def test_changes_made_elsewhere_arrive_without_reload(page, lab, shot):
    """An environment created and updated through the REST API (another tab, the CLI) shows up live; a
    notebook on the old revision is told that a newer one is ready and offered the restart."""
    name = "ui-elsewhere-with-a-long-name-to-check-the-layout-at-250-px"
    kernel = f"envmgr-{name}"
    panel = open_panel(page)
    labels = {"from": "rest", "team.example.com/owner-group": "a-long-label-value-0123456789abcdefghij"}
    status, _ = call(lab, "POST", "environments", {"name": name, "packages": "six\n", "labels": labels})
    assert status == 202
    item = panel.locator(f'.jp-envmgr-item[data-name="{name}"]')
    expect(item).to_be_visible(timeout=10000)
    deadline = time.monotonic() + 180
    while call(lab, "GET", f"environments/{name}")[1]["status"] != "ready":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    # In the kernel picker within 2 s of turning ready (the server's event stream; a server without it
    # is polled every refreshInterval, 3 s by default).
    budget = 2.0 if streams_events(lab) else 3.0 + 2.0
    started = time.monotonic()
    page.wait_for_function(f"() => '{kernel}' in (window.jupyterapp.serviceManager.kernelspecs.specs?.kernelspecs || {{}})",
                           timeout=budget * 1000 + 1000)
    assert time.monotonic() - started < budget
    expect(item.locator('.jp-envmgr-badge[data-status="ready"]')).to_be_visible()

    check_layout(panel)  # a long name and long labels still fit in 250 px
    page.evaluate(f"async () => {{ await window.jupyterapp.commands.execute('notebook:create-new', {{kernelName: '{kernel}'}}); }}")
    notebook = page.locator(".jp-NotebookPanel:visible")
    expect(notebook.locator(".jp-Toolbar-kernelName")).to_contain_text(name, timeout=60000)
    expect(notebook.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(1, timeout=60000)

    status, _ = call(lab, "POST", f"environments/{name}/actions", {"action": "rebuild"})
    assert status == 202
    toast = page.locator(".Toastify__toast", has_text="revision 2 is ready")
    expect(toast).to_be_visible(timeout=180000)
    expect(toast).to_contain_text("runs revision 1")
    page.wait_for_timeout(1000)  # the toast slides in
    shot(page, "restart-notice")
    # The notice stays true: a rollback elsewhere to the revision this kernel runs takes it away; forward again, it is back.
    assert call(lab, "POST", f"environments/{name}/actions", {"action": "rollback", "revision": 1})[0] == 202
    expect(toast).to_have_count(0, timeout=10000)
    assert call(lab, "POST", f"environments/{name}/actions", {"action": "rollback", "revision": 2})[0] == 202
    expect(toast).to_be_visible(timeout=10000)
    toast.get_by_role("button", name="Restart kernel").click()
    expect(notebook.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(1, timeout=60000)

    # Its revisions: both ready, the same lock; a rollback to 1 from the view asks first, saying who uses it.
    item.get_by_role("button", name=f"Open {name}").click()
    view = view_of(page, name)
    view.get_by_role("tab", name="Revisions").click()
    expect(view.get_by_label("Lock difference")).to_contain_text("The locks are the same.")
    view.get_by_role("button", name="Roll back to 1").click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("used by 1 notebook of 1 user in the last 7 days; 1 kernel runs now")
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()  # Enter does not roll back
    shot(page, "rollback-dialog")
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    assert call(lab, "GET", f"environments/{name}")[1]["ready_revision"] == 2  # nothing happened
    view.get_by_role("button", name="Roll back to 1").click()
    dialog.get_by_role("button", name="Roll back to 1").click()
    expect(view.locator(".jp-envmgr-outcome")).to_contain_text("Rolled back to 1")
    expect(view.get_by_role("table", name="Revisions").locator('tr[data-revision="1"]')).to_contain_text("1 (serving)", timeout=60000)
    expect(view.get_by_role("button", name="Roll back to 2")).to_be_visible()
    assert view.get_by_role("button", name="Roll back to 2").evaluate("b => b.scrollWidth <= b.clientWidth + 1")  # its text fits
    expect(page.locator(".Toastify__toast", has_text="is ready")).to_have_count(0)  # this kernel runs 2: nothing to restart for
    shot(page, "view-rollback")
    view.get_by_role("tab", name="Overview").click()
    expect(view.locator(".jp-envmgr-facts dt:text('Latest revision') + dd")).to_contain_text("2")
    expect(view.locator(".jp-envmgr-facts dt:text('Serving') + dd")).to_have_text("revision 1")

    # Idle, a page following the event stream asks for no lists.
    if streams_events(lab):
        requests = []
        page.on("request", lambda request: requests.append(request.url))
        page.wait_for_timeout(5000)
        assert [url for url in requests if "/envmgr/api/environments?" in url] == []

    assert call(lab, "DELETE", f"environments/{name}")[0] == 204
    expect(item).to_have_count(0, timeout=10000)
