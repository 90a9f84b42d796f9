"""Bytecode at build for conda environments (issue 14): the build's compile step leaves .pyc files for
the conda packages and the pip sub-list, and a kernel started on the revision writes none; a second
environment of the same packages links that bytecode from the cache and compiles nothing."""
import glob
import os
import re

from test_conda import env_yaml

from helpers import unique


async def test_a_conda_build_compiles_bytecode_and_a_kernel_compiles_none(api, envmgr_root, conda_channel):
    name = unique("conda-compiled")
    packages = env_yaml("envmgr-conda-demo=1.0", pip=["ipykernel"])
    await api.create({"name": name, "manager": "conda", "python": "3.11", "packages": packages})
    record = await api.wait(name)
    assert record["status"] == "ready", record["message"]
    site = os.path.join(envmgr_root, "envs", "default", name, "rev-0001", "lib", "python3.11", "site-packages")
    assert glob.glob(os.path.join(site, "envmgr_conda_demo", "__pycache__", "__init__.cpython-311*.pyc"))
    assert glob.glob(os.path.join(site, "ipykernel", "__pycache__", "kernelapp.cpython-311*.pyc"))
    before = set(glob.glob(os.path.join(site, "**", "*.pyc"), recursive=True))
    status, log = await api.call("GET", f"environments/{name}/log")
    assert "--> compile" in log and re.search(r"bytecode in [\d.]+s: \d+ linked from the cache, [1-9]\d* compiled", log)
    out = await api.run(f"envmgr-{name}", "import envmgr_conda_demo; print(envmgr_conda_demo.__version__)")
    assert out.strip() == "1.0"
    assert set(glob.glob(os.path.join(site, "**", "*.pyc"), recursive=True)) == before

    other = unique("conda-linked")
    await api.create({"name": other, "manager": "conda", "python": "3.11", "packages": packages})
    assert (await api.wait(other))["status"] == "ready"
    status, log = await api.call("GET", f"environments/{other}/log")
    assert re.search(r"bytecode in [\d.]+s: [1-9]\d* linked from the cache, 0 compiled", log), log
    rel = os.path.join("envmgr_conda_demo", "__pycache__", "__init__.cpython-311.pyc")
    other_site = site.replace(f"/{name}/", f"/{other}/")
    assert os.stat(os.path.join(site, rel)).st_ino == os.stat(os.path.join(other_site, rel)).st_ino
