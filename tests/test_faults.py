"""A full disk: builds fail with the reason, requests get 507, records stay whole, nothing is stuck."""
import json
import os
import subprocess
import sys

import pytest

from jupyter_envmgr import runner


@pytest.fixture
def envmgr_root(tmp_path):
    """The root on a 6 MiB tmpfs (ipykernel alone needs more), mounted for the test."""
    path = tmp_path / "small-root"
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield str(path)
    if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


FILL_THEN_FAIL = """
import sys
with open(sys.argv[1], "wb", buffering=0) as f:
    try:
        while True:
            f.write(bytes(65536))
    except OSError as e:
        print("error: failed to write: No space left on device (os error 28)", flush=True)
        sys.exit(2)
"""


def test_a_step_that_fills_the_disk_still_gets_its_result(envmgr_root):
    """The log and the result share the full disk: the log is dropped, the result still says why."""
    result = os.path.join(envmgr_root, "result.json")
    plan = os.path.join(envmgr_root, "plan.json")
    with open(plan, "w") as f:
        json.dump({"log": os.path.join(envmgr_root, "build.log"), "result": result, "steps": [
            {"name": "install", "argv": [sys.executable, "-c", FILL_THEN_FAIL, os.path.join(envmgr_root, "fill")]}]}, f)
    done = subprocess.run([sys.executable, "-I", "-S", runner.__file__, plan], capture_output=True, timeout=60)
    assert done.returncode == 1, done.stderr
    with open(result) as f:
        outcome = json.load(f)
    assert outcome["status"] == "failed" and "storage is full" in outcome["message"], outcome


async def test_full_disk_fails_cleanly(api, envmgr_root):
    await api.create({"name": "too-big", "packages": ""})
    record = await api.wait("too-big", timeout=300)
    assert record["status"] == "failed", record
    assert "space" in record["message"].lower(), record["message"]
    with open(os.path.join(envmgr_root, "envs", "default", "too-big", "env.json")) as f:
        assert json.load(f)["status"] == "failed"  # the record is whole
    assert not os.path.exists(os.path.join(envmgr_root, "envs", "default", "too-big", "rev-0001"))  # space given back

    filler = os.path.join(envmgr_root, "filler")
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
    status, data = await api.call("POST", "environments", {"name": "no-room", "packages": ""})
    assert status == 507 and "full" in data["message"], (status, data)
    assert sorted(os.listdir(os.path.join(envmgr_root, "envs", "default"))) == ["too-big"]  # no half-made env
    status, data = await api.call("POST", "environments/too-big/actions", {"action": "rebuild"})
    assert status == 507
    assert (await api.get("too-big"))["status"] == "failed"  # not stuck pending

    os.unlink(filler)
    await api.ok("DELETE", "environments/too-big", expect=(204,))
    assert os.listdir(os.path.join(envmgr_root, "envs", "default")) == []
