"""Bytecode shared across environments (issue 14, items 4 and 6), for real: uv builds through a real
server, kernels that import the packages, and a second interpreter version when one is installed."""
import glob
import os
import re
import subprocess

import pytest

from helpers import unique

NO_REUSE = [{"reuse_revisions": False}]  # so the second environment installs (and compiles) rather than copies


def site_packages(root: str, name: str) -> str:
    return glob.glob(os.path.join(root, "envs", "default", name, "rev-0001", "lib", "python*", "site-packages"))[0]


def pycache(site: str) -> dict:
    """{path: (inode, mtime_ns)} of every .pyc under `site`."""
    out = {}
    for path in glob.glob(os.path.join(site, "**", "__pycache__", "*.pyc"), recursive=True):
        st = os.stat(path)
        out[path] = (st.st_ino, st.st_mtime_ns)
    return out


async def build(api, name: str, index_url: str, python: str = None) -> str:
    body = {"name": name, "packages": "envmgr-demo-pkg==1.0\n", "index_urls": [index_url]}
    if python:
        body["python"] = python
    await api.create(body)
    record = await api.wait(name)
    assert record["status"] == "ready", record["message"]
    status, log = await api.call("GET", f"environments/{name}/log")
    return log


def compiled(log: str) -> tuple:
    """(directories installed with their bytecode by uv, files linked from the bytecode cache, files compiled)."""
    m = re.search(r"bytecode: (\d+) directories installed with theirs, (\d+) files linked from the cache, (\d+) compiled", log)
    assert m, log
    return int(m[1]), int(m[2]), int(m[3])


@pytest.mark.parametrize("envmgr_overrides", NO_REUSE)
async def test_two_environments_share_bytecode_and_a_kernel_compiles_nothing(api, local_index, envmgr_root):
    first, second = unique("pyc-a"), unique("pyc-b")
    installed, linked, made = compiled(await build(api, first, local_index.url))
    assert made > 100 or installed > 10  # ipykernel and its dependencies: compiled once (the tests' uv cache
    # outlives a run, and once compiled, uv's unpacked wheels hold the bytecode)
    installed, linked, made = compiled(await build(api, second, local_index.url))
    assert made == 0 and installed > 10, (installed, linked, made)  # uv linked them with their sources
    a, b = site_packages(envmgr_root, first), site_packages(envmgr_root, second)
    for rel in ("envmgr_demo_pkg/__init__.py", "ipykernel/kernelapp.py"):
        folder, module = os.path.split(rel)
        pa = glob.glob(os.path.join(a, folder, "__pycache__", module[:-3] + ".*.pyc"))
        pb = glob.glob(os.path.join(b, folder, "__pycache__", module[:-3] + ".*.pyc"))
        assert pa and pb and os.stat(pa[0]).st_ino == os.stat(pb[0]).st_ino, rel
    before = pycache(b)
    out = await api.run(f"envmgr-{second}", "import envmgr_demo_pkg, ipykernel.kernelapp, sys; "
                                            "print(envmgr_demo_pkg.__version__, ipykernel.kernelapp.__file__)")
    assert out.split() == ["1.0", os.path.join(b, "ipykernel", "kernelapp.py")]
    assert pycache(b) == before, "starting a kernel wrote bytecode into the environment"
    # usage: the shared .pyc are not counted as what deleting the revision would free
    usage = await api.ok("GET", f"environments/{second}/usage")
    rev = usage["revisions"][0]
    assert rev["unique_bytes"] < rev["bytes"] / 5, rev


@pytest.mark.parametrize("envmgr_overrides", NO_REUSE)
async def test_another_python_version_never_gets_the_others_bytecode(api, local_index, envmgr_root):
    offered = (await api.ok("GET", "info"))["python_versions"]
    minors = sorted({".".join(v.split(".")[:2]) for v in offered}, key=lambda v: tuple(map(int, v.split("."))))
    if len(minors) < 2:
        pytest.skip(f"one Python version installed ({offered}): nothing to compare")
    old, new = unique("pyc-old"), unique("pyc-new")
    await build(api, old, local_index.url, python=minors[0])
    installed, linked, made = compiled(await build(api, new, local_index.url, python=minors[-1]))
    assert made > 100 or installed > 10, (installed, linked, made)  # compiled by its own interpreter, maybe earlier
    a, b = site_packages(envmgr_root, old), site_packages(envmgr_root, new)
    source = os.path.join("envmgr_demo_pkg", "__init__.py")
    assert os.stat(os.path.join(a, source)).st_ino == os.stat(os.path.join(b, source)).st_ino  # one source file...
    python = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(b))), "bin", "python")
    tag, magic = subprocess.run([python, "-c", "import sys, importlib.util; print(sys.implementation.cache_tag, "
                                 "importlib.util.MAGIC_NUMBER.hex())"], capture_output=True, text=True, check=True).stdout.split()
    theirs = {os.stat(p).st_ino for p in pycache(a) if os.path.basename(p).split(".")[-2] != tag}
    ours = [p for p in pycache(b) if os.path.basename(p).split(".")[-2] == tag]  # uv links in both tags' files
    assert len(ours) > 100
    for path in ours:  # ...two bytecodes, each its interpreter's
        assert os.stat(path).st_ino not in theirs, path
        with open(path, "rb") as f:
            assert f.read(4).hex() == magic, path
    before = pycache(b)
    assert (await api.run(f"envmgr-{new}", "import envmgr_demo_pkg, ipykernel.kernelapp; print(envmgr_demo_pkg.__version__)")).strip() == "1.0"
    assert pycache(b) == before
    cache = os.path.join(envmgr_root, "cache", "bytecode")
    assert len([d for d in os.listdir(cache) if d.startswith("cpython-")]) == 2
