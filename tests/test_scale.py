"""Team scale (issue 14): bytecode compiled at build, kernelspecs read once per change, hard-linked
re-creates, shared files and their usage figures. Real servers, real uv builds, real kernels."""
import glob
import os

from helpers import unique


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
