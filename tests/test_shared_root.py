"""Many servers, one root: pinned kernels, a free event loop, leases, the change feed, damage that never spreads."""
from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import signal
import socket
import stat
import subprocess
import threading
import time
import urllib.request

import pytest

from helpers import unique

pytestmark = pytest.mark.slow


class Ticker:
    """Measures the longest stall of the event loop it runs in (a task that wants to wake every 5 ms)."""

    def __init__(self):
        self.max_stall = 0.0
        self._task = None

    async def _run(self):
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.005)
            self.max_stall = max(self.max_stall, time.perf_counter() - before - 0.005)

    def __enter__(self):
        self._task = asyncio.ensure_future(self._run())
        return self

    def __exit__(self, *exc):
        self._task.cancel()


async def ready_env(api, local_index, name, packages="envmgr-demo-pkg==1.0\n", **fields):
    await api.create({"name": name, "packages": packages, "index_urls": [local_index.url], **fields})
    record = await api.wait(name)
    assert record["status"] == "ready", record["message"]
    return record


async def kernelspecs(api) -> dict:
    return json.loads((await api.fetch("api", "kernelspecs", method="GET")).body)["kernelspecs"]


async def test_a_running_kernel_keeps_its_revision(api, local_index, envmgr_root):
    local_index.add("six", "1.16.0")
    local_index.add("six", "1.17.0")
    await ready_env(api, local_index, "pinned", "six==1.16.0\n")
    async with api.client().kernel("envmgr-pinned") as kernel:
        assert (await kernel.execute("import six, sys; print(six.__version__, sys.prefix)")).split() == [
            "1.16.0", os.path.join(envmgr_root, "envs", "default", "pinned", "rev-0001")]
        await api.ok("PATCH", "environments/pinned", {"packages": "six==1.17.0\n"}, expect=(202,))
        record = await api.wait("pinned")
        assert record["ready_revision"] == 2
        spec = (await kernelspecs(api))["envmgr-pinned"]["spec"]
        assert spec["argv"][0].endswith("/pinned/rev-0002/bin/python") and spec["metadata"]["envmgr"]["revision"] == 2
        # The running kernel still imports from revision 1, whole: a fresh import, a reload, its prefix.
        out = await kernel.execute("import importlib, six, sys; importlib.reload(six); print(six.__version__, sys.prefix.endswith('rev-0001'))")
        assert out.split() == ["1.16.0", "True"]
        # GC keeps revision 1 while this kernel runs, though keep_revisions=1 would drop it.
        from jupyter_envmgr import gc

        manager = api.serverapp.web_app.settings["envmgr_manager"]
        await gc.prune_revisions(manager.records, "default", "pinned", 1)
        assert os.path.isdir(os.path.join(envmgr_root, "envs", "default", "pinned", "rev-0001"))
    # A new kernel starts on revision 2.
    assert (await api.run("envmgr-pinned", "import six; print(six.__version__)")).strip() == "1.17.0"


async def test_delete_of_a_big_environment_and_a_held_lock_never_stall_the_loop(api, local_index, envmgr_root):
    record = await ready_env(api, local_index, "big")
    site = os.path.join(envmgr_root, "envs", "default", "big", "rev-0001", "bulk")
    for d in range(40):
        os.makedirs(os.path.join(site, str(d)))
        for f in range(1000):
            with open(os.path.join(site, str(d), f"m{f}.py"), "w") as fh:
                fh.write("x = 1\n")
    await ready_env(api, local_index, "other")
    with Ticker() as ticker:
        await api.ok("DELETE", "environments/big", expect=(204,))
        listed = await api.ok("GET", "environments")
    assert [e["name"] for e in listed["environments"]] == ["other"]
    assert ticker.max_stall < 0.25, f"the loop stalled {ticker.max_stall * 1000:.0f} ms during a 40k-file delete"
    # A lock held by someone else (another server, say): a bounded wait, then 503 busy; the loop stays free.
    lock = os.path.join(envmgr_root, "envs", "default", "other", "logs", ".lock")
    fd = os.open(lock, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with Ticker() as ticker:
            status, body = await api.call("PATCH", "environments/other", {"description": "x"})
            assert (await api.ok("GET", "info"))["backend"] == "local"  # other routes answer meanwhile
    finally:
        os.close(fd)
    assert status == 503 and body["reason"] == "busy" and "other" in body["message"], body
    assert ticker.max_stall < 0.25, f"the loop stalled {ticker.max_stall * 1000:.0f} ms on a held lock"
    assert (await api.ok("PATCH", "environments/other", {"description": "x"}))["description"] == "x"
    assert record["kernel_name"] not in await kernelspecs(api)


async def test_damaged_entries_never_spread(api, local_index, envmgr_root):
    ns_dir = os.path.join(envmgr_root, "envs", "default")
    await ready_env(api, local_index, "good")
    await ready_env(api, local_index, "broken")
    await ready_env(api, local_index, "no-files")
    os.makedirs(os.path.join(ns_dir, "stray", "logs"))  # what a racing delete used to leave
    with open(os.path.join(ns_dir, "broken", "env.json"), "r+") as f:
        f.truncate(40)
    os.makedirs(os.path.join(ns_dir, "not-an-object"))
    with open(os.path.join(ns_dir, "not-an-object", "env.json"), "w") as f:
        f.write("[1, 2]")
    os.rename(os.path.join(ns_dir, "no-files", "rev-0001"), os.path.join(ns_dir, "no-files", "moved-away"))
    with open(os.path.join(ns_dir, "README.txt"), "w") as f:
        f.write("not an environment")

    listed = {e["name"]: e for e in (await api.ok("GET", "environments"))["environments"]}
    assert listed["good"]["status"] == "ready"
    for name in ("stray", "broken", "not-an-object", "no-files"):
        assert listed[name]["status"] == "failed" and "damaged" in listed[name]["message"], listed[name]
        assert "\n" not in listed[name]["message"] and len(listed[name]["message"]) <= 300
    assert "env.json" in listed["broken"]["message"] and "rev-0001" in listed["no-files"]["message"]
    one = await api.ok("GET", "environments/broken")
    assert one["status"] == "failed"
    status, body = await api.call("PATCH", "environments/broken", {"description": "x"})
    assert status == 409 and body["reason"] == "damaged"
    # The rest of the namespace creates normally, and kernelspecs stay until a DELETE.
    await api.create({"name": "fresh", "packages": "", "index_urls": [local_index.url]})
    specs = await kernelspecs(api)
    assert {"envmgr-good", "envmgr-broken", "envmgr-no-files"} <= set(specs)
    manager = api.serverapp.web_app.settings["envmgr_manager"]
    await manager.start()  # what a restart does: the extension starts, damaged kernels are kept
    assert "envmgr-broken" in await kernelspecs(api)
    for name in ("stray", "broken", "not-an-object", "no-files"):
        await api.ok("DELETE", f"environments/{name}", expect=(204,))
    assert "envmgr-broken" not in await kernelspecs(api)
    listed = {e["name"] for e in (await api.ok("GET", "environments"))["environments"]}
    assert listed == {"good", "fresh"}
    await api.wait("fresh")


async def test_list_and_record_answer_304_when_unchanged(api, local_index):
    await ready_env(api, local_index, "tagged")
    for path in (("envmgr", "api", "environments"), ("envmgr", "api", "environments", "tagged")):
        first = await api.fetch(*path, method="GET")
        etag = first.headers["ETag"]
        again = await api.fetch(*path, method="GET", headers={"If-None-Match": etag}, raise_error=False)
        assert again.code == 304 and not again.body
    await api.ok("PATCH", "environments/tagged", {"description": "changed"})
    changed = await api.fetch("envmgr", "api", "environments", method="GET", headers={"If-None-Match": etag}, raise_error=False)
    assert changed.code == 200


async def test_dry_run_writes_nothing(api, local_index, envmgr_root):
    record = await api.ok("POST", "environments", {"name": "dry", "packages": "six\n"}, expect=(200,), dry_run=1)
    assert record["name"] == "dry" and record["status"] == "pending"
    assert not os.path.exists(os.path.join(envmgr_root, "envs", "default", "dry"))
    status, body = await api.call("POST", "environments", {"name": "dry", "packages": "-e /x\n"}, dry_run=1)
    assert status == 403 and body["field"] == "packages"
    status, body = await api.call("POST", "environments", {"name": "Bad Name"}, dry_run=1)
    assert status == 422 and body["field"] == "name"


def _pgid_members(pgid: int) -> list:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            with contextlib.suppress(OSError):
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[2]) == pgid and fields[0] != "Z":
                    found.append(int(pid))
    return found


async def test_runner_killed_takes_its_steps_along_and_logs_are_capped(api, local_index, envmgr_root, envmgr_overrides):
    slow = unique("envmgr-slow")
    await api.create({"name": "killed", "packages": f"{slow}\n", "index_urls": [local_index.url]})
    manager = api.serverapp.web_app.settings["envmgr_manager"]
    record = await api.wait_for("killed", lambda r: r["status"] == "warming" and r["progress"] > 0)
    pid = manager.builds.active[("default", "killed")].handle["pid"]
    assert len(_pgid_members(pid)) > 1  # the runner and uv
    os.kill(pid, signal.SIGKILL)
    record = await api.wait("killed", timeout=60)
    assert record["status"] == "failed" and "rebuild" in record["message"]
    deadline = time.monotonic() + 10
    while _pgid_members(pid) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert _pgid_members(pid) == []


@pytest.mark.parametrize("envmgr_overrides", [{"max_log_bytes": 600}])
async def test_build_log_is_capped_with_a_note(api, local_index, envmgr_root, envmgr_overrides):
    record = await ready_env(api, local_index, "capped", "envmgr-demo-pkg==1.0\nenvmgr-extra-pkg==0.3\n")
    log = (await api.call("GET", "environments/capped/log"))[1]
    assert "log truncated at 600 bytes" in log and len(log.encode()) < 1000
    assert record["status"] == "ready"


async def test_credentials_are_kept_owner_only(api, local_index, envmgr_root):
    url = local_index.url.replace("http://", "http://user:s3cret@")
    await api.create({"name": "secret", "packages": "envmgr-demo-pkg==1.0\n", "index_urls": [url]})
    record = await api.wait("secret")
    env_dir = os.path.join(envmgr_root, "envs", "default", "secret")
    assert stat.S_IMODE(os.stat(os.path.join(env_dir, "env.json")).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.join(env_dir, "builds", "rev-0001", "plan.json")).st_mode) == 0o600
    assert "s3cret" not in json.dumps(record)


async def test_a_follower_that_stops_reading_is_let_go(api, local_index):
    slow = unique("envmgr-brief")
    await api.create({"name": "followed", "packages": f"{slow}\n", "index_urls": [local_index.url]})
    url = api.serverapp.connection_url
    host, port = "127.0.0.1", api.serverapp.port
    path = f"{api.serverapp.base_url}envmgr/api/environments/followed/log?follow=1"
    token = api.serverapp.identity_provider.token
    reader = socket.create_connection((host, port))
    reader.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: token {token}\r\n\r\n".encode())
    record = await api.wait("followed")  # the client reads nothing while the build runs
    assert record["status"] == "ready" and url
    reader.settimeout(10)
    data = b""
    while True:  # now it reads: the stream has ended with the build
        chunk = await asyncio.to_thread(reader.recv, 65536)
        if not chunk or data.endswith(b"0\r\n\r\n") or (data + chunk).endswith(b"0\r\n\r\n"):
            data += chunk
            break
        data += chunk
    reader.close()
    assert b"200 OK" in data and b"==> done" in data


def _events(server, stop: threading.Event, found: list):
    req = urllib.request.Request(f"http://127.0.0.1:{server.port}/envmgr/api/events",
                                 headers={"Authorization": f"token {server.token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        for line in resp:
            if line.startswith(b"data: "):
                found.append((time.monotonic(), json.loads(line[6:])))
            if stop.is_set():
                return


def test_two_servers_one_slot_the_queued_revision_builds_once_and_changes_reach_the_other(servers, local_index):
    a = servers("a", max_concurrent_builds=1, lease_seconds=6.0)
    slow = unique("envmgr-slow")
    a.client.create({"name": "hog", "packages": f"{slow}\n", "index_urls": [local_index.url]})
    a.client.create({"name": "queued", "packages": "envmgr-demo-pkg==1.0\n", "index_urls": [local_index.url]})
    assert a.client.get("queued")["status"] == "pending"
    b = servers("b", max_concurrent_builds=1, lease_seconds=6.0)
    stop, found = threading.Event(), []
    follower = threading.Thread(target=_events, args=(b, stop, found), daemon=True)
    follower.start()
    time.sleep(1)
    made = time.monotonic()
    a.client.update("hog", {"description": "seen on b"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and a.client.get("queued")["status"] != "ready":
        time.sleep(0.5)
    stop.set()
    record = b.client.get("queued")
    assert record["status"] == "ready", record
    log = b.client.log("queued")
    assert log.count("==> [1/") == 1 and log.count("==> done") == 1, log
    # B saw A's metadata change through its own /events within 2 s.
    seen = [t for t, e in found if e.get("type") == "upsert" and e["environment"]["name"] == "hog"
            and e["environment"]["description"] == "seen on b"]
    assert seen and seen[0] - made < 2.0, found
    # B lists the kernel built by A.
    specs = b.client.request("GET", "api/kernelspecs")["kernelspecs"]
    assert "envmgr-queued" in specs


def test_delete_racing_rebuilds_leaves_nothing_behind(servers, local_index):
    a = servers("a")
    root = servers.root
    for round_ in range(6):
        name = f"race-{round_}"
        a.client.create({"name": name, "packages": "envmgr-demo-pkg==1.0\n", "index_urls": [local_index.url]})
        time.sleep(0.05 * round_)
        a.client.delete(name)
    time.sleep(2)
    assert os.listdir(os.path.join(root, "envs", "default")) == []
    a.client.create({"name": "after", "packages": "envmgr-demo-pkg==1.0\n", "index_urls": [local_index.url]})
    assert [e["name"] for e in a.client.list()] == ["after"]


async def test_a_plan_written_after_a_delete_recreates_nothing(api, local_index, envmgr_root, jp_serverapp):
    """A cancelled build's worker thread goes on writing its plan: it must not bring back the deleted directory."""
    from jupyter_envmgr.errors import EnvmgrError
    from jupyter_envmgr.spec import EnvSpec

    manager = jp_serverapp.web_app.settings["envmgr_manager"]
    spec = {"name": "gone", "packages": "envmgr-demo-pkg==1.0\n", "index_urls": [local_index.url]}
    await api.create(spec)
    await api.ok("DELETE", "environments/gone")
    late = manager.builds.build("default", "gone", 1, EnvSpec.from_dict(spec))
    with pytest.raises(EnvmgrError) as raised:
        manager.builds._write_plan(late)
    assert raised.value.status == 404
    assert not os.path.exists(os.path.join(envmgr_root, "envs", "default", "gone"))


async def test_read_only_storage_answers_503_naming_the_root_and_keeps_the_kernel(api, local_index, envmgr_root, tmp_path):
    await ready_env(api, local_index, "keeper")
    root = envmgr_root
    if subprocess.run(["mount", "--bind", root, root], capture_output=True).returncode:
        pytest.skip("cannot bind-mount here")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", root], check=True, capture_output=True)
        status, body = await api.call("POST", "environments", {"name": "nope", "packages": ""})
        assert status == 503 and root in body["message"], (status, body)
        status, body = await api.call("DELETE", "environments/keeper")
        assert status == 503 and root in body["message"], (status, body)
        assert "envmgr-keeper" in await kernelspecs(api)
    finally:
        subprocess.run(["umount", "-l", root], capture_output=True)
    assert [e["name"] for e in (await api.ok("GET", "environments"))["environments"]] == ["keeper"]


def test_envmgr_magic_tells_an_older_kernel_that_a_new_revision_is_ready(servers, local_index):
    server = servers("notice")
    server.client.create({"name": "older", "packages": "envmgr-demo-pkg==1.0\n", "index_urls": [local_index.url]})
    assert server.client.wait("older", timeout=180)["status"] == "ready"

    async def scenario():
        async with server.client.kernel("envmgr-older") as kernel:
            quiet = await kernel.execute("%envmgr list")
            server.client.update("older", {"packages": "envmgr-demo-pkg==2.0\n"})
            assert server.client.wait("older", timeout=180)["ready_revision"] == 2
            return quiet, await kernel.execute("%envmgr list")

    quiet, told = asyncio.run(scenario())
    assert "restart the kernel" not in quiet
    assert "this kernel runs revision 1 of older; revision 2 is ready: restart the kernel to use it" in told
