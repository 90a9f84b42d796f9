"""`jupyter envmgr run` counts as a "job" use of the revision it runs (issue 25.4), on a real server and index."""
import asyncio
import os
import sys


async def test_a_run_is_a_job_in_usage(api, envmgr_root, local_index, jp_serverapp):
    await api.create({"name": "batch", "packages": "envmgr-demo-pkg==1.0\n", "index_urls": [local_index.url]})
    assert (await api.wait("batch"))["status"] == "ready"
    env = dict(os.environ, JUPYTER_ENVMGR_URL=jp_serverapp.connection_url, JUPYTER_ENVMGR_TOKEN=jp_serverapp.identity_provider.token)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "jupyter_envmgr.cli", "run", "--root", envmgr_root, "batch",
                                                "--", "python", "-c", "print('trained')", env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0 and out == b"trained\n", err
    usage = await api.ok("GET", "environments/batch/usage")
    assert [(u["notebook"], u["revision"]) for u in usage["recent"]] == [("job", 1)], usage

    other = dict(env, JUPYTER_ENVMGR_URL="http://127.0.0.1:9/")  # no server there: the job runs all the same
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "jupyter_envmgr.cli", "run", "--root", envmgr_root, "batch",
                                                "--", "python", "-c", "pass", env=other)
    assert await proc.wait() == 0
