"""The environment service standalone (tokens): the one writer, and notebook servers that read and forward.

Each thing a reader must not be able to do is tried as that reader and shown to fail. The JupyterHub
case (hub identity, real Unix users per server) is tests/hub/.
"""
from __future__ import annotations

import asyncio
import json
import os
import pwd
import subprocess
import sys
import threading
import time
import urllib.request
from types import SimpleNamespace

import pytest

from jupyter_envmgr.client import ClientError
from tests.helpers import Server, Service, call, grant_traverse, unix_user

TOKENS = {"tok-alice-3f9c": "alice", "tok-bob-77ad": "bob"}
ACCESS = {"team-a": {"read": ["group:readers"], "write": ["alice"]}, "default": {"read": ["*"], "write": ["alice", "bob"]}}
ALICE, BOB = "tok-alice-3f9c", "tok-bob-77ad"


@pytest.fixture
def team(tmp_path, uv_cache_dir, local_index):
    root = tmp_path / "root"
    root.mkdir()
    service = Service(str(tmp_path / "service"), str(root), uv_cache_dir, TOKENS, {"readers": ["bob"]}, ACCESS,
                      namespaces=["default", "team-a"], keep_revisions=1)
    readers = []

    def reader(token, **extra):
        server = Server(str(tmp_path / f"nb-{len(readers)}"), str(root), uv_cache_dir,
                        **{"service_url": service.url, "service_token": token, **extra})
        readers.append(server)
        return server

    yield SimpleNamespace(service=service, reader=reader, root=str(root), index=local_index.url)
    for server in readers:
        server.stop()
    service.stop()


def spec(name, index, **extra):
    return {"name": name, "packages": "envmgr-demo-pkg\n", "index_urls": [index], **extra}


def test_writes_are_decided_by_the_service_and_reach_every_reader(team):
    alice, bob = team.reader(ALICE), team.reader(BOB)
    seen = []
    thread = threading.Thread(target=lambda: seen.extend(_read_events(bob, 60)), daemon=True)
    thread.start()
    time.sleep(1)
    a = alice.client
    a.namespace = "team-a"
    record = a.create(spec("shared", team.index))
    assert record["owner"] == "alice" and record["namespace"] == "team-a"

    # bob may read team-a, never change it: through his own server and directly at the service
    for url, token in ((f"http://127.0.0.1:{bob.port}/", bob.token), (team.service.url, BOB)):
        assert call(url, token, "POST", "envmgr/api/environments", spec("mine", team.index), namespace="team-a")[0] == 403
        assert call(url, token, "PATCH", "envmgr/api/environments/shared", {"description": "bob was here"}, namespace="team-a")[0] == 403
        status, body = call(url, token, "DELETE", "envmgr/api/environments/shared", namespace="team-a")
        assert status == 403 and "bob may not write" in body["message"]

    ready = a.wait("shared", timeout=240)
    assert ready["status"] == "ready", ready
    switched = time.monotonic()
    kernel = ready["kernel_name"]
    while kernel not in call(f"http://127.0.0.1:{bob.port}/", bob.token, "GET", "api/kernelspecs")[1]["kernelspecs"]:
        assert time.monotonic() - switched < 2.0, "the new environment is not in bob's kernel picker within 2 s"
        time.sleep(0.05)
    listed = call(f"http://127.0.0.1:{bob.port}/", bob.token, "GET", "envmgr/api/environments", namespace="team-a")[1]
    assert [(e["name"], e["owner"], e["status"]) for e in listed["environments"]] == [("shared", "alice", "ready")]
    thread.join(65)
    assert any(e.get("environment", {}).get("name") == "shared" and e["environment"]["status"] == "ready" for e in seen), seen
    assert call(team.service.url, ALICE, "GET", "envmgr/api/environments/shared", namespace="team-a")[1]["description"] == ""


def _read_events(server, seconds: float) -> list:
    got = []
    req = urllib.request.Request(f"http://127.0.0.1:{server.port}/envmgr/api/events",
                                 headers={"Authorization": f"token {server.token}"})
    deadline = time.monotonic() + seconds
    try:
        with urllib.request.urlopen(req, timeout=seconds) as resp:
            while time.monotonic() < deadline:
                line = resp.readline()
                if not line:
                    break
                if line.startswith(b"data:"):
                    event = json.loads(line[5:])
                    got.append(event)
                    if event.get("environment", {}).get("status") == "ready":
                        break
    except OSError:
        pass
    return got


def test_the_service_runs_nothing_else_and_refuses_unknown_callers(team):
    url = team.service.url
    for method, path, body in (("GET", "api/kernels", None), ("POST", "api/kernels", {"name": "python3"}),
                               ("GET", "api/contents", None), ("GET", "api/terminals", None),
                               ("GET", "api/kernelspecs", None)):
        status, _ = call(url, BOB, method, path, body)
        assert status in (403, 404), (method, path, status)
    for token in ("", "not-a-token", BOB + "x"):
        status, body = call(url, token, "GET", "envmgr/api/environments")
        assert status in (401, 403) and isinstance(body, dict) and body["message"], (token, status, body)


def test_a_readers_own_configuration_grants_nothing(team):
    """bob allows everything in his own server: the service still decides."""
    bob = team.reader(BOB, config={
        "ServerApp": {"authorizer_class": "jupyter_server.auth.authorizer.AllowAllAuthorizer"},
        "NamespaceAuthorizer": {"namespace_access": {"*": {"read": ["*"], "write": ["*"]}}},
    })
    bob.client.namespace = "team-a"
    with pytest.raises(ClientError) as refused:
        bob.client.create(spec("sneaky", team.index))
    assert refused.value.status == 403
    assert call(team.service.url, ALICE, "GET", "envmgr/api/environments", namespace="team-a")[1]["environments"] == []


def test_with_the_service_down_kernels_work_and_routes_say_so(team):
    bob = team.reader(BOB)
    record = bob.client.create(spec("steady", team.index))
    assert bob.client.wait("steady", timeout=240)["status"] == "ready"
    team.service.stop()
    status, body = call(f"http://127.0.0.1:{bob.port}/", bob.token, "GET", "envmgr/api/environments")
    assert status == 503 and team.service.url in body["message"] and "service_url" in body["message"]
    info = bob.client.info()
    assert info["service"] == {"url": team.service.url, "reachable": False, "message": info["service"]["message"]}
    # the picker and kernel starts read the root: no service needed
    assert record["name"] in json.dumps(call(f"http://127.0.0.1:{bob.port}/", bob.token, "GET", "api/kernelspecs")[1])
    out = asyncio.run(bob.client.run_code("envmgr-steady", "import envmgr_demo_pkg, sys; print(sys.prefix)"))
    assert "/envs/default/steady/rev-0001" in out
    team.service.start()  # back: the reader follows it again
    deadline = time.monotonic() + 30
    while call(f"http://127.0.0.1:{bob.port}/", bob.token, "GET", "envmgr/api/environments")[0] != 200:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert bob.client.info()["service"]["reachable"] is True


def test_a_unix_reader_uses_environments_without_writing_a_byte(team, tmp_path):
    """bob is another Unix account: he lists, starts kernels and imports from the service's files, can change
    none of them, and his running kernel keeps its revision from being pruned."""
    account = unix_user("envmgr-bob")
    grant_traverse([str(tmp_path)])
    alice = team.reader(ALICE)
    alice.client.create(spec("shared", team.index))
    assert alice.client.wait("shared", timeout=240)["status"] == "ready"
    bob = team.reader(BOB, user=account)
    assert [e["name"] for e in bob.client.list()] == ["shared"]

    async def use_and_update():
        async with bob.client.kernel("envmgr-shared") as kernel:
            out = await kernel.execute("import envmgr_demo_pkg, sys, os; print(sys.prefix, os.getuid())")
            assert "/rev-0001" in out and str(pwd.getpwnam(account).pw_uid) in out
            alice.client.update("shared", {"packages": "envmgr-demo-pkg\nenvmgr-extra-pkg\n"})
            record = await asyncio.to_thread(alice.client.wait, "shared", 240)
            assert record["ready_revision"] == 2, record
            await asyncio.sleep(2)  # the prune after the switch ran (keep_revisions=1)
            assert os.path.isdir(os.path.join(team.root, "envs/default/shared/rev-0001")), "pruned under bob's kernel"
            return await kernel.execute("import envmgr_demo_pkg; print('still here')")

    assert "still here" in asyncio.run(use_and_update())
    env = os.path.join(team.root, "envs", "default", "shared")
    module = next(os.path.join(d, f) for d, _, fs in os.walk(os.path.join(env, "rev-0002")) for f in fs if f.endswith(".py"))
    attacks = {
        "append to a module": f"open({module!r}, 'a').write('print(1)')",
        "rename the environment away": f"import os; os.rename({env!r}, {env + '-gone'!r})",
        "forge an environment": f"import os; os.mkdir({os.path.join(team.root, 'envs', 'default', 'forged')!r})",
        "hard-link a file in": f"import os, tempfile; f = tempfile.mktemp(); open(f, 'w').write('print(1)'); os.link(f, {os.path.join(env, 'rev-0002', 'evil.py')!r})",
        "swap the magics": f"open({os.path.join(team.root, 'jupyter', 'lib', 'jupyter_envmgr', '__init__.py')!r}, 'w')",
        "chmod a revision": f"import os; os.chmod({os.path.join(env, 'rev-0002')!r}, 0o777)",
    }
    for what, code in attacks.items():
        done = subprocess.run(["runuser", "-u", account, "--", sys.executable, "-c", code], capture_output=True, text=True)
        assert done.returncode != 0 and ("PermissionError" in done.stderr or "Operation not permitted" in done.stderr), (what, done.stderr)
    uid = pwd.getpwnam(account).pw_uid
    owned = [os.path.join(d, n) for d, dirs, files in os.walk(team.root) for n in dirs + files
             if os.lstat(os.path.join(d, n)).st_uid == uid]
    assert owned == [], f"bob's server wrote on the root: {owned[:5]}"


def test_the_service_killed_mid_build_reattaches_after_a_restart(team):
    """SIGKILL of the one writer mid-build: the runner builds on in its own session, readers say 503
    meanwhile, and the restarted service re-attaches; the environment becomes ready in the readers' picker."""
    from tests.helpers import unique

    alice = team.reader(ALICE)
    alice.client.create(spec("survivor", team.index, packages=f"{unique('envmgr-slow')}\n"))
    deadline = time.monotonic() + 60
    while alice.client.get("survivor")["status"] != "warming":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    os.kill(team.service.proc.pid, 9)
    team.service.proc.wait()
    assert call(alice.client.url, alice.token, "GET", "envmgr/api/environments/survivor")[0] == 503
    team.service.start()
    record = alice.client.wait("survivor", timeout=240)
    assert record["status"] == "ready" and record["ready_revision"] == 1, record
    log = alice.client.log("survivor")
    assert log.count("==> [1/") == 1 and log.count("==> done") == 1, log  # one build, followed, not a second one
    deadline = time.monotonic() + 5
    while "envmgr-survivor" not in call(alice.client.url, alice.token, "GET", "api/kernelspecs")[1]["kernelspecs"]:
        assert time.monotonic() < deadline, "not in the reader's picker"
        time.sleep(0.2)


def test_two_replicas_of_the_service_on_one_root_never_build_twice(team, tmp_path, uv_cache_dir):
    """Replicas share the root as peers: a revision queued at one is built once, by one of them, and each
    replica's readers see it."""
    from tests.helpers import unique

    other = Service(str(tmp_path / "replica"), team.root, uv_cache_dir, TOKENS, {"readers": ["bob"]}, ACCESS,
                    namespaces=["default", "team-a"], max_concurrent_builds=1)
    try:
        at_first, at_second = team.reader(ALICE), team.reader(BOB, service_url=other.url)
        at_first.client.create(spec("hog", team.index, packages=f"{unique('envmgr-slow')}\n"))
        names = [f"rep-{i}" for i in range(4)]
        for i, name in enumerate(names):
            (at_first if i % 2 else at_second).client.create(spec(name, team.index, packages="envmgr-demo-pkg==1.0\n"))
        for name in names + ["hog"]:
            for reader in (at_first, at_second):
                assert reader.client.wait(name, timeout=300)["status"] == "ready", name
            log = at_second.client.log(name)  # a build, or a reuse of an identical lock: once
            assert log.count("==> done") == 1 and log.count("==> [1/") + log.count("==> reuse") == 1, (name, log)
    finally:
        other.stop()
