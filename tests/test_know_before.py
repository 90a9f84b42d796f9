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


# ---------------------------------------------------------------- who uses which revision

from jupyter_server.auth.identity import IdentityProvider, User  # noqa: E402

BOB_TOKEN = "bob-" + os.urandom(8).hex()


class TwoUsers(IdentityProvider):
    """The server's token is alice; BOB_TOKEN is bob (as a hub's tokens name their users)."""

    async def get_user(self, handler):
        if handler.request.headers.get("Authorization") == f"token {BOB_TOKEN}":
            handler._token_authenticated = True
            return User(username="bob")
        user = await super().get_user(handler)
        return None if user is None else User(username="alice")


@pytest.fixture
def jp_server_config(envmgr_config, request):
    config = {"ServerApp": {"jpserver_extensions": {"jupyter_envmgr": True}}, "EnvManagerApp": envmgr_config}
    if "two_users" in request.node.name:
        config["ServerApp"]["identity_provider_class"] = TwoUsers
    return config


async def test_kernels_in_two_users_notebooks_show_in_usage(api, local_index, jp_serverapp):
    import asyncio
    import time

    from tornado.httpclient import AsyncHTTPClient

    await api.create({"name": "used", "packages": "envmgr-demo-pkg==1.0\n", "index_urls": [local_index.url]})
    assert (await api.wait("used"))["status"] == "ready"
    http, url = AsyncHTTPClient(), jp_serverapp.connection_url
    tokens = {"alice": jp_serverapp.identity_provider.token, "bob": BOB_TOKEN}

    async def call(user, method, path, body=None):
        resp = await http.fetch(url + path, method=method, headers={"Authorization": f"token {tokens[user]}"},
                                body=None if body is None else json.dumps(body), request_timeout=120, raise_error=False)
        return resp.code, json.loads(resp.body) if resp.body else None

    async def usage_until(predicate):
        deadline = time.monotonic() + 20
        while True:
            data = await api.ok("GET", "environments/used/usage")
            if predicate(data) or time.monotonic() > deadline:
                return data
            await asyncio.sleep(0.2)

    sessions = {}
    for user, notebook in (("alice", "analysis.ipynb"), ("bob", "report.ipynb")):
        code, sessions[user] = await call(user, "POST", "api/sessions", {"path": notebook, "type": "notebook", "name": notebook,
                                                                          "kernel": {"name": "envmgr-used"}})
        assert code == 201, sessions[user]
    try:
        data = await usage_until(lambda d: len(d["kernels"]) == 2)
        assert sorted((k["user"], k["notebook"], k["revision"]) for k in data["kernels"]) == [
            ("alice", "analysis.ipynb", 1), ("bob", "report.ipynb", 1)]
        assert data["running_kernels"] == 2 and len(data["recent"]) == 2
        assert data["recent"][0]["started"] >= data["recent"][1]["started"]  # newest first
        assert set(data["kernels"][0]) == {"user", "notebook", "revision", "started", "last_activity"}
        code, _ = await call("bob", "DELETE", f"api/sessions/{sessions.pop('bob')['id']}")
        assert code == 204
        data = await usage_until(lambda d: len(d["kernels"]) == 1)
        assert [k["user"] for k in data["kernels"]] == ["alice"] and len(data["recent"]) == 2  # bob's start is kept

        # The writer's route: the user is always the caller, never the body's.
        use = {"namespace": "default", "name": "used", "revision": 1, "notebook": "job", "kernel_id": "job-1",
               "started": "2030-01-01T00:00:00Z", "last_activity": "2030-01-01T00:00:00Z"}
        code, error = await call("bob", "POST", "envmgr/api/usage", {"reporter": "x:1", "heartbeat": 0, "uses": [dict(use, user="alice")]})
        assert code == 422 and error["field"] == "uses", error
        code, answer = await call("bob", "POST", "envmgr/api/usage", {"reporter": "x:1", "heartbeat": 0, "uses": [use]})
        assert code == 200 and answer == {"recorded": 1}
        data = await api.ok("GET", "environments/used/usage")
        assert (data["recent"][0]["user"], data["recent"][0]["notebook"]) == ("bob", "job") and len(data["kernels"]) == 1
    finally:
        for user, session in sessions.items():
            await call(user, "DELETE", f"api/sessions/{session['id']}")
