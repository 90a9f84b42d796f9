"""The life of a pip environment through the REST contract on a real server, with real uv builds and kernels."""
import json
import os

import pytest

from helpers import unique


async def test_create_warm_run_update_rollback_delete(api, local_index, envmgr_root, jp_serverapp):
    info = await api.ok("GET", "info")
    assert info["backend"] == "local" and "pip" in info["managers"]
    for key in ("version", "python_versions", "namespaces", "storages", "presets", "base_packages", "limits"):
        assert key in info

    created = await api.create({
        "name": "team-env", "packages": "envmgr-demo-pkg==1.0\n", "index_urls": [local_index.url],
        "labels": {"team": "vision"}, "annotations": {"example.com/contact": "ops"},
        "env_vars": {"ENVMGR_TEST_VAR": "hello"}, "description": "team baseline",
    })
    assert created["status"] in ("pending", "warming") and created["revision"] == 1
    assert created["kernel_name"] is None and created["ready_revision"] is None
    assert created["base_packages"] == ["ipykernel"]

    record = await api.wait("team-env")
    assert record["status"] == "ready", record["message"]
    assert record["ready_revision"] == 1 and record["progress"] == 1.0
    assert record["kernel_name"] == "envmgr-team-env"
    assert record["prefix"] == os.path.join(envmgr_root, "envs", "default", "team-env", "current")
    assert os.readlink(record["prefix"]) == "rev-0001"

    # The kernel is in this server's kernel picker and runs code in the environment.
    specs = json.loads((await api.fetch("api", "kernelspecs", method="GET")).body)["kernelspecs"]
    spec = specs["envmgr-team-env"]["spec"]
    rev1 = os.path.join(envmgr_root, "envs", "default", "team-env", "rev-0001")
    assert spec["argv"][0] == os.path.join(rev1, "bin", "python")  # the serving revision, not `current`
    assert spec["env"]["JUPYTER_ENVMGR_REVISION"] == "1"
    assert spec["metadata"]["envmgr"] == {"name": "team-env", "namespace": "default", "revision": 1, "root": envmgr_root}
    out = await api.run("envmgr-team-env", "import envmgr_demo_pkg, os, sys; print(envmgr_demo_pkg.__version__, os.environ['ENVMGR_TEST_VAR'], sys.prefix)")
    assert out.split() == ["1.0", "hello", rev1]

    packages = (await api.ok("GET", "environments/team-env/packages"))["packages"]
    assert {"name": "envmgr-demo-pkg", "version": "1.0", "requested": True, "base": False, "required_by": []} in packages
    assert any(p["name"] == "ipykernel" for p in packages)

    # An update builds revision 2 while revision 1 serves; then it switches.
    patched = await api.ok("PATCH", "environments/team-env", {"packages": "envmgr-demo-pkg==2.0\n"}, expect=(202,))
    assert patched["revision"] == 2 and patched["ready_revision"] == 1
    record = await api.wait("team-env")
    assert record["status"] == "ready" and record["ready_revision"] == 2
    assert os.readlink(record["prefix"]) == "rev-0002"
    out = await api.run("envmgr-team-env", "import envmgr_demo_pkg; print(envmgr_demo_pkg.__version__)")
    assert out.strip() == "2.0"

    # A metadata-only change answers 200 and builds nothing.
    meta = await api.ok("PATCH", "environments/team-env", {"description": "changed", "labels": {"team": "nlp"}}, expect=(200,))
    assert meta["revision"] == 2 and meta["description"] == "changed" and meta["labels"] == {"team": "nlp"}

    revisions = (await api.ok("GET", "environments/team-env/revisions"))["revisions"]
    assert [r["revision"] for r in revisions] == [1, 2]
    assert all(r["status"] == "ready" for r in revisions)
    assert "envmgr-demo-pkg==1.0" in revisions[0]["lock"] and "envmgr-demo-pkg==2.0" in revisions[1]["lock"]
    assert revisions[0]["inputs"]["packages"] == "envmgr-demo-pkg==1.0\n"

    # Rollback switches current back and the kernel follows.
    rolled = await api.ok("POST", "environments/team-env/actions", {"action": "rollback", "revision": 1}, expect=(202,))
    assert rolled["ready_revision"] == 1 and rolled["status"] == "ready"
    assert os.readlink(record["prefix"]) == "rev-0001"
    out = await api.run("envmgr-team-env", "import envmgr_demo_pkg; print(envmgr_demo_pkg.__version__)")
    assert out.strip() == "1.0"

    # Rebuild makes revision 3 from the same inputs.
    rebuilt = await api.ok("POST", "environments/team-env/actions", {"action": "rebuild"}, expect=(202,))
    assert rebuilt["revision"] == 3
    assert (await api.wait("team-env"))["ready_revision"] == 3

    # Delete: kernel gone, files gone.
    await api.ok("DELETE", "environments/team-env", expect=(204,))
    assert (await api.call("GET", "environments/team-env"))[0] == 404
    specs = json.loads((await api.fetch("api", "kernelspecs", method="GET")).body)["kernelspecs"]
    assert "envmgr-team-env" not in specs
    assert os.listdir(os.path.join(envmgr_root, "envs", "default")) == []
    assert not [k for k in os.listdir(os.path.join(envmgr_root, "jupyter", "kernels")) if k.startswith("envmgr-")]


async def test_failed_update_keeps_serving(api, local_index):
    await api.create({"name": "stable", "packages": "envmgr-demo-pkg==1.0\n", "index_urls": [local_index.url]})
    assert (await api.wait("stable"))["status"] == "ready"
    missing = unique("envmgr-no-such-package")
    await api.ok("PATCH", "environments/stable", {"packages": f"{missing}\n"}, expect=(202,))
    record = await api.wait("stable")
    assert record["status"] == "failed" and record["revision"] == 2
    assert record["ready_revision"] == 1 and record["kernel_name"] == "envmgr-stable"
    assert missing in record["message"]  # uv's explanation reaches the record
    log = (await api.call("GET", "environments/stable/log"))[1]
    assert missing in log and "==> failed" in log
    first_log = (await api.call("GET", "environments/stable/log", revision=1))[1]
    assert "envmgr-demo-pkg" in first_log
    out = await api.run("envmgr-stable", "import envmgr_demo_pkg; print(envmgr_demo_pkg.__version__)")
    assert out.strip() == "1.0"
    revisions = (await api.ok("GET", "environments/stable/revisions"))["revisions"]
    assert [r["status"] for r in revisions] == ["ready", "failed"]
    assert (await api.ok("GET", "environments/stable/export", format="requirements")).count("envmgr-demo-pkg==1.0") == 1


async def test_export_round_trip_and_secrets(api, local_index, envmgr_root):
    secret_url = local_index.url.replace("http://", "http://user:s3cret-token@")
    await api.create({"name": "origin", "packages": "envmgr-demo-pkg\n", "index_urls": [secret_url],
                      "labels": {"a": "b"}, "init_script": "print('init ran')\n"})
    record = await api.wait("origin")
    assert record["status"] == "ready", record["message"]
    everything = json.dumps([record, await api.get("origin"), await api.ok("GET", "environments"),
                             await api.ok("GET", "environments/origin/revisions")])
    assert "s3cret-token" not in everything and "***@" in everything
    log = (await api.call("GET", "environments/origin/log"))[1]
    assert "s3cret-token" not in log and "init ran" in log
    lock = await api.ok("GET", "environments/origin/export", format="requirements")
    assert "envmgr-demo-pkg==2.0" in lock and "s3cret-token" not in lock

    spec = await api.ok("GET", "environments/origin/export", format="spec")
    assert spec["name"] == "origin" and spec["packages"] == "envmgr-demo-pkg\n" and "s3cret" not in json.dumps(spec)
    # Re-importable by POST under a new name (the redacted URL is kept as given: it still parses).
    spec["name"] = "copy"
    spec["index_urls"] = [local_index.url]
    copy = await api.create(spec)
    assert copy["labels"] == {"a": "b"} and copy["packages"] == "envmgr-demo-pkg\n"
    assert (await api.wait("copy"))["status"] == "ready"
    assert (await api.call("GET", "environments/origin/export", format="zip"))[0] == 422


async def test_list_filters_and_log_follow(api, local_index):
    await api.create({"name": "one", "packages": "envmgr-demo-pkg\n", "index_urls": [local_index.url], "labels": {"team": "a"}})
    # Follow streams the log until the build ends.
    status, text = await api.call("GET", "environments/one/log", follow=1)
    assert status == 200 and "==> done" in text
    await api.create({"name": "two", "packages": f"{unique('envmgr-no-such')}\n", "index_urls": [local_index.url], "labels": {"team": "b"}})
    await api.wait("one")
    await api.wait("two")
    names = lambda data: sorted(e["name"] for e in data["environments"])
    assert names(await api.ok("GET", "environments")) == ["one", "two"]
    assert names(await api.ok("GET", "environments", label="team=a")) == ["one"]
    assert names(await api.ok("GET", "environments", label="team")) == ["one", "two"]
    assert names(await api.ok("GET", "environments", status="failed")) == ["two"]
    assert names(await api.ok("GET", "environments", status="ready,failed")) == ["one", "two"]
    status, error = await api.call("GET", "environments", status="ready,done")
    assert status == 422 and error["field"] == "status" and "'done' is not a status" in error["message"], error
    assert (await api.ok("GET", "environments/two/packages"))["packages"] == []
    assert (await api.call("GET", "environments/two/export", format="requirements"))[0] == 409


@pytest.mark.parametrize("envmgr_overrides", [{"keep_revisions": 2}])
async def test_keep_revisions_prunes_old_ones(api, local_index, envmgr_root):
    await api.create({"name": "pruned", "packages": "envmgr-demo-pkg\n", "index_urls": [local_index.url]})
    await api.wait("pruned")
    for _ in range(2):
        await api.ok("POST", "environments/pruned/actions", {"action": "rebuild"}, expect=(202,))
        assert (await api.wait("pruned"))["status"] == "ready"
    revisions = (await api.ok("GET", "environments/pruned/revisions"))["revisions"]
    assert [r["revision"] for r in revisions] == [2, 3]
    env_dir = os.path.join(envmgr_root, "envs", "default", "pruned")
    assert sorted(d for d in os.listdir(env_dir) if d.startswith("rev-")) == ["rev-0002", "rev-0003"]
    status, body = await api.call("POST", "environments/pruned/actions", {"action": "rollback", "revision": 1})
    assert status == 422 and "revision" in body["message"]
