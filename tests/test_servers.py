"""Real `jupyter server` processes: a SIGKILL mid-build, two servers on one root, and other Jupyter tools."""
import json
import os
import signal
import subprocess
import sys
import time

import nbformat

from helpers import unique


def wait_status(client, name, predicate, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        record = client.get(name)
        if predicate(record):
            return record
        assert time.monotonic() < deadline, record
        time.sleep(0.2)


def test_sigkill_mid_build_then_restart_reattaches(servers, local_index):
    first = servers("first", lease_seconds=3.0)
    first.client.create({"name": "survivor", "packages": f"{unique('envmgr-slow')}\n", "index_urls": [local_index.url]})
    wait_status(first.client, "survivor", lambda r: r["status"] == "warming")
    first.kill()  # the runner lives in its own session and keeps building
    second = servers("second", lease_seconds=3.0)  # takes the build over once first's lease expired
    record = second.client.wait("survivor", timeout=120)
    assert record["status"] == "ready", record
    assert "envmgr-survivor" in second.client.request("GET", "api/kernelspecs")["kernelspecs"]


def test_build_dead_with_the_server_is_failed_not_stuck(servers, local_index):
    first = servers("first", lease_seconds=3.0)
    first.client.create({"name": "orphan", "packages": f"{unique('envmgr-slow')}\n", "index_urls": [local_index.url]})
    record = wait_status(first.client, "orphan", lambda r: r["status"] == "warming")

    def handle():  # written just after the build starts
        with open(os.path.join(servers.root, "envs", "default", "orphan", "env.json")) as f:
            return json.load(f)["revisions"][0].get("handle")

    deadline = time.monotonic() + 30
    while not handle() and time.monotonic() < deadline:
        time.sleep(0.1)
    first.kill()
    pid = handle()["pid"]
    os.killpg(pid, signal.SIGKILL)  # the build dies too, as in a machine restart
    second = servers("second", lease_seconds=3.0)
    record = wait_status(second.client, "orphan", lambda r: r["status"] != "warming")
    assert record["status"] == "failed" and "left no result" in record["message"]
    # And it can be rebuilt.
    second.client.update("orphan", {"packages": "envmgr-demo-pkg\n"})
    assert second.client.wait("orphan", timeout=120)["status"] == "ready"


def test_two_servers_on_one_root_share_kernels(servers, local_index):
    builder = servers("builder")
    builder.client.create({"name": "shared", "packages": "envmgr-demo-pkg\n", "index_urls": [local_index.url]})
    assert builder.client.wait("shared", timeout=180)["status"] == "ready"
    reader = servers("reader")  # its own data dir: it can only see the root's kernelspecs
    assert "envmgr-shared" in reader.client.request("GET", "api/kernelspecs")["kernelspecs"]
    assert [e["name"] for e in reader.client.list()] == ["shared"]
    import asyncio

    out = asyncio.run(reader.client.run_code("envmgr-shared", "import envmgr_demo_pkg; print(envmgr_demo_pkg.__version__)"))
    assert out.strip() == "2.0"
    # No build, no copy: the second server wrote no prefix of its own (only the record of its kernel's start).
    assert sorted(os.listdir(os.path.join(servers.root, "envs", "default", "shared"))) == ["builds", "current", "env.json", "logs", "resources", "rev-0001", "usage"]


def nbconvert(tmp_path, kernel, env):
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell("import sys, envmgr_demo_pkg; print('from', sys.prefix)"))
    path = tmp_path / f"{kernel}.ipynb"
    nbformat.write(nb, str(path))
    proc = subprocess.run(
        [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", "--stdout",
         f"--ExecutePreprocessor.kernel_name={kernel}", str(path)],
        env=env, capture_output=True, text=True, timeout=180,
    )
    return proc


def test_other_jupyter_tools_find_the_kernels(servers, local_index, tmp_path):
    # Default settings on one machine: the kernelspec is also in the user's data dir.
    server = servers("one", user_kernelspecs=True)
    server.client.create({"name": "tooling", "packages": "envmgr-demo-pkg\n", "index_urls": [local_index.url]})
    assert server.client.wait("tooling", timeout=180)["status"] == "ready"
    env = dict(os.environ, JUPYTER_DATA_DIR=os.path.join(server.base, "data"))
    listed = subprocess.run([sys.executable, "-m", "jupyter", "kernelspec", "list", "--json"], env=env, capture_output=True, text=True)
    assert "envmgr-tooling" in json.loads(listed.stdout)["kernelspecs"]
    proc = nbconvert(tmp_path, "envmgr-tooling", env)
    assert proc.returncode == 0, proc.stderr
    assert "envs/default/tooling/rev-0001" in proc.stdout  # kernels run the serving revision itself

    # Shared storage: one documented setting, JUPYTER_PATH=<root>/jupyter, for a machine that only mounts the root.
    bare = dict(os.environ, JUPYTER_DATA_DIR=str(tmp_path / "empty-data"))
    assert nbconvert(tmp_path, "envmgr-tooling", bare).returncode != 0  # NoSuchKernel without it
    shared = dict(bare, JUPYTER_PATH=os.path.join(servers.root, "jupyter"))
    proc = nbconvert(tmp_path, "envmgr-tooling", shared)
    assert proc.returncode == 0, proc.stderr


def test_resync_at_start_writes_missing_and_removes_orphans(servers, local_index):
    first = servers("first")
    first.client.create({"name": "resynced", "packages": "", "index_urls": [local_index.url]})
    assert first.client.wait("resynced", timeout=180)["status"] == "ready"
    first.stop()
    kernels = os.path.join(servers.root, "jupyter", "kernels")
    import shutil

    shutil.rmtree(os.path.join(kernels, "envmgr-resynced"))
    orphan = os.path.join(kernels, "envmgr-gone")
    shutil.copytree(os.path.join(servers.root, "jupyter", "kernels"), orphan, dirs_exist_ok=True)
    with open(os.path.join(orphan, "kernel.json"), "w") as f:
        json.dump({"argv": ["x"], "display_name": "gone", "language": "python",
                   "metadata": {"envmgr": {"root": servers.root, "name": "gone"}}}, f)
    servers("second")
    assert sorted(os.listdir(kernels)) == ["envmgr-resynced"]
