"""Team scale (issue 14): bytecode compiled at build, kernelspecs read once per change, hard-linked
re-creates, shared files and their usage figures. Real servers, real uv builds, real kernels."""
import asyncio
import glob
import json
import os
import shutil
import time

import pytest
from jupyter_client.kernelspec import NoSuchKernel

from helpers import disk, unique
from jupyter_envmgr.kernels import CachingKernelSpecManager


def pyc_files(prefix: str) -> set:
    return set(glob.glob(os.path.join(prefix, "lib", "python*", "site-packages", "**", "*.pyc"), recursive=True))


async def test_a_pip_build_compiles_bytecode_and_a_kernel_compiles_none(api, local_index, envmgr_root):
    name = unique("compiled")
    await api.create({"name": name, "packages": "envmgr-demo-pkg==1.0\n", "index_urls": [local_index.url]})
    record = await api.wait(name)
    assert record["status"] == "ready", record["message"]
    prefix = os.path.join(envmgr_root, "envs", "default", name, "rev-0001")
    before = pyc_files(prefix)
    site = glob.glob(os.path.join(prefix, "lib", "python*", "site-packages"))[0]
    assert glob.glob(os.path.join(site, "envmgr_demo_pkg", "__pycache__", "__init__.*.pyc")), "the package was not compiled"
    assert glob.glob(os.path.join(site, "ipykernel", "__pycache__", "kernelapp.*.pyc")), "ipykernel was not compiled"
    out = await api.run(f"envmgr-{name}", "import envmgr_demo_pkg, ipykernel.kernelapp; print(envmgr_demo_pkg.__version__)")
    assert out.strip() == "1.0"
    assert pyc_files(prefix) == before, "starting a kernel wrote bytecode into the revision"


def write_spec(directory: str, name: str, display: str) -> None:
    os.makedirs(os.path.join(directory, name), exist_ok=True)
    with open(os.path.join(directory, name, "kernel.json"), "w") as f:
        json.dump({"argv": ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"], "display_name": display,
                   "language": "python"}, f)


class CountingKSM(CachingKernelSpecManager):
    reads = 0

    def _get_kernel_spec_by_name(self, kernel_name, resource_dir):
        CountingKSM.reads += 1
        return super()._get_kernel_spec_by_name(kernel_name, resource_dir)


def test_kernelspecs_are_read_once_per_change(tmp_path):
    ours, other = str(tmp_path / "root-kernels"), str(tmp_path / "other-kernels")
    for i in range(20):
        write_spec(ours, f"envmgr-e{i}", f"env {i}")
    write_spec(other, "julia", "Julia")
    ksm = CountingKSM(kernel_dirs=[ours, other], ensure_native_kernel=False)
    ksm.ours = [ours]
    CountingKSM.reads = 0
    specs = ksm.get_all_specs()
    assert len(specs) == 21 and CountingKSM.reads == 21
    assert specs["julia"]["spec"]["display_name"] == "Julia" and specs["julia"]["resources"] == {}
    for _ in range(5):  # requests: nothing read again
        assert len(ksm.get_all_specs()) == 21
    assert ksm.get_kernel_spec("envmgr-e3").display_name == "env 3"
    assert CountingKSM.reads == 21
    # The registry rewrites one of ours and refreshes: only that one is read again.
    time.sleep(0.01)
    with open(os.path.join(ours, "envmgr-e3", "kernel.json.tmp"), "w") as f:
        json.dump({"argv": ["x", "{connection_file}"], "display_name": "env 3 v2", "language": "python"}, f)
    os.replace(os.path.join(ours, "envmgr-e3", "kernel.json.tmp"), os.path.join(ours, "envmgr-e3", "kernel.json"))
    ksm.refresh(["envmgr-e3"])
    assert ksm.get_all_specs()["envmgr-e3"]["spec"]["display_name"] == "env 3 v2" and CountingKSM.reads == 22
    write_spec(ours, "envmgr-new", "new")  # a new one of ours: its dir's mtime moved, yet nothing else is re-read
    ksm.refresh(["envmgr-new"])
    assert ksm.get_all_specs()["envmgr-new"]["spec"]["display_name"] == "new" and CountingKSM.reads == 23
    # Another tool edits a foreign spec in place, installs one, removes one: each request sees it.
    time.sleep(0.01)
    write_spec(other, "julia", "Julia 1.11")
    assert ksm.get_all_specs()["julia"]["spec"]["display_name"] == "Julia 1.11" and CountingKSM.reads == 24
    write_spec(other, "ir", "R")
    assert "ir" in ksm.get_all_specs() and CountingKSM.reads == 25
    shutil.rmtree(os.path.join(ours, "envmgr-e0"))
    assert "envmgr-e0" not in ksm.get_all_specs() and CountingKSM.reads == 25
    with pytest.raises(NoSuchKernel):
        ksm.get_kernel_spec("envmgr-e0")


async def test_the_server_lists_kernelspecs_from_its_cache(api, jp_fetch, jp_serverapp, local_index):
    ksm = jp_serverapp.kernel_spec_manager
    assert isinstance(ksm, CachingKernelSpecManager)
    name = unique("picked")
    await api.create({"name": name, "packages": "envmgr-demo-pkg==1.0\n", "index_urls": [local_index.url]})
    assert (await api.wait(name))["status"] == "ready"
    listed = json.loads((await jp_fetch("api", "kernelspecs")).body)["kernelspecs"]
    spec = listed[f"envmgr-{name}"]
    assert spec["spec"]["metadata"]["envmgr"]["revision"] == 1 and "logo-64x64" in spec["resources"]
    # A change of the spec (env_vars) is listed at once: the registry refreshed the cache when it wrote it.
    await api.ok("PATCH", f"environments/{name}", {"env_vars": {"TEAM": "blue"}})
    listed = json.loads((await jp_fetch("api", "kernelspecs")).body)["kernelspecs"]
    assert listed[f"envmgr-{name}"]["spec"]["env"]["TEAM"] == "blue"
    assert "blue" in await api.run(f"envmgr-{name}", "import os; print(os.environ['TEAM'])")
    await api.ok("DELETE", f"environments/{name}", expect=(204,))
    listed = json.loads((await jp_fetch("api", "kernelspecs")).body)["kernelspecs"]
    assert f"envmgr-{name}" not in listed and "python3" in listed


def site_packages(root: str, name: str, revision: int) -> str:
    return glob.glob(os.path.join(root, "envs", "default", name, f"rev-{revision:04d}", "lib", "python*", "site-packages"))[0]


async def test_same_lock_is_a_hard_linked_copy_that_works_in_a_kernel(api, local_index, envmgr_root):
    body = {"packages": "envmgr-demo-pkg==1.0\n", "index_urls": [local_index.url]}
    first, second = unique("first"), unique("second")
    await api.create({"name": first, **body})
    assert (await api.wait(first))["status"] == "ready"
    status, log = await api.call("GET", f"environments/{first}/log")
    assert "==> reuse" not in log and "install" in log  # nothing to copy yet: installed

    await api.create({"name": second, **body})
    record = await api.wait(second)
    assert record["status"] == "ready", record["message"]
    status, log = await api.call("GET", f"environments/{second}/log")
    assert f"==> reuse: the resolved lock equals that of envs/default/{first}/rev-0001" in log and "uv pip install" not in log
    a, b = site_packages(envmgr_root, first, 1), site_packages(envmgr_root, second, 1)
    assert os.stat(os.path.join(a, "envmgr_demo_pkg", "__init__.py")).st_ino == os.stat(os.path.join(b, "envmgr_demo_pkg", "__init__.py")).st_ino
    prefix_a = os.path.join(envmgr_root, "envs", "default", first, "rev-0001")
    prefix_b = os.path.join(envmgr_root, "envs", "default", second, "rev-0001")
    for script in os.listdir(os.path.join(prefix_b, "bin")):  # nothing of B points into A
        path = os.path.join(prefix_b, "bin", script)
        if os.path.isfile(path) and not os.path.islink(path):
            with open(path, "rb") as f:
                assert prefix_a.encode() not in f.read(), script
    assert (await api.ok("GET", f"environments/{second}/export", format="requirements")).count("envmgr-demo-pkg==1.0") == 1
    out = await api.run(f"envmgr-{second}", "import sys, envmgr_demo_pkg; print(sys.prefix, envmgr_demo_pkg.__version__)")
    assert out.split() == [prefix_b, "1.0"]

    # A rebuild with the same inputs and lock installs nothing: revision 2 is a copy of revision 1.
    await api.ok("POST", f"environments/{second}/actions", {"action": "rebuild"}, expect=(202,))
    record = await api.wait_for(second, lambda r: r["ready_revision"] == 2 and r["status"] == "ready")
    status, log = await api.call("GET", f"environments/{second}/log", revision=2)
    assert f"==> reuse: the resolved lock equals that of envs/default/{second}/rev-0001" in log and "uv pip install" not in log
    plan = os.path.join(envmgr_root, "envs", "default", "{}", "builds", "rev-{:04d}", "plan.json")
    assert os.path.isfile(plan.format(first, 1)) and not os.path.exists(plan.format(second, 2))  # installed; not built at all
    one, two = site_packages(envmgr_root, second, 1), site_packages(envmgr_root, second, 2)
    record = "envmgr_demo_pkg-1.0.dist-info/RECORD"  # each uv install writes its own; a copy links revision 1's
    assert os.stat(os.path.join(one, record)).st_ino == os.stat(os.path.join(two, record)).st_ino

    # Another lock installs as usual; its bytecode is linked from the root's bytecode cache (bytecode.py) where another build compiled the same file.
    await api.ok("PATCH", f"environments/{second}", {"packages": "envmgr-demo-pkg==2.0\n"}, expect=(202,))
    record = await api.wait_for(second, lambda r: r["ready_revision"] == 3 and r["status"] == "ready")
    status, log = await api.call("GET", f"environments/{second}/log", revision=3)
    assert "==> reuse" not in log
    old, new = site_packages(envmgr_root, second, 2), site_packages(envmgr_root, second, 3)
    pyc = os.path.relpath(glob.glob(os.path.join(new, "ipykernel", "__pycache__", "kernelapp.*.pyc"))[0], new)
    assert os.stat(os.path.join(new, pyc)).st_ino == os.stat(os.path.join(old, pyc)).st_ino
    assert "2.0" in await api.run(f"envmgr-{second}", "import envmgr_demo_pkg; print(envmgr_demo_pkg.__version__)")

    usage = await api.ok("GET", f"environments/{second}/usage")
    assert set(usage) == {"revisions", "last_used", "running_kernels", "kernels", "recent"} and usage["last_used"]
    revs = {r["revision"]: r for r in usage["revisions"]}
    assert sorted(revs) == [1, 2, 3]
    for r in revs.values():
        assert set(r) == {"revision", "bytes", "unique_bytes", "files"} and r["files"] > 100 and r["bytes"] > 0
        assert r["unique_bytes"] < r["bytes"] / 5, r  # nearly every file is shared with the cache or another revision
    assert revs[2]["files"] == revs[1]["files"] and revs[2]["bytes"] == revs[1]["bytes"]
    status, body = await api.call("GET", "environments/no-such-env/usage")
    assert status == 404 and body["reason"]


async def test_three_revisions_differing_in_one_small_package_take_little_more_than_one(api, local_index, envmgr_root):
    name = unique("disk")
    await api.create({"name": name, "packages": "envmgr-demo-pkg==1.0\n", "index_urls": [local_index.url]})
    assert (await api.wait(name))["status"] == "ready"
    for revision, packages in ((2, "envmgr-demo-pkg==2.0\n"), (3, "envmgr-demo-pkg==1.0\nenvmgr-extra-pkg\n")):
        await api.ok("PATCH", f"environments/{name}", {"packages": packages}, expect=(202,))
        record = await api.wait_for(name, lambda r, n=revision: r["ready_revision"] == n and r["status"] == "ready")
    prefixes = [os.path.join(envmgr_root, "envs", "default", name, f"rev-{n:04d}") for n in (1, 2, 3)]
    one, three = disk(prefixes[0]), disk(*prefixes)
    assert three <= 1.2 * one, (one, three)
    usage = await api.ok("GET", f"environments/{name}/usage")
    revs = {r["revision"]: r for r in usage["revisions"]}
    assert revs[1]["bytes"] == disk(prefixes[0]) and all(r["unique_bytes"] < 0.1 * r["bytes"] for r in revs.values()), revs
    assert usage["running_kernels"] == 0 and usage["last_used"] is None and record["ready_revision"] == 3

    # Deleting the environment renames it into trash/, which is emptied in the background.
    await api.ok("DELETE", f"environments/{name}", expect=(204,))
    deadline = time.monotonic() + 60
    while os.listdir(os.path.join(envmgr_root, "trash")):
        assert time.monotonic() < deadline, os.listdir(os.path.join(envmgr_root, "trash"))
        await asyncio.sleep(0.1)
