"""A root this server can read but not write (one user's server on a team's root, issue 23.3): listing,
reading and kernels work where the files are readable; a read it may not make is a 403 that says why;
directories are made for readers to enter, never 0700."""
from __future__ import annotations

import errno
import json
import os
import pwd
import subprocess
import sys

import pytest

from jupyter_envmgr import store
from jupyter_envmgr.store import Store, storage_error
from tests.helpers import Server, call, grant_traverse, unix_user

READER = "envmgr-bob"


@pytest.fixture
def masked():
    """Run with a given umask, then put the process's own back (store.umask() is read once)."""
    old = os.umask(0o022)
    os.umask(old)

    def use(mask):
        os.umask(mask)
        store.umask.cache_clear()

    yield use
    os.umask(old)
    store.umask.cache_clear()


@pytest.mark.parametrize("mask, mode", [(0o022, 0o755), (0o027, 0o750), (0o002, 0o775)])
def test_an_environment_directory_follows_the_umask_not_0700(tmp_path, masked, mask, mode):
    masked(mask)
    s = Store(str(tmp_path))
    s.ensure_layout(["default"])
    s.create("default", "shared", {"name": "shared", "namespace": "default"})
    env = s.env_dir("default", "shared")
    assert oct(os.stat(env).st_mode & 0o777) == oct(mode)
    assert oct(os.stat(os.path.join(env, "env.json")).st_mode & 0o777) == oct(0o644 & ~mask)


def test_a_root_of_another_account_is_not_writable_here(tmp_path):
    s = Store(str(tmp_path))
    s.ensure_layout(["default"])
    assert s.writable()
    probe = ("import sys; from jupyter_envmgr.store import Store; "
             "print(Store(sys.argv[1]).writable())")
    account = unix_user(READER)
    grant_traverse([str(tmp_path)])
    done = subprocess.run(["runuser", "-u", account, "--", sys.executable, "-c", probe, str(tmp_path)],
                          capture_output=True, text=True, cwd="/")
    assert done.stdout.strip() == "False", done.stderr


def test_a_read_it_may_not_make_is_403_naming_the_path_a_write_503(tmp_path):
    """As another account: reading a 0700 directory's record is `forbidden` with the path and what to do;
    writing where it may read is the storage's 503 `storage_unavailable` (cannot be written)."""
    account = unix_user(READER)
    private = tmp_path / "envs" / "default" / "old"
    private.mkdir(parents=True)
    (private / "env.json").write_text("{}")
    os.chmod(private, 0o700)
    grant_traverse([str(tmp_path)])
    probe = """
import json, sys
from jupyter_envmgr.store import storage_error
out = {}
for what, call in (("read", lambda: open(sys.argv[1] + "/envs/default/old/env.json").read()),
                   ("write", lambda: open(sys.argv[1] + "/envs/default/new.json", "w"))):
    try:
        call()
    except OSError as e:
        err = storage_error(e, sys.argv[1])
        out[what] = [err.status, err.reason, err.message]
print(json.dumps(out))
"""
    done = subprocess.run(["runuser", "-u", account, "--", sys.executable, "-c", probe, str(tmp_path)],
                          capture_output=True, text=True, cwd="/")
    out = json.loads(done.stdout or "null") or pytest.fail(done.stderr)
    status, code, message = out["read"]
    assert (status, code) == (403, "forbidden") and str(private / "env.json") in message and "cannot be written" not in message
    assert "readable" in message and "service_url" in message
    assert out["write"][:2] == [503, "storage_unavailable"] and "cannot be written" in out["write"][2]


def test_storage_errors_of_this_account_keep_their_meaning(tmp_path):
    assert storage_error(OSError(errno.ENOSPC, "No space left"), str(tmp_path)).status == 507
    assert storage_error(OSError(errno.EROFS, "Read-only file system", str(tmp_path)), str(tmp_path)).status == 503


@pytest.mark.slow
def test_an_embedded_server_of_another_user_lists_reads_and_runs_what_it_cannot_write(tmp_path, uv_cache_dir, local_index):
    """alice's server (root) writes the root; bob's own embedded server (no service) on it, as a real second
    Unix user: the list, a record and a kernel work; a 0700 leftover is a 403; writes are refused; nothing
    on the root becomes bob's."""
    account = unix_user(READER)
    grant_traverse([str(tmp_path)])
    root = str(tmp_path / "root")
    alice = Server(str(tmp_path / "alice"), root, uv_cache_dir)
    try:
        alice.client.create({"name": "shared", "packages": "envmgr-demo-pkg==1.0\n", "index_urls": [local_index.url]})
        assert alice.client.wait("shared", timeout=240)["status"] == "ready"
        alice.client.create({"name": "old", "packages": ""})
        assert alice.client.wait("old", timeout=240)["status"] == "ready"
    finally:
        alice.stop()
    os.chmod(os.path.join(root, "envs", "default", "old"), 0o700)  # as an earlier version made them
    bob = Server(str(tmp_path / "bob"), root, uv_cache_dir, user=account)
    try:
        assert "shared" in [e["name"] for e in bob.client.list()]
        assert bob.client.get("shared")["status"] == "ready"
        status, error = call(bob.client.url, bob.token, "GET", "envmgr/api/environments/old")
        assert status == 403 and error["reason"] == "forbidden", (status, error)
        assert os.path.join(root, "envs", "default", "old") in error["message"]
        import asyncio

        out = asyncio.run(bob.client.run_code("envmgr-shared", "import envmgr_demo_pkg, os; print(envmgr_demo_pkg.__version__, os.getuid())"))
        assert out.split() == ["1.0", str(pwd.getpwnam(account).pw_uid)]
        status, error = call(bob.client.url, bob.token, "POST", "envmgr/api/environments", {"name": "mine", "packages": ""})
        assert status in (403, 503) and "written" in error["message"], (status, error)
    finally:
        bob.stop()
    uid = pwd.getpwnam(account).pw_uid
    owned = [os.path.join(d, n) for d, dirs, files in os.walk(root) for n in dirs + files
             if os.lstat(os.path.join(d, n)).st_uid == uid]
    assert owned == [], f"bob's server wrote on the root: {owned[:5]}"
