"""Issue 17 in a real browser: an environment's "Use elsewhere" (the `run` line and the pod fragment,
copied to the clipboard), and requests between two people (a reader asks from the create form, a
writer sees the count in the panel and approves or rejects from the list; the reader withdraws)."""
import os
import time
from pathlib import Path

import pytest
from conftest import Lab, chromium_contexts
from playwright.sync_api import expect
from test_panel import call, check_layout, open_panel, set_sidebar_width, view_of

pytestmark = [pytest.mark.ui, pytest.mark.slow]

READER_TOKEN = "reader-" + os.urandom(8).hex()


def wait_ready(lab, name, namespace="default", timeout=240):
    deadline = time.monotonic() + timeout
    while True:
        record = call(lab, "GET", f"environments/{name}?namespace={namespace}")[1]
        if record["status"] == "ready":
            return record
        assert record["status"] in ("pending", "warming") and time.monotonic() < deadline, record
        time.sleep(0.2)


def test_use_elsewhere_shows_and_copies_the_run_line_and_the_fragment(page, browser, lab, shot):
    name = "ui-use-elsewhere"
    if call(lab, "GET", "environments/nothing-here/pod-spec")[0] == 405:
        pytest.skip("this server has no pod-spec route")
    browser.grant_permissions(["clipboard-read", "clipboard-write"], origin=lab.url.rstrip("/"))
    panel = open_panel(page)
    set_sidebar_width(page, 250)
    assert call(lab, "POST", "environments", {"name": name, "packages": "six\n"})[0] == 202
    item = panel.locator(f'.jp-envmgr-item[data-name="{name}"]')
    item.get_by_role("button", name=f"Open {name}").click()
    view = view_of(page, name)
    view.get_by_role("tab", name="Resources").click()
    section = view.get_by_role("region", name="Use elsewhere")
    if call(lab, "GET", f"environments/{name}")[1]["ready_revision"] is None:
        expect(section).to_contain_text("Nothing to show yet")  # 409 not_ready, said in words
    wait_ready(lab, name)
    # One that never got a ready revision says so (deterministically: its build fails).
    broken = "ui-use-elsewhere-broken"
    assert call(lab, "POST", "environments", {"name": broken, "packages": "envmgr-no-such-distribution-xyz==1\n"})[0] == 202
    with pytest.raises(AssertionError):
        wait_ready(lab, broken)
    panel.locator(f'.jp-envmgr-item[data-name="{broken}"]').get_by_role("button", name=f"Open {broken}").click()
    view_of(page, broken).get_by_role("tab", name="Resources").click()
    expect(view_of(page, broken).get_by_role("region", name="Use elsewhere")).to_contain_text(
        f"Nothing to show yet: {broken} has no ready revision")
    assert call(lab, "DELETE", f"environments/{broken}")[0] == 204
    item.get_by_role("button", name=f"Open {name}").click()

    # The view refetches when the upsert brings the ready revision: the run line and the YAML.
    run = section.get_by_label("Run command")
    expect(run).to_have_text(f"jupyter envmgr run {name} -- python your_script.py", timeout=10000)
    usage = call(lab, "GET", f"environments/{name}/pod-spec")[1]
    yaml = section.get_by_label("Pod fragment (YAML)")
    expect(yaml).to_contain_text("persistentVolumeClaim")
    assert yaml.inner_text().strip() == usage["yaml"].strip()
    assert usage["python"] in yaml.inner_text() and "revision 1" in yaml.inner_text()

    # Copy: each button has a tooltip, puts its block on the clipboard and says so.
    run_block = section.locator('.jp-envmgr-copyblock:has(pre[aria-label="Run command"])')
    copy_run = run_block.get_by_role("button", name="Copy")
    expect(run_block.locator('[title="Copy the run command to the clipboard"]')).to_be_visible()  # its tooltip
    copy_run.click()
    expect(run_block.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("() => navigator.clipboard.readText()") == usage["run"]
    section.locator('.jp-envmgr-copyblock:has(pre[aria-label="Pod fragment (YAML)"])').get_by_role("button", name="Copy").click()
    assert page.evaluate("() => navigator.clipboard.readText()") == usage["yaml"]
    # Where the clipboard API refuses (an insecure origin, a denied permission), the copy command still copies.
    page.evaluate("() => { navigator.clipboard.writeText = () => Promise.reject(new DOMException('denied', 'NotAllowedError')); }")
    page.wait_for_timeout(3100)  # "Copied" turns back into "Copy"
    copy_run.click()
    expect(run_block.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("() => navigator.clipboard.readText()") == usage["run"]
    shot(page, "use-elsewhere")
    # In a narrow main area (about 250 px) long lines wrap: nothing of the part scrolls sideways.
    page.set_viewport_size({"width": 620, "height": 900})
    page.wait_for_timeout(300)
    assert section.evaluate("root => root.getBoundingClientRect().width") < 320
    assert section.evaluate("root => [...root.querySelectorAll('*')].filter(e => e.scrollWidth > e.clientWidth + 1 && e.tagName !== 'BUTTON').map(e => e.outerHTML.slice(0, 80))") == []
    shot(page, "use-elsewhere-narrow")
    page.set_viewport_size({"width": 1400, "height": 900})

    # A new serving revision: a new fragment without reopening.
    assert call(lab, "POST", f"environments/{name}/actions", {"action": "rebuild"})[0] == 202
    expect(yaml).to_contain_text("revision 2", timeout=240000)
    assert call(lab, "DELETE", f"environments/{name}")[0] == 204


@pytest.fixture(scope="module")
def team_lab(tmp_path_factory):
    """A server with two people (people.py): walt has the server's token, rita READER_TOKEN."""
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "ENVMGR_TEST_READER_TOKEN")}
    here = str(Path(__file__).parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (here, saved["PYTHONPATH"]) if p)
    os.environ["ENVMGR_TEST_READER_TOKEN"] = READER_TOKEN
    try:
        server = Lab(tmp_path_factory.mktemp("team-lab"), [
            "--ServerApp.identity_provider_class=people.TwoPeople", "--ServerApp.authorizer_class=people.TeamAccess",
            "--EnvManagerApp.namespaces=default", "--EnvManagerApp.namespaces=team"])
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    yield server
    server.stop()


@pytest.fixture
def two_browsers():
    """Two people, each in their own browser context (their own login cookie)."""
    with chromium_contexts(2) as contexts:
        yield contexts


def as_reader(lab, method, path, body=None):
    return call(lab, method, path, body, token=READER_TOKEN)


def sign_in(context, lab, reader=False):
    """JupyterLab for walt, or for rita (her cookie: see people.py)."""
    if reader:
        context.add_cookies([{"name": "envmgr-test-person", "value": READER_TOKEN, "url": lab.url}])
    page = context.new_page()
    page.set_default_timeout(30000)
    page.goto(f"{lab.url}lab?token={lab.token}&reset")
    page.wait_for_function("window.jupyterapp !== undefined && document.querySelector('[data-id=\"jp-envmgr-panel\"]')",
                           timeout=60000)
    return page


def test_a_reader_requests_a_writer_decides(team_lab, two_browsers, shot):
    lab = team_lab
    if call(lab, "GET", "requests")[0] == 404:
        pytest.skip("this server has no /envmgr/api/requests")
    rita_ctx, walt_ctx = two_browsers

    # Rita may not create in team: the empty list says so (not "Click New"); the form says it once, by her
    # name, and offers to ask instead.
    rita = sign_in(rita_ctx, lab, reader=True)
    panel = open_panel(rita)
    panel.get_by_label("Namespace").select_option("team")
    expect(panel.locator(".jp-envmgr-empty")).to_contain_text("You may read namespace team but not create in it")
    expect(panel.locator(".jp-envmgr-empty")).not_to_contain_text("Click")
    panel.get_by_role("button", name="New").click()
    form = rita.get_by_role("form", name="Create an environment")
    form.get_by_label("Name", exact=True).fill("ritas-env")
    form.get_by_label("Packages (requirements.txt)").fill("six\n")
    offer = form.get_by_role("button", name="Request it")
    try:
        offer.wait_for(timeout=5000)  # the dry run, as she types, already says 403
    except Exception:
        form.get_by_role("button", name="Create").click()  # a server without dry runs says it on Create
    expect(offer).to_be_visible(timeout=15000)
    expect(form.locator("#envmgr-request-offer")).to_contain_text("Rita may read namespace team but not create environments in it")
    expect(form.locator("#envmgr-form-error")).to_have_count(0)  # one instruction, not a refusal above an offer
    expect(form.locator("#envmgr-submit-why")).to_contain_text("request it below")
    shot(rita, "request-offer")
    offer.click()
    mine = rita.get_by_role("region", name="Yours")
    expect(mine.locator('.jp-envmgr-request[data-status="requested"]')).to_contain_text("ritas-env")
    expect(rita.get_by_role("region", name="To decide")).to_contain_text("Nothing waits for you.")
    expect(mine.get_by_role("button", name="Approve")).to_have_count(0)  # a reader cannot approve her own
    # More, through the REST API: one walt rejects, one rita withdraws, one she withdraws while walt looks.
    ids = {}
    for other in ("ritas-big-env", "ritas-third", "ritas-fourth"):
        status, ids[other] = as_reader(lab, "POST", "requests?namespace=team", {"name": other, "packages": "six\n"})
        assert status == 202
    set_sidebar_width(rita, 250)
    rita.get_by_role("button", name="Refresh", exact=True).click()
    expect(panel.locator(".jp-envmgr-requests-open")).to_contain_text("4 of yours open")
    check_layout(panel)
    mine.locator('.jp-envmgr-request:has-text("ritas-third")').get_by_role("button", name="Withdraw").click()
    expect(mine.locator('.jp-envmgr-request[data-status="withdrawn"]')).to_contain_text("ritas-third")

    # Walt sees the count in his panel at 250 px, opens the list, approves one and rejects one with a reason.
    walt = sign_in(walt_ctx, lab)
    wpanel = open_panel(walt)
    set_sidebar_width(walt, 250)
    line = wpanel.get_by_role("button", name="Requests: 3 to decide")
    expect(line).to_be_visible(timeout=15000)
    check_layout(wpanel)
    shot(walt, "requests-count-250")
    line.click()
    decide = walt.get_by_role("region", name="To decide")
    # Rita withdraws one while walt's list still shows it open: his Approve is refused (409), said on
    # that request, and the list is read again.
    expect(decide).to_contain_text("ritas-fourth")
    assert as_reader(lab, "POST", f"requests/{ids['ritas-fourth']['id']}/actions", {"action": "withdraw"})[0] == 200
    decide.locator('.jp-envmgr-request:has-text("ritas-fourth")').get_by_role("button", name="Approve").click()
    fourth = walt.locator('.jp-envmgr-request[data-status="withdrawn"]:has-text("ritas-fourth")')
    expect(fourth.get_by_role("alert")).to_contain_text("withdrawn already")
    expect(decide).not_to_contain_text("ritas-fourth")
    assert call(lab, "GET", "environments/ritas-fourth?namespace=team")[0] == 404
    big = decide.locator('.jp-envmgr-request:has-text("ritas-big-env")')
    big.get_by_role("button", name="Reject…").click()
    big.get_by_label("Why (the requester reads this)").fill("Too big for the team quota; ask for a smaller one.")
    shot(walt, "requests-reject")
    big.get_by_role("button", name="Reject", exact=True).click()
    asked = decide.locator('.jp-envmgr-request:has-text("ritas-env")')
    asked.get_by_role("button", name="Approve").click()
    expect(decide).to_contain_text("Nothing waits for you.")
    expect(line).to_have_count(0)
    done = walt.get_by_role("region", name="Decided")
    expect(done.locator('.jp-envmgr-request[data-status="approved"]')).to_contain_text("Approved by Walt")
    shot(walt, "requests-decided")
    # In a narrow main area (about 250 px) the list wraps; nothing scrolls sideways.
    walt.set_viewport_size({"width": 620, "height": 900})
    walt.wait_for_timeout(300)
    requests_view = walt.get_by_label("Requests", exact=True)
    assert requests_view.evaluate("root => [...root.querySelectorAll('*')].filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.outerHTML.slice(0, 80))") == []
    shot(walt, "requests-narrow")
    walt.set_viewport_size({"width": 1400, "height": 900})
    done.get_by_role("button", name="Open ritas-env").click()
    view = view_of(walt, "ritas-env")
    expect(view).to_be_visible()
    record = call(lab, "GET", "environments/ritas-env?namespace=team")[1]
    assert record["owner"] == "rita"

    # Rita reads the outcome: approved, and rejected with walt's reason.
    rita.get_by_role("button", name="Refresh", exact=True).click()
    expect(mine.locator('.jp-envmgr-request[data-status="approved"]')).to_contain_text("ritas-env")
    expect(mine.locator('.jp-envmgr-request[data-status="rejected"]')).to_contain_text("Too big for the team quota")
    shot(rita, "requests-yours")
    assert call(lab, "DELETE", "environments/ritas-env?namespace=team")[0] == 204


def start_notebook(page, kernel, name):
    """A new notebook on `kernel`, its kernel idle."""
    page.evaluate(f"async () => {{ await window.jupyterapp.commands.execute('notebook:create-new', {{kernelName: '{kernel}'}}); }}")
    notebook = page.locator(".jp-NotebookPanel:visible")
    expect(notebook.locator(".jp-Toolbar-kernelName")).to_contain_text(name, timeout=60000)
    expect(notebook.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(1, timeout=60000)


def test_who_uses_it_before_a_rollback_or_a_delete(team_lab, two_browsers, shot):
    """Issue 25: kernels in two people's notebooks show in the view, and the rollback and delete dialogs count them."""
    lab = team_lab
    name, kernel = "ui-shared-env", "envmgr-ui-shared-env"
    assert call(lab, "POST", "environments", {"name": name, "packages": "six\n"})[0] == 202
    wait_ready(lab, name)
    assert call(lab, "POST", f"environments/{name}/actions", {"action": "rebuild"})[0] == 202
    wait_ready(lab, name)
    rita_ctx, walt_ctx = two_browsers
    rita = sign_in(rita_ctx, lab, reader=True)
    walt = sign_in(walt_ctx, lab)
    for page in (rita, walt):
        page.wait_for_function(f"() => '{kernel}' in (window.jupyterapp.serviceManager.kernelspecs.specs?.kernelspecs || {{}})")
        start_notebook(page, kernel, name)

    # Walt's view: who runs it now, by name, and the same sentence the dialogs say.
    panel = open_panel(walt)
    panel.locator(f'.jp-envmgr-item[data-name="{name}"]').get_by_role("button", name=f"Open {name}").click()
    view = view_of(walt, name)
    used = "used by 2 notebooks of 2 users in the last 7 days; 2 kernels run now"
    who = view.get_by_role("region", name="Who uses it")
    expect(who).to_contain_text(used, timeout=15000)
    running = who.get_by_role("table", name="Kernels running now")
    expect(running.locator("tbody tr")).to_have_count(2)
    expect(running).to_contain_text("Walt")  # the signed-in user by display name
    expect(running).to_contain_text("rita")
    expect(running).to_contain_text("Untitled.ipynb")
    shot(walt, "view-who-uses-it")

    # The rollback asks with the count, then says what happened.
    view.get_by_role("tab", name="Revisions").click()
    view.get_by_role("button", name="Roll back to 1").click()
    dialog = walt.locator(".jp-Dialog")
    expect(dialog).to_contain_text(used)
    expect(dialog).to_contain_text("Running kernels keep the revision they started with")
    dialog.get_by_role("button", name="Roll back to 1").click()
    expect(view.locator(".jp-envmgr-outcome")).to_contain_text("Rolled back to 1")
    assert call(lab, "GET", f"environments/{name}")[1]["ready_revision"] == 1

    # Delete: the same count; the focus is on Cancel, so Enter deletes nothing.
    view.get_by_role("button", name="Delete").click()
    expect(dialog).to_contain_text(used)
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    shot(walt, "delete-dialog")
    walt.keyboard.press("Enter")
    expect(dialog).to_have_count(0)
    assert call(lab, "GET", f"environments/{name}")[0] == 200
    assert call(lab, "DELETE", f"environments/{name}")[0] == 204
