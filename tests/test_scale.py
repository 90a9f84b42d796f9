"""Team scale (issue 14): bytecode compiled at build, kernelspecs read once per change, hard-linked
re-creates, shared files and their usage figures. Real servers, real uv builds, real kernels."""
import glob
import json
import os
import shutil
import time

import pytest
from jupyter_client.kernelspec import NoSuchKernel

from helpers import unique
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
    ksm.ours = ours
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
