"""A conda revision's lock audited: conda packages by name and version, and its pip sub-list."""
import json
import os

import pytest


@pytest.fixture
def envmgr_overrides(tmp_path):
    """An OSV directory naming the test channel's package (as advisories name Python libraries) and ipykernel."""
    db = tmp_path / "osv"
    db.mkdir()
    records = [
        {"id": "PYSEC-0000-0002", "aliases": [], "summary": "envmgr-conda-demo before 1.1 is unsafe",
         "affected": [{"package": {"ecosystem": "PyPI", "name": "envmgr-conda-demo"},
                       "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.1"}]}]}]},
        {"id": "GHSA-test-ipykernel", "aliases": ["CVE-0000-00002"], "summary": "every ipykernel (a test record)",
         "affected": [{"package": {"ecosystem": "PyPI", "name": "ipykernel"},
                       "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]}]},
    ]
    for record in records:
        (db / f"{record['id']}.json").write_text(json.dumps(record))
    return {"advisory_db": str(db)}


@pytest.mark.slow
async def test_conda_lock_is_audited(api, envmgr_root, conda_channel):
    packages = "channels:\n  - envmgr-test-channel\ndependencies:\n  - envmgr-conda-demo=1.0\n  - pip:\n    - ipykernel\n"
    await api.create({"name": "conda-audited", "manager": "conda", "python": "3.11", "packages": packages})
    record = await api.wait("conda-audited")
    assert record["status"] == "ready", record["message"]
    found = (await api.ok("GET", "environments/conda-audited/audit", expect=(200,)))["vulnerabilities"]
    by_id = {f["id"]: f for f in found}
    assert set(by_id) == {"PYSEC-0000-0002", "GHSA-test-ipykernel"}, found
    assert by_id["PYSEC-0000-0002"]["package"] == "envmgr-conda-demo" and by_id["PYSEC-0000-0002"]["version"] == "1.0"
    assert by_id["PYSEC-0000-0002"]["fixed_in"] == ["1.1"] and by_id["GHSA-test-ipykernel"]["fixed_in"] == []
    assert os.path.exists(os.path.join(envmgr_root, "envs", "default", "conda-audited", "logs", "rev-0001.audit.json"))
