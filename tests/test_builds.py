"""Builds under pressure: the create race, bounded concurrency, cancel and delete mid-build."""
import asyncio
import os
import threading

import pytest

from helpers import unique
from jupyter_envmgr.errors import EnvmgrError
from jupyter_envmgr.store import Store


async def test_eight_simultaneous_creates_give_one_202(api):
    body = {"name": "racy", "packages": ""}
    results = await asyncio.gather(*[api.call("POST", "environments", body) for _ in range(8)])
    codes = sorted(code for code, _ in results)
    assert codes == [202] + [409] * 7, results
    await api.wait("racy")


def test_store_create_is_exclusive_across_threads(tmp_path):
    """Two servers on one root race at the file system: exactly one claims the name."""
    store = Store(str(tmp_path))
    outcomes = []
    barrier = threading.Barrier(8)

    def claim(i):
        barrier.wait()
        try:
            store.create("default", "same", {"name": "same", "by": i})
            outcomes.append("ok")
        except EnvmgrError as e:
            outcomes.append(e.status)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes, key=str) == [409] * 7 + ["ok"]
    assert [e for e in os.listdir(store.envs_dir("default"))] == ["same"]


def runner_pids(root):
    """Processes whose command line names a plan under this root."""
    pids = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if root.encode() in f.read():
                        pids.append(int(pid))
            except OSError:
                pass
    return pids


@pytest.mark.parametrize("envmgr_overrides", [{"max_concurrent_builds": 1}])
async def test_queue_then_cancel_running_and_pending(api, local_index, envmgr_root):
    slow = unique("envmgr-slow")
    first = await api.create({"name": "first", "packages": f"{slow}\n", "index_urls": [local_index.url]})
    second = await api.create({"name": "second", "packages": "", "index_urls": [local_index.url]})
    assert first["status"] in ("pending", "warming") and second["status"] in ("pending", "warming")
    await api.wait_for("first", lambda r: r["status"] == "warming")
    assert (await api.get("second"))["status"] == "pending"  # one slot, so it queues

    cancelled = await api.ok("POST", "environments/second/actions", {"action": "cancel"}, expect=(202,))
    assert cancelled["status"] == "cancelled"
    cancelled = await api.ok("POST", "environments/first/actions", {"action": "cancel"}, expect=(202,))
    assert cancelled["status"] == "cancelled" and cancelled["ready_revision"] is None
    assert not runner_pids(envmgr_root)
    env_dir = os.path.join(envmgr_root, "envs", "default", "first")
    assert not os.path.exists(os.path.join(env_dir, "rev-0001"))
    revisions = (await api.ok("GET", "environments/first/revisions"))["revisions"]
    assert revisions[0]["status"] == "cancelled"
    # After a cancel, a rebuild is allowed and succeeds.
    await api.ok("PATCH", "environments/first", {"packages": "envmgr-demo-pkg\n"}, expect=(202,))
    assert (await api.wait("first"))["status"] == "ready"


async def test_delete_mid_build_leaves_nothing(api, local_index, envmgr_root):
    await api.create({"name": "doomed", "packages": f"{unique('envmgr-slow')}\n", "index_urls": [local_index.url]})
    await api.wait_for("doomed", lambda r: r["status"] == "warming")
    await api.ok("DELETE", "environments/doomed", expect=(204,))
    assert not runner_pids(envmgr_root)
    assert os.listdir(os.path.join(envmgr_root, "envs", "default")) == []
    assert (await api.call("GET", "environments/doomed"))[0] == 404


@pytest.mark.parametrize("envmgr_overrides", [{"build_timeout": 3.0}])
async def test_build_timeout_fails_the_build(api, local_index, envmgr_root):
    await api.create({"name": "too-slow", "packages": f"{unique('envmgr-slow')}\n", "index_urls": [local_index.url]})
    record = await api.wait("too-slow", timeout=120)
    assert record["status"] == "failed" and "time limit" in record["message"]
    assert not runner_pids(envmgr_root)


async def test_init_script_variables_reach_the_kernel(api, local_index):
    script = (
        "import os\n"
        "res = os.environ['ENVMGR_RESOURCES_DIR']\n"
        "open(os.path.join(res, 'model.txt'), 'w').write('weights')\n"
        "print('preparing resources in', res)\n"
        "open(os.environ['ENVMGR_ENV_FILE'], 'a').write(f'MODEL_HOME={res}\\n')\n"
    )
    await api.create({"name": "with-init", "packages": "", "init_script": script})
    record = await api.wait("with-init")
    assert record["status"] == "ready", record["message"]
    out = await api.run("envmgr-with-init", "import os; print(open(os.path.join(os.environ['MODEL_HOME'], 'model.txt')).read())")
    assert out.strip() == "weights"
    # A failing init script fails the revision; the previous one keeps serving.
    await api.ok("PATCH", "environments/with-init", {"init_script": "raise SystemExit('no GPU here')\n"}, expect=(202,))
    record = await api.wait("with-init")
    assert record["status"] == "failed" and "init" in record["message"] and record["ready_revision"] == 1
