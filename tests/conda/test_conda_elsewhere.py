"""`jupyter envmgr run` in a conda environment: the same activation (activate.d, variables:) as its kernel."""
import asyncio
import json
import os
import sys

from test_conda import env_yaml

CODE = ("import envmgr_conda_demo, os, sys, json; print(json.dumps({'v': envmgr_conda_demo.__version__, "
        "'prefix': sys.prefix, 'env': {k: os.environ.get(k) for k in ('ENVMGR_DEMO_HOME', 'ENVMGR_DEMO_FLAG', "
        "'ENVMGR_YAML_VAR', 'CONDA_PREFIX', 'JUPYTER_ENVMGR_REVISION')}, 'path': os.environ['PATH']}))")


async def test_run_gets_what_the_kernel_gets(api, envmgr_root, conda_channel):
    packages = env_yaml("envmgr-conda-demo=1.0", pip=["ipykernel"], variables={"ENVMGR_YAML_VAR": "'from-yaml $HOME'"})
    await api.create({"name": "conda-run", "manager": "conda", "python": "3.11", "packages": packages})
    record = await api.wait("conda-run")
    assert record["status"] == "ready", record["message"]
    kernel = json.loads(await api.run("envmgr-conda-run", CODE))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "jupyter_envmgr.cli", "run", "--root", envmgr_root, "conda-run", "--", "python", "-c", CODE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    run = json.loads(out)
    rev1 = os.path.join(envmgr_root, "envs", "default", "conda-run", "rev-0001")
    assert run["v"] == kernel["v"] == "1.0" and run["prefix"] == kernel["prefix"] == rev1
    assert run["env"] == kernel["env"]
    assert run["env"]["ENVMGR_DEMO_HOME"] == os.path.join(rev1, "share", "envmgr-demo")  # activate.d
    assert run["env"]["ENVMGR_YAML_VAR"] == "from-yaml $HOME"  # literally, as in the kernel
    assert run["path"].startswith(os.path.join(rev1, "bin") + os.pathsep)
