"""Know before you change (issue 25): the solve diff of a dry run, pin, and who uses which revision.

Real servers, the local index the tests build, real kernels.
"""
from __future__ import annotations

import json
import os

import pytest


def demo(changes: dict, name: str = "envmgr-demo-pkg") -> dict:
    return next(p for p in changes["packages"] if p["name"] == name)


def env_json(root: str, name: str) -> bytes:
    with open(os.path.join(root, "envs", "default", name, "env.json"), "rb") as f:
        return f.read()


async def test_dry_runs_show_upgrade_downgrade_and_python_and_write_nothing(api, local_index, envmgr_root):
    index = [local_index.url]
    await api.create({"name": "diffed", "packages": "envmgr-demo-pkg==1.0\n", "index_urls": index})
    first = await api.wait("diffed")
    assert first["status"] == "ready", first["message"]
    before = env_json(envmgr_root, "diffed")

    up = await api.ok("PATCH", "environments/diffed", {"packages": "envmgr-demo-pkg==2.0\nenvmgr-extra-pkg\n"}, expect=(200,), dry_run=1)
    assert up["revision"] == 2 and up["status"] == "pending" and up["changes"]["python"] is None
    assert demo(up["changes"]) == {"name": "envmgr-demo-pkg", "from": "1.0", "to": "2.0", "change": "upgraded",
                                   "major": True, "requested": True}
    assert demo(up["changes"], "envmgr-extra-pkg") == {"name": "envmgr-extra-pkg", "from": None, "to": "0.3",
                                                       "change": "added", "major": False, "requested": True}
    assert [p["name"] for p in up["changes"]["packages"]] == ["envmgr-demo-pkg", "envmgr-extra-pkg"]  # ipykernel alike

    offered = (await api.ok("GET", "info"))["python_versions"]
    other = next(v for v in reversed(offered) if v != first["python"])
    moved = await api.ok("PATCH", "environments/diffed", {"python": other}, expect=(200,), dry_run=1)
    assert moved["changes"]["python"] == {"from": first["python"], "to": other}

    same = await api.ok("POST", "environments/diffed/actions", {"action": "rebuild"}, expect=(200,), dry_run=1)
    assert same["changes"] == {"python": None, "packages": []}  # nothing would change
    assert env_json(envmgr_root, "diffed") == before  # three dry runs wrote nothing
    assert (await api.get("diffed"))["revision"] == 1

    await api.ok("PATCH", "environments/diffed", {"packages": "envmgr-demo-pkg==2.0\n"}, expect=(202,))
    assert (await api.wait("diffed"))["status"] == "ready"
    down = await api.ok("PATCH", "environments/diffed", {"packages": "envmgr-demo-pkg<2\n"}, expect=(200,), dry_run=1)
    assert demo(down["changes"]) == {"name": "envmgr-demo-pkg", "from": "2.0", "to": "1.0", "change": "downgraded",
                                     "major": True, "requested": True}


async def test_a_failed_resolve_is_the_builds_own_422_and_writes_nothing(api, local_index, envmgr_root):
    await api.create({"name": "unsolved", "packages": "envmgr-demo-pkg==1.0\n", "index_urls": [local_index.url]})
    assert (await api.wait("unsolved"))["status"] == "ready"
    before = env_json(envmgr_root, "unsolved")
    body = {"packages": "envmgr-demo-pkg==7.0\n"}
    status, error = await api.call("PATCH", "environments/unsolved", body, dry_run=1)
    assert status == 422 and error["field"] == "packages" and "\n" not in error["message"], error
    assert env_json(envmgr_root, "unsolved") == before
    assert sorted(os.listdir(os.path.join(envmgr_root, "envs", "default", "unsolved", "builds"))) == ["rev-0001"]
    await api.ok("PATCH", "environments/unsolved", body, expect=(202,))
    failed = await api.wait("unsolved")
    assert failed["status"] == "failed" and failed["message"] == error["message"]  # what the build said, before it ran


async def test_pin_is_metadata_only_when_the_lock_satisfies_the_pins(api, local_index):
    await api.create({"name": "pinned", "packages": "envmgr-demo-pkg>=1  # newest\nenvmgr-extra-pkg\n",
                      "index_urls": [local_index.url]})
    ready = await api.wait("pinned")
    assert ready["status"] == "ready", ready["message"]
    preview = await api.ok("POST", "environments/pinned/actions", {"action": "pin"}, expect=(200,), dry_run=1)
    assert preview["packages"] == "envmgr-demo-pkg==2.0  # newest\nenvmgr-extra-pkg==0.3\n" and "changes" not in preview
    assert (await api.get("pinned"))["packages"] == ready["packages"]
    record = await api.ok("POST", "environments/pinned/actions", {"action": "pin"}, expect=(200,))
    assert record["packages"] == preview["packages"]
    assert (record["revision"], record["ready_revision"], record["status"]) == (1, 1, "ready")
    revisions = await api.ok("GET", "environments/pinned/revisions")
    assert [r["revision"] for r in revisions["revisions"]] == [1]
    again = await api.ok("POST", "environments/pinned/actions", {"action": "pin"}, expect=(200,))
    assert again["packages"] == record["packages"]


async def test_pin_of_what_the_serving_lock_lacks_builds(api, local_index):
    await api.create({"name": "half", "packages": "envmgr-demo-pkg==1.0\n", "index_urls": [local_index.url]})
    assert (await api.wait("half"))["status"] == "ready"
    await api.ok("PATCH", "environments/half", {"packages": "envmgr-demo-pkg==1.0\nenvmgr-no-such-pkg-25\n"}, expect=(202,))
    assert (await api.wait("half"))["status"] == "failed"  # the record asks for more than revision 1 serves
    status, error = await api.call("POST", "environments/half/actions", {"action": "pin"}, dry_run=1)
    assert status == 422 and error["field"] == "packages" and "envmgr-no-such-pkg-25" in error["message"]
    status, error = await api.call("POST", "environments/half/actions", {"action": "cancel"}, dry_run=1)
    assert status == 422 and error["field"] == "dry_run"
