"""The panel on a server of two clusters: a real `jupyter lab` with the Kubernetes backend, whose clusters are
two kubeconfig contexts of the Kubernetes stand-in (tests/kubernetes/standin) with their own namespaces and
claims. The cluster select sits before the namespace, offers each cluster's namespaces, fits a 250 px sidebar,
and a create in the second cluster reaches the server with that cluster.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from conftest import Lab, open_lab
from playwright.sync_api import expect
from test_panel import (
    LAYOUT_PROBLEMS,
    call,
    check_layout,
    open_panel,
    view_of,
)

pytestmark = [pytest.mark.ui, pytest.mark.slow]

KUBERNETES_TESTS = Path(__file__).resolve().parent.parent / "kubernetes"
PVC = "jupyter-envmgr"
CLUSTERS = {"east": ["team-a", "shared-a"], "west": ["team-b"]}


def kubernetes_helpers():
    """tests/kubernetes/conftest.py (the stand-in's image and environment) under a name of its own."""
    spec = importlib.util.spec_from_file_location("envmgr_k8s_conftest", KUBERNETES_TESTS / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    k8s = kubernetes_helpers()
    from standin.control import StandIn  # on sys.path since the module above ran

    base = tmp_path_factory.mktemp("clusters")
    s = StandIn(str(base / "standin"), k8s.image_path())
    roots = {name: base / f"{name}-root" for name in CLUSTERS}
    for cluster, namespaces in CLUSTERS.items():
        roots[cluster].mkdir()
        for ns in namespaces:
            s.namespace(ns)
            s.pvc(PVC, str(roots[cluster]), namespace=ns)
    # One kubeconfig, two contexts: the stand-in seen as two clusters, each with its own default namespace.
    kubeconfig = base / "kubeconfig.json"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "east",
        "clusters": [{"name": "standin", "cluster": {"server": s.url}}],
        "users": [{"name": "tester", "user": {"token": "standin-token"}}],
        "contexts": [{"name": c, "context": {"cluster": "standin", "user": "tester", "namespace": ns[0]}}
                     for c, ns in CLUSTERS.items()],
    }))
    s.kubeconfig_two = str(kubeconfig)
    s.roots = roots
    s.k8s = k8s
    yield s
    s.close()


@pytest.fixture(scope="module")
def lab2(standin, tmp_path_factory):
    base = tmp_path_factory.mktemp("lab-clusters")
    k8s = standin.k8s
    config = {"EnvManagerApp": {
        "backend": "kubernetes",
        "namespaces": CLUSTERS["east"],
        "kubernetes_pvc_name": PVC,
        "kubernetes_python_interpreters": {k8s.PYTHON_VERSION: sys.executable},
        "kubernetes_api_timeout": 2.0,
        "kubernetes_api_retries": 2,
        "kubernetes_api_retry_backoff": 0.2,
        "kubernetes_watch_timeout": 15,
        "kubernetes_extra_env": {k: os.environ[k] for k in k8s.NETWORK_ENV if k in os.environ},
        "clusters": {
            name: {"context": name, "config_file": standin.kubeconfig_two, "namespaces": namespaces,
                   "pvc_name": PVC, "mount_path": str(standin.roots[name])}
            for name, namespaces in CLUSTERS.items()
        },
    }}
    server = Lab(base, config=config)
    yield server
    server.stop()


def options(select) -> list:
    return select.locator("option").all_inner_texts()


def query(url: str) -> dict:
    return {k: v[0] for k, v in parse_qs(urlparse(url).query).items()}


def wait_until(page, predicate, what, seconds=20):
    for _ in range(int(seconds * 4)):
        if predicate():
            return
        page.wait_for_timeout(250)
    raise AssertionError(what() if callable(what) else f"{what}: not seen within {seconds} s")


def fact(view, term):
    """The value of one fact of the Overview (a <dt> and the <dd> after it)."""
    return view.locator(f'.jp-envmgr-facts dt:text-is("{term}") + dd')


def clone(page, view, name):
    """Clone the environment of `view` under `name` (the dialog asks for it); the request the page sent."""
    view.get_by_role("button", name="Clone").click()
    dialog = page.locator(".jp-Dialog")
    dialog.locator("input").fill(name)
    with page.expect_response(lambda r: r.request.method == "POST" and "/actions" in r.url) as answer:
        dialog.get_by_role("button", name="Clone").click()
    assert answer.value.status == 202, answer.value.text()
    return answer.value.request


def test_the_cluster_select_offers_each_clusters_namespaces_and_creates_there(browser, lab2, shot):
    assert [c["name"] for c in call(lab2, "GET", "info")[1]["clusters"]] == ["east", "west"]
    page = open_lab(browser, lab2)
    sent = []  # what the page asks the envmgr API for
    page.on("request", lambda r: sent.append(r) if "/envmgr/api/" in r.url else None)
    panel = open_panel(page)
    assert round(panel.bounding_box()["width"]) == 250

    # The list: a cluster select before the namespace, which offers the chosen cluster's namespaces only.
    cluster, namespace = panel.get_by_label("Cluster", exact=True), panel.get_by_label("Namespace", exact=True)
    expect(cluster).to_have_value("east")
    assert options(cluster) == ["cluster: east", "cluster: west"]
    assert options(namespace) == ["namespace: team-a", "namespace: shared-a"]
    assert cluster.evaluate("(c, n) => !!(c.compareDocumentPosition(n) & Node.DOCUMENT_POSITION_FOLLOWING)", namespace.element_handle())
    check_layout(panel)
    cluster.select_option("west")
    expect(namespace).to_have_value("team-b")
    assert options(namespace) == ["namespace: team-b"]
    lists = lambda: [query(r.url) for r in sent if urlparse(r.url).path.endswith("/envmgr/api/environments") and r.method == "GET"]
    wait_until(page, lambda: {"namespace": "team-b", "cluster": "west"} in lists(), "the list of team-b in west")
    check_layout(panel)
    cluster.select_option("east")
    expect(namespace).to_have_value("team-a")

    # The form in the main area: Cluster before Namespace, the first cluster by default; switching it
    # offers that cluster's namespaces and picks its first.
    panel.get_by_role("button", name="New", exact=True).click()
    form = page.get_by_role("form", name="Create an environment")
    form_cluster, form_namespace = form.get_by_label("Cluster", exact=True), form.get_by_label("Namespace", exact=True)
    expect(form_cluster).to_have_value("east")
    assert options(form_cluster) == ["east", "west"]
    assert options(form_namespace) == ["team-a", "shared-a"]
    assert form.evaluate("f => [...f.querySelectorAll('select')].slice(0, 2).map(s => s.id)") == ["envmgr-cluster", "envmgr-namespace"]
    form.get_by_label("Name", exact=True).fill("in-east")
    form_namespace.select_option("shared-a")
    form_cluster.select_option("west")
    expect(form_namespace).to_have_value("team-b")
    assert options(form_namespace) == ["team-b"]
    form_cluster.select_option("east")
    expect(form_namespace).to_have_value("team-a")  # the cluster's first, not the namespace picked before
    expect(form.get_by_text("checking…")).to_have_count(0)
    errors = form.locator(".jp-envmgr-error")
    wait_until(page, lambda: errors.count() == 0, lambda: f"the form still says {errors.all_inner_texts()}")
    shot(page, "form-cluster")

    # At about 250 px of main area the form still fits: labels and selects inside, nothing scrolls sideways.
    page.set_viewport_size({"width": 580, "height": 900})  # a main area of about 250 px
    page.wait_for_timeout(300)
    assert form.evaluate("f => f.getBoundingClientRect().width") < 300
    shot(page, "form-cluster-250")
    assert form.evaluate(LAYOUT_PROBLEMS) == []
    page.set_viewport_size({"width": 1400, "height": 900})
    form_cluster.select_option("west")

    # A cluster the server does not have (the page's /info is stale): the server's refusal sits at the select.
    form_cluster.evaluate("s => s.append(new Option('gone', 'gone'))")
    form_cluster.select_option("gone")
    expect(form.locator("#envmgr-cluster-error")).to_contain_text("not a cluster of this server")
    expect(form_cluster).to_have_attribute("aria-invalid", "true")
    expect(form.get_by_role("button", name="Create", exact=True)).to_be_disabled()
    form_cluster.select_option("west")
    expect(form.locator("#envmgr-cluster-error")).to_have_count(0)

    # The dry run of the second cluster carries it, in the query and the body.
    form.get_by_label("Name", exact=True).fill("in-west")
    dry = lambda: [r for r in sent if r.method == "POST" and "dry_run=1" in r.url and (r.post_data_json or {}).get("name") == "in-west"]
    wait_until(page, lambda: dry() and dry()[-1].response(), "the dry run of in-west")
    last = dry()[-1]
    assert query(last.url) == {"namespace": "team-b", "cluster": "west", "dry_run": "1"}
    assert {k: last.post_data_json[k] for k in ("cluster", "namespace")} == {"cluster": "west", "namespace": "team-b"}
    status, body = call(lab2, "GET", "environments?namespace=team-b&cluster=west")
    assert status == 200, body

    # Created there: the POST names the cluster, the record says it, the list and the Overview show it.
    errors = form.locator(".jp-envmgr-error")
    wait_until(page, lambda: errors.count() == 0, lambda: f"the form still says {errors.all_inner_texts()}")
    with page.expect_request(lambda r: r.method == "POST" and "dry_run" not in r.url and "/envmgr/api/environments" in r.url) as created:
        form.get_by_role("button", name="Create", exact=True).click()
    assert query(created.value.url) == {"namespace": "team-b", "cluster": "west"}
    assert created.value.response().status == 202
    assert created.value.post_data_json["cluster"] == "west"
    status, record = call(lab2, "GET", "environments/in-west?namespace=team-b&cluster=west")
    assert status == 200 and (record["cluster"], record["namespace"]) == ("west", "team-b")
    view = view_of(page, "in-west")
    view.get_by_role("tab", name="Overview").click()  # a new environment opens on its build log
    expect(fact(view, "Cluster")).to_have_text("west")
    expect(cluster).to_have_value("west")  # the list followed the new environment's namespace
    expect(panel.locator('.jp-envmgr-item[data-name="in-west"] .jp-envmgr-meta')).to_contain_text("west")
    # Its clone stays in its cluster.
    assert query(clone(page, view, "in-west-copy").url) == {"namespace": "team-b", "cluster": "west"}
    status, copy = call(lab2, "GET", "environments/in-west-copy?namespace=team-b&cluster=west")
    assert status == 200 and copy["cluster"] == "west", copy
    expect(view_of(page, "in-west-copy")).to_be_visible()
    for r in sent:
        path = urlparse(r.url).path
        if "/environments/in-west" in path:
            assert query(r.url).get("cluster") == "west", r.url
    for name in ("in-west", "in-west-copy"):
        assert call(lab2, "DELETE", f"environments/{name}?namespace=team-b&cluster=west")[0] == 204


def test_a_create_in_the_first_cluster_names_it_and_shows_it(browser, lab2, shot):
    page = open_lab(browser, lab2)
    sent = []
    page.on("request", lambda r: sent.append(r) if "/envmgr/api/" in r.url else None)
    panel = open_panel(page)
    panel.get_by_role("button", name="New", exact=True).click()
    form = page.get_by_role("form", name="Create an environment")
    form.get_by_label("Name", exact=True).fill("in-east")
    form.get_by_label("Namespace", exact=True).select_option("shared-a")
    create = form.get_by_role("button", name="Create", exact=True)
    expect(create).to_be_enabled()
    with page.expect_request(lambda r: r.method == "POST" and "dry_run" not in r.url and "/envmgr/api/environments" in r.url) as created:
        create.click()
    assert query(created.value.url) == {"namespace": "shared-a", "cluster": "east"}
    assert created.value.response().status == 202
    assert created.value.post_data_json["cluster"] == "east"
    view = view_of(page, "in-east")
    view.get_by_role("tab", name="Overview").click()  # a new environment opens on its build log
    expect(fact(view, "Cluster")).to_have_text("east")
    status, record = call(lab2, "GET", "environments/in-east?namespace=shared-a&cluster=east")
    assert status == 200 and (record["cluster"], record["namespace"]) == ("east", "shared-a")
    expect(panel.get_by_label("Namespace", exact=True)).to_have_value("shared-a")
    expect(panel.locator('.jp-envmgr-item[data-name="in-east"] .jp-envmgr-meta')).to_contain_text("· east")
    check_layout(panel)
    shot(page, "list-clusters-250")
    # Clone, from the view: the action names the source's cluster; the copy is in the same namespace and cluster.
    cloned = clone(page, view, "in-east-copy")
    assert urlparse(cloned.url).path.endswith("/environments/in-east/actions")
    assert query(cloned.url) == {"namespace": "shared-a", "cluster": "east"}
    assert cloned.post_data_json == {"action": "clone", "name": "in-east-copy"}
    expect(view_of(page, "in-east-copy")).to_be_visible()
    status, copy = call(lab2, "GET", "environments/in-east-copy?namespace=shared-a&cluster=east")
    assert status == 200 and (copy["cluster"], copy["namespace"]) == ("east", "shared-a")
    expect(panel.locator('.jp-envmgr-item[data-name="in-east-copy"]')).to_be_visible()
    shot(page, "view-clone")
    # every per-environment request of the page named the cluster
    per_env = [r.url for r in sent if "/envmgr/api/environments/in-east" in r.url]
    assert per_env and all(query(u).get("cluster") == "east" for u in per_env), per_env
    for name in ("in-east", "in-east-copy"):
        assert call(lab2, "DELETE", f"environments/{name}?namespace=shared-a&cluster=east")[0] == 204


def test_one_name_in_the_first_namespaces_of_two_clusters_is_refused(lab2):
    """Both would be kernel `envmgr-NAME` (short in each cluster's first namespace): the second gets 409."""
    status, _ = call(lab2, "POST", "environments?namespace=team-a&cluster=east", {"name": "twin", "packages": ""})
    assert status == 202
    status, error = call(lab2, "POST", "environments?namespace=team-b&cluster=west&dry_run=1", {"name": "twin"})
    assert status == 409 and error["reason"] == "name_taken" and "envmgr-twin" in error["message"], error
    status, error = call(lab2, "POST", "environments?namespace=team-b&cluster=west", {"name": "twin"})
    assert status == 409, error
    assert call(lab2, "GET", "environments/twin?namespace=team-b&cluster=west")[0] == 404  # nothing written
    status, _ = call(lab2, "POST", "environments?namespace=shared-a&cluster=east&dry_run=1", {"name": "twin"})
    assert status == 200  # a long kernel name there (envmgr-shared-a.twin): no clash
    assert call(lab2, "DELETE", "environments/twin?namespace=team-a&cluster=east")[0] == 204
