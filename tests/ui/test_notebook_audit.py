"""Issue 16 in the browser: an environment from a notebook (toolbar button → the create form
prefilled by POST /suggestions, unresolved imports shown) and audited locks (a badge, the findings
with their fixed versions, "Update to fixed versions" proposing the PATCH), against a real server
with a small OSV advisory directory."""
import json

import nbformat
import pytest
from playwright.sync_api import expect

from conftest import Lab, open_lab
from test_panel import call, check_layout, open_panel, view_of

pytestmark = [pytest.mark.ui, pytest.mark.slow]

# A real OSV record's shape (https://ossf.github.io/osv-schema/), about the six that the build installs.
ADVISORY = {
    "schema_version": "1.6.0",
    "id": "GHSA-envm-test-0001",
    "aliases": ["CVE-2099-0001"],
    "modified": "2026-11-01T00:00:00Z",
    "published": "2026-11-01T00:00:00Z",
    "summary": "Test advisory: six before 99.0 mishandles test input",
    "affected": [{
        "package": {"ecosystem": "PyPI", "name": "six", "purl": "pkg:pypi/six"},
        "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "99.0"}]}],
    }],
}


@pytest.fixture(scope="module")
def audited_lab(tmp_path_factory):
    base = tmp_path_factory.mktemp("audited-lab")
    osv = base / "osv"
    osv.mkdir()
    (osv / "GHSA-envm-test-0001.json").write_text(json.dumps(ADVISORY))
    server = Lab(base, [f"--EnvManagerApp.advisory_db={osv}"])
    yield server
    server.stop()


def test_environment_from_notebook_with_audit(browser, audited_lab, shot):
    lab = audited_lab
    if call(lab, "POST", "suggestions", {"code": "import six\n"})[0] == 404:
        pytest.skip("this server has no POST /envmgr/api/suggestions yet (issue 16's backend)")
    notebook = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}, cells=[
        nbformat.v4.new_code_cell("%matplotlib inline\nimport six\nimport yaml\nimport os, sys"),
        nbformat.v4.new_code_cell("import envmgr_no_such_module_xyz\n!echo shell lines are skipped"),
    ])
    nbformat.write(notebook, lab.notebooks / "Trip Analysis.ipynb")
    page = open_lab(browser, lab)
    page.evaluate("async () => { await window.jupyterapp.commands.execute('docmanager:open', {path: 'Trip Analysis.ipynb'}); }")  # the widget itself is not serialisable
    panel = page.locator(".jp-NotebookPanel:visible")
    expect(panel).to_be_visible()

    # The notebook's toolbar button opens the create form prefilled, the unknown import shown.
    button = panel.locator('.jp-envmgr-from-notebook [title="New environment from this notebook"]')  # its tooltip
    button.click()
    form = page.get_by_role("form", name="Create an environment")
    expect(form).to_be_visible()
    expect(form.get_by_label("Name", exact=True)).to_have_value("trip-analysis")
    packages = form.get_by_label("Packages (requirements.txt)")
    value = packages.input_value()
    names = {line.split("=")[0].split(">")[0].split("<")[0].strip().lower() for line in value.splitlines()}
    assert {"six", "pyyaml"} <= names, value
    expect(form.locator(".jp-envmgr-unresolved")).to_contain_text("envmgr_no_such_module_xyz")
    shot(page, "form-from-notebook")
    form.get_by_role("button", name="Create", exact=True).click()

    # Built: the audit finds the vulnerable six; a badge in the view and in the list.
    view = view_of(page, "trip-analysis")
    expect(view.locator('.jp-envmgr-view-head .jp-envmgr-badge[data-status="ready"]')).to_be_visible(timeout=180000)
    expect(view.locator(".jp-envmgr-view-head .jp-envmgr-audit-found")).to_have_attribute("data-count", "1", timeout=30000)
    side = open_panel(page)
    expect(side.locator('.jp-envmgr-item[data-name="trip-analysis"] .jp-envmgr-audit-found')).to_be_visible()
    check_layout(side)

    # The findings with the fixed version, and the update they call for, proposed as an edit.
    view.get_by_role("tab", name="Packages").click()
    findings = view.get_by_role("table", name="Vulnerabilities")
    expect(findings).to_contain_text("GHSA-envm-test-0001")
    expect(findings).to_contain_text("99.0")
    shot(page, "view-audit")
    view.get_by_role("button", name="Update to fixed versions").click()
    edit = view.get_by_role("form", name="Edit trip-analysis")
    assert "six>=99.0" in edit.get_by_label("Packages (requirements.txt)").input_value().split()
    expect(edit.get_by_role("button", name="Save and build revision 2")).to_be_visible()
    edit.get_by_role("button", name="Discard").click()

    assert call(lab, "DELETE", "environments/trip-analysis")[0] == 204
