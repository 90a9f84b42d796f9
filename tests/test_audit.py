"""Audited locks: OSV matching per range kind, the three database kinds, and a vulnerable pin end to end."""
from __future__ import annotations

import copy
import json
import os
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from jupyter_envmgr import audit
from jupyter_envmgr.audit import Auditor, DatabaseUnavailable, findings, in_range, lock_packages

# Shapes of real OSV records (GitHub advisories as osv.dev serves them), trimmed to the fields we read.
REQUESTS = {  # GHSA-j8r2-6x86-q33q, CVE-2023-32681: Proxy-Authorization leaked on redirects
    "schema_version": "1.4.0", "id": "GHSA-j8r2-6x86-q33q", "modified": "2023-11-08T04:12:18Z",
    "published": "2023-05-22T20:36:32Z", "aliases": ["CVE-2023-32681", "PYSEC-2023-74"],
    "summary": "Unintended leak of Proxy-Authorization header in requests",
    "affected": [{"package": {"ecosystem": "PyPI", "name": "requests", "purl": "pkg:pypi/requests"},
                  "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "2.3.0"}, {"fixed": "2.31.0"}]}],
                  "versions": ["2.3.0", "2.30.0"]}],
}
PYYAML = {  # GHSA-8q59-q68h-6hv4, CVE-2020-14343: arbitrary code execution in full_load
    "id": "GHSA-8q59-q68h-6hv4", "aliases": ["CVE-2020-14343"], "modified": "2021-03-25T00:00:00Z",
    "summary": "Improper Input Validation in PyYAML",
    "affected": [{"package": {"ecosystem": "PyPI", "name": "PyYAML"},
                  "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "5.4"}]}]}],
}
SEMVER_NPM = {  # GHSA-c2qf-rxjj-qqgw, CVE-2022-25883: semver ReDoS, three SEMVER intervals
    "id": "GHSA-c2qf-rxjj-qqgw", "aliases": ["CVE-2022-25883"], "modified": "2023-07-10T00:00:00Z",
    "summary": "semver vulnerable to Regular Expression Denial of Service",
    "affected": [{"package": {"ecosystem": "npm", "name": "semver"},
                  "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "5.7.2"}]}]},
                 {"package": {"ecosystem": "npm", "name": "semver"},
                  "ranges": [{"type": "SEMVER", "events": [{"introduced": "6.0.0"}, {"fixed": "6.3.1"}]}]},
                 {"package": {"ecosystem": "npm", "name": "semver"},
                  "ranges": [{"type": "SEMVER", "events": [{"introduced": "7.0.0"}, {"fixed": "7.5.2"}]}]}],
}
LAST_AFFECTED = {  # a record with no fix yet: the schema's last_affected upper bound
    "id": "GHSA-3f63-hfp8-52jq", "aliases": ["CVE-2023-44271"], "modified": "2024-01-01T00:00:00Z",
    "summary": "Uncontrolled resource consumption in Pillow's ImageFont",
    "affected": [{"package": {"ecosystem": "PyPI", "name": "pillow"},
                  "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"last_affected": "10.0.1"}]}]}],
}
VULN_PKG = {  # the package the end-to-end test installs from the tests' own index
    "id": "PYSEC-0000-0001", "aliases": ["CVE-0000-00001"], "modified": "2026-11-01T00:00:00Z",
    "summary": "envmgr-vuln-pkg before 1.1 runs code from its input",
    "affected": [{"package": {"ecosystem": "PyPI", "name": "envmgr_vuln_pkg"},
                  "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0.5"}, {"fixed": "1.1"}, {"introduced": "2.0"}, {"fixed": "2.0.3"}]}]}],
}
RECORDS = [REQUESTS, PYYAML, SEMVER_NPM, LAST_AFFECTED, VULN_PKG]


def osv_dir(path) -> str:
    os.makedirs(path, exist_ok=True)
    for record in RECORDS:
        with open(os.path.join(path, f"{record['id']}.json"), "w") as f:
            json.dump(record, f)
    with open(os.path.join(path, "damaged.json"), "w") as f:
        f.write("{not json")
    for i, bad in enumerate([  # damaged shapes naming a real pin: skipped, never a 500, never hiding the others
        [REQUESTS],
        {"id": "BAD-1", "affected": "requests"},
        {"id": "BAD-2", "affected": [{"package": {"ecosystem": "PyPI", "name": "requests"}, "ranges": [{"events": [{"introduced": 0}]}]}]},
        {"id": "BAD-3", "affected": [{"package": {"ecosystem": "PyPI", "name": "requests"}, "versions": "2.28.2"}]},
        {"id": "BAD-4", "affected": [{"package": {"ecosystem": "PyPI", "name": "requests"},
                                      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0", "fixed": "9"}]}]}]},
    ]):
        with open(os.path.join(path, f"bad-{i}.json"), "w") as f:
            json.dump(bad, f)
    return str(path)


# ---------------------------------------------------------------- one test per range kind


def test_ecosystem_range_introduced_fixed():
    rng = REQUESTS["affected"][0]["ranges"][0]
    assert [in_range(v, rng) for v in ("2.2.1", "2.3.0", "2.28.2", "2.31.0rc1", "2.31.0", "2.32.3")] == \
        [False, True, True, True, False, False]
    found = findings("requests", "2.28.2", ["PyPI"], REQUESTS)
    assert found == {"package": "requests", "version": "2.28.2", "id": "GHSA-j8r2-6x86-q33q",
                     "aliases": ["CVE-2023-32681", "PYSEC-2023-74"], "summary": REQUESTS["summary"], "fixed_in": ["2.31.0"]}


def test_ecosystem_introduced_zero_and_several_intervals():
    rng = VULN_PKG["affected"][0]["ranges"][0]
    assert [in_range(v, rng) for v in ("0.4", "0.5", "1.0", "1.1", "1.9", "2.0", "2.0.2", "2.0.3")] == \
        [False, True, True, False, False, True, True, False]
    assert in_range("0.1", PYYAML["affected"][0]["ranges"][0]) and not in_range("5.4", PYYAML["affected"][0]["ranges"][0])
    assert findings("envmgr-vuln-pkg", "2.0.1", ["PyPI"], VULN_PKG)["fixed_in"] == ["2.0.3"]


def test_semver_range():
    assert [bool(findings("semver", v, ["npm"], SEMVER_NPM)) for v in
            ("5.7.1", "5.7.2", "6.0.0", "6.3.0", "6.3.1", "7.0.0-rc.1", "7.5.1", "7.5.2", "7.5.2+build.5", "8.0.0")] == \
        [True, False, True, True, False, False, True, False, False, False]
    assert findings("semver", "7.5.1", ["npm"], SEMVER_NPM)["fixed_in"] == ["7.5.2"]
    # semver precedence: 1.0.0-alpha < 1.0.0-alpha.1 < 1.0.0-beta.2 < 1.0.0-beta.11 < 1.0.0-rc.1 < 1.0.0
    order = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0"]
    assert all(audit.compare(a, b, "SEMVER") < 0 for a, b in zip(order, order[1:]))
    assert findings("semver", "7.5.1", ["PyPI"], SEMVER_NPM) is None  # another ecosystem


def test_last_affected():
    rng = LAST_AFFECTED["affected"][0]["ranges"][0]
    assert [in_range(v, rng) for v in ("9.5.0", "10.0.1", "10.0.2", "10.1.0")] == [True, True, False, False]
    assert findings("Pillow", "10.0.0", ["PyPI"], LAST_AFFECTED)["fixed_in"] == []


def test_limit():
    rng = {"type": "ECOSYSTEM", "events": [{"introduced": "1.0"}, {"limit": "1.5"}]}
    assert [in_range(v, rng) for v in ("0.9", "1.0", "1.4.9", "1.5", "2.0")] == [False, True, True, False, False]
    star = {"type": "ECOSYSTEM", "events": [{"introduced": "1.0"}, {"limit": "*"}]}
    assert in_range("9.0", star)


def test_versions_list():
    only_listed = copy.deepcopy(REQUESTS)
    del only_listed["affected"][0]["ranges"]
    assert findings("requests", "2.30.0", ["PyPI"], only_listed)["fixed_in"] == []
    assert findings("requests", "2.29.0", ["PyPI"], only_listed) is None
    assert findings("requests", "2.30", ["PyPI"], only_listed)  # 2.30 == 2.30.0 under PEP 440


def test_withdrawn_records_and_other_packages_are_ignored():
    withdrawn = dict(REQUESTS, withdrawn="2023-06-01T00:00:00Z")
    assert findings("requests", "2.28.2", ["PyPI"], withdrawn) is None
    assert findings("requests-toolbelt", "2.28.2", ["PyPI"], REQUESTS) is None


def test_lock_packages_pip_and_conda():
    pip = "numpy==2.1.3\nrequests==2.28.2\n-e file:///src/x\nsix @ file:///wheels/six.whl\n"
    assert lock_packages(pip) == [("numpy", "2.1.3", "pip"), ("requests", "2.28.2", "pip")]
    conda = (
        "# jupyter-envmgr lock of a conda environment\n# platform: linux-64\n@EXPLICIT\n"
        "https://conda.example/conda-forge/linux-64/python-3.12.7-hc5c86c4_0_cpython.conda#sha256:abc\n"
        "https://conda.example/conda-forge/noarch/pyyaml-5.3.1-py_0.tar.bz2#0123456789abcdef\n"
        "# pip requests==2.28.2\n"
    )
    assert lock_packages(conda) == [("python", "3.12.7", "conda"), ("pyyaml", "5.3.1", "conda"), ("requests", "2.28.2", "pip")]


# ---------------------------------------------------------------- databases


PINS = [("requests", "2.28.2", "pip"), ("PyYAML", "5.3.1", "conda"), ("numpy", "2.1.3", "pip"),
        ("envmgr-vuln-pkg", "1.0", "pip")]
EXPECTED = [("envmgr-vuln-pkg", "PYSEC-0000-0001", ["1.1"]), ("PyYAML", "GHSA-8q59-q68h-6hv4", ["5.4"]),
            ("requests", "GHSA-j8r2-6x86-q33q", ["2.31.0"])]


def summary(found):
    return [(f["package"], f["id"], f["fixed_in"]) for f in found]


def test_directory_database(tmp_path):
    auditor = Auditor(osv_dir(tmp_path / "osv"))
    assert summary(auditor.audit(PINS)) == EXPECTED
    with open(tmp_path / "osv" / "numpy.json", "w") as f:  # a new advisory is seen without a restart
        json.dump({"id": "GHSA-test-numpy", "affected": [{"package": {"ecosystem": "PyPI", "name": "numpy"},
                   "versions": ["2.1.3"]}]}, f)
    assert "GHSA-test-numpy" in [f["id"] for f in auditor.audit(PINS)]


def test_zip_export(tmp_path):
    path = tmp_path / "all.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for record in RECORDS:
            zf.writestr(f"{record['id']}.json", json.dumps(record))
    assert summary(Auditor(str(path)).audit(PINS)) == EXPECTED


def test_missing_or_broken_database_is_unavailable(tmp_path):
    with pytest.raises(DatabaseUnavailable, match="cannot be read"):
        Auditor(str(tmp_path / "nowhere")).audit(PINS)
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(DatabaseUnavailable):
        Auditor(str(tmp_path / "bad.zip")).audit(PINS)


class QueryService:
    """An OSV-compatible query service (POST /v1/query) over records, as osv.dev answers, with pages."""

    def __init__(self, records):
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                pkg = body["package"]
                hits = [r for r in records if findings(pkg["name"], body["version"], [pkg["ecosystem"]], r)]
                page = int(body.get("page_token") or 0)
                answer = {"vulns": hits[page:page + 1]} if hits else {}
                if page + 1 < len(hits):
                    answer["next_page_token"] = str(page + 1)
                service.queries.append(body)
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.queries = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_query_service(tmp_path):
    twice = dict(copy.deepcopy(PYYAML), id="GHSA-second-yaml")
    service = QueryService(RECORDS + [twice])
    found = Auditor(service.url).audit(PINS)
    assert summary(found) == EXPECTED[:2] + [("PyYAML", "GHSA-second-yaml", ["5.4"])] + EXPECTED[2:]
    assert {"name": "PyYAML", "ecosystem": "conda"} in [q["package"] for q in service.queries]  # conda: both
    assert any(q.get("page_token") for q in service.queries)
    service.server.shutdown()
    service.server.server_close()
    with pytest.raises(DatabaseUnavailable, match="did not answer"):
        Auditor(service.url).audit(PINS)


def test_results_kept_beside_the_log_and_reused_while_fresh(tmp_path):
    auditor = Auditor(osv_dir(tmp_path / "osv"))
    logs = tmp_path / "logs"
    logs.mkdir()
    lock, log = tmp_path / "lock.txt", logs / "rev-0002.log"
    lock.write_text("requests==2.28.2\n")
    first = audit.fresh_or_audit(auditor, 2, str(lock), str(log), 3600)
    kept = json.loads((logs / "rev-0002.audit.json").read_text())
    assert kept.pop("database_version") and kept == first
    lock.write_text("requests==2.31.0\n")
    assert audit.fresh_or_audit(auditor, 2, str(lock), str(log), 3600) == first  # fresh: kept
    assert audit.fresh_or_audit(auditor, 2, str(lock), str(log), 0)["vulnerabilities"] == []  # stale: checked anew
    target = [(2, str(lock), str(log))]
    assert audit.audit_all(auditor, target, 3600) == 0
    assert audit.audit_all(auditor, target, 0) == 1
    # A new advisory in the database makes every kept result stale at once.
    lock.write_text("requests==2.28.2\n")
    assert audit.audit_all(auditor, target, 3600) == 0
    (tmp_path / "osv" / "new.json").write_text(json.dumps(dict(REQUESTS, id="GHSA-new-one")))
    assert audit.audit_all(auditor, target, 3600) == 1
    assert [v["id"] for v in audit.fresh_or_audit(auditor, 2, str(lock), str(log), 3600)["vulnerabilities"]] == \
        ["GHSA-j8r2-6x86-q33q", "GHSA-new-one"]


# ---------------------------------------------------------------- the route, end to end


@pytest.fixture
def osv_root(tmp_path):
    return osv_dir(tmp_path / "osv-db")


@pytest.fixture
def envmgr_overrides(osv_root):
    return {"advisory_db": osv_root}


@pytest.fixture
def vuln_index(local_index):
    local_index.add("envmgr-vuln-pkg", "1.0")
    local_index.add("envmgr-vuln-pkg", "1.1")
    return local_index


@pytest.mark.slow
async def test_vulnerable_pin_shows_in_audit_with_the_fixed_version(api, vuln_index, envmgr_root):
    await api.create({"name": "vulnerable", "packages": "envmgr-vuln-pkg==1.0\n", "index_urls": [vuln_index.url]})
    record = await api.wait("vulnerable")
    assert record["status"] == "ready", record["message"]
    data = await api.ok("GET", "environments/vulnerable/audit", expect=(200,))
    assert data["revision"] == 1 and data["checked"] and data["database"].endswith("osv-db")
    assert data["vulnerabilities"] == [{"package": "envmgr-vuln-pkg", "version": "1.0", "id": "PYSEC-0000-0001",
                                        "aliases": ["CVE-0000-00001"], "summary": VULN_PKG["summary"], "fixed_in": ["1.1"]}]
    kept = json.load(open(os.path.join(envmgr_root, "envs", "default", "vulnerable", "logs", "rev-0001.audit.json")))
    assert kept.pop("database_version") and kept == data

    # "Update to fixed versions": the PATCH the panel proposes; the new revision audits clean.
    await api.ok("PATCH", "environments/vulnerable", {"packages": "envmgr-vuln-pkg==1.1\n"}, expect=(202,))
    record = await api.wait("vulnerable")
    assert record["status"] == "ready" and record["ready_revision"] == 2
    assert (await api.ok("GET", "environments/vulnerable/audit", expect=(200,)))["vulnerabilities"] == []
    old = await api.ok("GET", "environments/vulnerable/audit", expect=(200,), revision=1)
    assert old["revision"] == 1 and old["vulnerabilities"][0]["fixed_in"] == ["1.1"]

    for params, status in [({"revision": "7"}, 422), ({"revision": "x"}, 422)]:
        code, err = await api.call("GET", "environments/vulnerable/audit", **params)
        assert code == status and err["field"] == "revision", err
    assert (await api.call("GET", "environments/nobody/audit"))[0] == 404


@pytest.mark.slow
@pytest.mark.parametrize("envmgr_overrides", [{}])
async def test_no_database_is_503(api, vuln_index):
    await api.create({"name": "unaudited", "packages": "envmgr-vuln-pkg==1.0\n", "index_urls": [vuln_index.url]})
    assert (await api.wait("unaudited"))["status"] == "ready"
    code, err = await api.call("GET", "environments/unaudited/audit")
    assert code == 503 and err["reason"] == "no_advisory_db" and "advisory_db" in err["message"]


@pytest.mark.slow
@pytest.mark.parametrize("envmgr_overrides", [{"advisory_db": "http://127.0.0.1:9/osv"}])
async def test_unreachable_service_is_503_and_the_environment_stays_ready(api, vuln_index):
    await api.create({"name": "offline", "packages": "envmgr-vuln-pkg==1.0\n", "index_urls": [vuln_index.url]})
    assert (await api.wait("offline"))["status"] == "ready"
    code, err = await api.call("GET", "environments/offline/audit")
    assert code == 503 and err["reason"] == "advisory_db_unavailable" and err["message"]
    assert (await api.get("offline"))["status"] == "ready"


@pytest.mark.slow
def test_schedule_audits_new_revisions_without_a_request(servers, tmp_path, vuln_index):
    """The server's own pass: a ready revision's audit is kept beside its log with no GET."""
    server = servers("scheduled", advisory_db=osv_dir(tmp_path / "osv"), audit_interval=2.0)
    server.client.create({"name": "scanned", "packages": "envmgr-vuln-pkg==1.0\n", "index_urls": [vuln_index.url]})
    assert server.client.wait("scanned", timeout=180)["status"] == "ready"
    kept = os.path.join(servers.root, "envs", "default", "scanned", "logs", "rev-0001.audit.json")
    deadline = time.monotonic() + 30
    while not os.path.exists(kept):
        assert time.monotonic() < deadline, "the schedule did not audit the new revision"
        time.sleep(0.2)
    assert [v["id"] for v in json.load(open(kept))["vulnerabilities"]] == ["PYSEC-0000-0001"]
