"""Requests for environments (env_requests.py), with two people through jupyter_server's identity
provider and the namespace authorizer: rita may read namespace `team`, walt may write it."""
import asyncio
import json
import os
import sys

import pytest
from helpers import Api
from jupyter_server.auth.identity import IdentityProvider, User

from jupyter_envmgr import env_requests
from jupyter_envmgr.auth import NamespaceAuthorizer
from jupyter_envmgr.errors import EnvmgrError

READER_TOKEN = "reader-" + os.urandom(8).hex()


class TwoPeople(IdentityProvider):
    """The server's token is walt; READER_TOKEN is rita (as a hub would tell two users apart)."""

    async def get_user_token(self, handler):
        if self.get_token(handler) == READER_TOKEN:
            return User(username="rita", name="Rita")
        user = await super().get_user_token(handler)
        return None if user is None else User(username="walt", name="Walt")


class TeamAccess(NamespaceAuthorizer):
    pass


@pytest.fixture
def jp_server_config(envmgr_config):
    envmgr_config["namespaces"] = ["default", "team", "secret"]
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_envmgr": True}, "identity_provider_class": TwoPeople,
                      "authorizer_class": TeamAccess},
        "TeamAccess": {"namespace_access": {
            "team": {"read": ["rita"], "write": ["walt"]},
            "default": {"read": ["*"], "write": ["walt"]},
            "secret": {"write": ["walt"]},
        }},
        "EnvManagerApp": envmgr_config,
    }


@pytest.fixture
def reader(jp_fetch, jp_serverapp, api):
    def fetch(*parts, **kwargs):
        return jp_fetch(*parts, headers={"Authorization": f"token {READER_TOKEN}"}, **kwargs)

    return Api(fetch, jp_serverapp)


def request_files(root):
    directory = os.path.join(root, "requests", "team")
    return sorted(f for f in os.listdir(directory) if f.endswith(".json")) if os.path.isdir(directory) else []


async def test_a_reader_requests_a_writer_approves_and_the_reader_gets_the_kernel(api, reader, envmgr_root, local_index, jp_fetch):
    body = {"name": "ritas-env", "packages": "envmgr-demo-pkg==1.0\n", "index_urls": [local_index.url],
            "env_vars": {"ASKED_BY": "rita"}}
    status, data = await reader.call("POST", "environments", body, namespace="team")
    assert status == 403  # rita may not create it herself
    # Full validation: the same 4xx as a create, and nothing is kept.
    status, data = await reader.call("POST", "requests", dict(body, python="1.0"), namespace="team")
    assert status == 422 and data["field"] == "python"
    status, data = await reader.call("POST", "requests", dict(body, colour="red"), namespace="team")
    assert status == 400
    assert (await reader.call("POST", "requests", body, namespace="nowhere"))[0] == 422
    assert request_files(envmgr_root) == []

    request = await reader.ok("POST", "requests", body, expect=(202,), namespace="team")
    assert {k: request[k] for k in ("namespace", "name", "requester", "status")} == {
        "namespace": "team", "name": "ritas-env", "requester": "rita", "status": "requested"}
    assert request["spec"]["packages"] == body["packages"] and request["created"] and len(request["id"]) == 32
    assert request_files(envmgr_root) == [request["id"] + ".json"]
    # The same name asked again while the first is open: 409.
    assert (await reader.call("POST", "requests", body, namespace="team"))[0] == 409

    assert [r["id"] for r in (await reader.ok("GET", "requests"))["requests"]] == [request["id"]]
    assert [r["id"] for r in (await api.ok("GET", "requests", status="requested"))["requests"]] == [request["id"]]
    assert (await api.ok("GET", "requests", status="approved"))["requests"] == []
    assert (await api.call("GET", "requests", status="bogus"))[0] == 422
    assert (await reader.ok("GET", "requests", namespace="team"))["requests"][0]["id"] == request["id"]
    assert (await reader.call("GET", "requests", namespace="secret"))[0] == 403
    assert (await reader.call("POST", "requests", dict(body, name="hidden"), namespace="secret"))[0] == 403

    status, data = await reader.call("POST", f"requests/{request['id']}/actions", {"action": "approve"})
    assert status == 403 and "team" in data["message"]
    assert (await reader.call("POST", f"requests/{request['id']}/actions", {"action": "reject", "message": "no"}))[0] == 403
    assert not os.path.exists(os.path.join(envmgr_root, "envs", "team", "ritas-env"))

    approved = await api.ok("POST", f"requests/{request['id']}/actions", {"action": "approve"})
    assert approved["status"] == "approved" and approved["environment"] == "ritas-env" and approved["decided_by"] == "walt"
    assert (await api.call("POST", f"requests/{request['id']}/actions", {"action": "approve"}))[0] == 409
    record = await reader.wait("ritas-env", namespace="team")
    assert record["status"] == "ready", record["message"]
    assert record["owner"] == "rita"
    assert (await reader.ok("GET", "requests"))["requests"][0]["status"] == "approved"

    # Rita's kernel picker shows it, and its kernel has what she asked for.
    resp = await jp_fetch("api", "kernelspecs", headers={"Authorization": f"token {READER_TOKEN}"})
    assert "envmgr-team.ritas-env" in json.loads(resp.body)["kernelspecs"]
    out = await api.run("envmgr-team.ritas-env", "import os, envmgr_demo_pkg; print(envmgr_demo_pkg.__version__, os.environ['ASKED_BY'])")
    assert out.split() == ["1.0", "rita"]


async def test_a_rejected_request_says_why_and_withdraw_is_the_requesters(api, reader, envmgr_root):
    first = await reader.ok("POST", "requests", {"name": "too-big", "packages": ""}, expect=(202,), namespace="team")
    status, data = await api.call("POST", f"requests/{first['id']}/actions", {"action": "reject"})
    assert status == 422 and data["field"] == "message"
    rejected = await api.ok("POST", f"requests/{first['id']}/actions",
                            {"action": "reject", "message": "use the shared  data-analysis\nenvironment"})
    assert rejected["status"] == "rejected"
    mine = (await reader.ok("GET", "requests", status="rejected"))["requests"]
    assert [(r["id"], r["message"]) for r in mine] == [(first["id"], "use the shared data-analysis environment")]
    assert (await reader.call("POST", f"requests/{first['id']}/actions", {"action": "withdraw"}))[0] == 409

    second = await reader.ok("POST", "requests", {"name": "changed-mind", "packages": ""}, expect=(202,), namespace="team")
    status, data = await api.call("POST", f"requests/{second['id']}/actions", {"action": "withdraw"})
    assert status == 403 and "rita" in data["message"]
    assert (await reader.ok("POST", f"requests/{second['id']}/actions", {"action": "withdraw"}))["status"] == "withdrawn"
    assert (await api.call("POST", f"requests/{second['id']}/actions", {"action": "approve"}))[0] == 409
    assert not os.path.exists(os.path.join(envmgr_root, "envs", "team", "changed-mind"))

    # The name was taken meanwhile: approving answers as a create would, and the request stays open.
    third = await reader.ok("POST", "requests", {"name": "taken-later", "packages": ""}, expect=(202,), namespace="team")
    await api.create({"name": "taken-later", "packages": ""}, namespace="team")
    status, data = await api.call("POST", f"requests/{third['id']}/actions", {"action": "approve"})
    assert status == 409 and data["reason"] == "name_taken"
    assert [r["status"] for r in (await reader.ok("GET", "requests", status="requested"))["requests"]] == ["requested"]
    await api.wait("taken-later", namespace="team")

    for bad in ("../../etc/passwd", "x" * 32, "0" * 31):
        assert (await api.call("POST", f"requests/{bad}/actions", {"action": "approve"}))[0] == 404
    for body in ({"action": "explode"}, {"action": "approve", "extra": 1}, [], {"action": 3}):
        assert (await api.call("POST", f"requests/{second['id']}/actions", body))[0] in (400, 409, 422)


async def test_the_cli_requests_lists_approves_and_rejects(api, reader, jp_serverapp):
    url = jp_serverapp.connection_url

    async def cli(token, *args):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "jupyter_envmgr.cli", "--url", url, "--token", token, "--namespace", "team", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        return proc.returncode, out.decode(), err.decode()

    walt = jp_serverapp.identity_provider.token
    code, out, err = await cli(READER_TOKEN, "request", "cli-asked", "--description", "for the course")
    assert code == 0, err
    request_id = out.split()[1].rstrip(":")
    code, out, err = await cli(walt, "requests", "--status", "requested")
    assert code == 0 and request_id in out and "rita" in out
    code, out, err = await cli(READER_TOKEN, "approve", request_id)
    assert code == 1 and "may not write" in err
    code, out, err = await cli(walt, "approve", request_id)
    assert code == 0 and "approved" in out, err
    assert (await reader.wait("cli-asked", namespace="team"))["owner"] == "rita"

    code, out, err = await cli(READER_TOKEN, "request", "cli-other")
    other = out.split()[1].rstrip(":")
    code, out, err = await cli(walt, "reject", other, "--message", "ask for a GPU instead")
    assert code == 0 and "rejected" in out
    code, out, err = await cli(READER_TOKEN, "requests", "--json")
    mine = {r["id"]: r for r in json.loads(out)}
    assert mine[other]["message"] == "ask for a GPU instead" and mine[request_id]["status"] == "approved"


# ---------------------------------------------------------------- fast: the files and transitions


def test_requests_on_the_root_are_atomic_files_and_decided_once(tmp_path):
    from jupyter_envmgr.store import Store

    store = Store(str(tmp_path))
    request = env_requests.new_request("team", {"name": "abc", "index_urls": ["https://u:secret@example.org/simple"]}, "rita", "t0")
    env_requests.add(store, request)
    path = store.request_path("team", request["id"])
    assert os.stat(path).st_mode & 0o777 == 0o600  # it holds a credential
    assert env_requests.public(request)["spec"]["index_urls"] == ["https://***@example.org/simple"]
    with pytest.raises(EnvmgrError) as e:
        env_requests.add(store, env_requests.new_request("team", {"name": "abc"}, "bob", "t1"))
    assert e.value.status == 409
    assert env_requests.read(store, ["default", "team"], request["id"])["name"] == "abc"
    with pytest.raises(EnvmgrError) as e:
        env_requests.read(store, ["team"], "../" + request["id"])
    assert e.value.status == 404
    done = env_requests.change(store, "team", request["id"], env_requests.decided("rejected", "walt", "t2", "why"))
    assert done["status"] == "rejected" and done["message"] == "why"
    with pytest.raises(EnvmgrError) as e:
        env_requests.change(store, "team", request["id"], env_requests.decided("approved", "walt", "t3"))
    assert e.value.status == 409
    with open(os.path.join(store.requests_dir("team"), "0" * 32 + ".json"), "w") as f:
        f.write("{broken")
    assert [r["id"] for r in env_requests.list_namespace(store, "team")] == [request["id"]]


def test_an_approval_that_cannot_create_reopens_the_request(tmp_path):
    """The race approve loses after deciding (the name taken by another server in between): back to requested."""
    from jupyter_envmgr.store import Store

    store = Store(str(tmp_path))
    request = env_requests.add(store, env_requests.new_request("team", {"name": "abc"}, "rita", "t0"))
    env_requests.change(store, "team", request["id"], env_requests.decided("approved", "walt", "t1"))
    back = env_requests.change(store, "team", request["id"], env_requests.reopened("the name is taken", "t2"))
    assert back["status"] == "requested" and "environment" not in back and back["message"] == "approving failed: the name is taken"
    assert env_requests.change(store, "team", request["id"], env_requests.decided("withdrawn", "rita", "t3"))["status"] == "withdrawn"
