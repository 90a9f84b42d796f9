"""The runner owns its plan: a server that died between launching a runner and recording its handle
leaves a runner the next server must follow, never a second runner on the same revision."""
import asyncio
import errno
import json
import os
import subprocess
import sys
import time

from jupyter_envmgr import runner
from jupyter_envmgr.builders.base import Build
from jupyter_envmgr.builders.local import LocalBuilder, runner_on
from jupyter_envmgr.recipes import BuildPaths
from jupyter_envmgr.spec import EnvSpec


def plan_in(tmp_path, seconds: float) -> BuildPaths:
    paths = BuildPaths(prefix=str(tmp_path / "rev-0001"), build_dir=str(tmp_path / "build"),
                       log=str(tmp_path / "build.log"), resources_dir=str(tmp_path / "resources"))
    os.makedirs(paths.build_dir)
    step = {"name": "install", "argv": [sys.executable, "-c", f"import time; time.sleep({seconds}); print('installed')"]}
    with open(paths.plan, "w") as f:
        json.dump({"log": paths.log, "result": paths.result, "steps": [step]}, f)
    return paths


def wait_for_claim(plan: str) -> int:
    deadline = time.monotonic() + 10
    while not (pid := runner_on(plan)):
        assert time.monotonic() < deadline, "the runner never claimed its plan"
        time.sleep(0.02)
    return pid


def test_a_second_runner_on_a_claimed_plan_leaves_it_alone(tmp_path):
    paths = plan_in(tmp_path, 1.5)
    first = subprocess.Popen([sys.executable, "-I", "-S", runner.__file__, paths.plan], start_new_session=True)
    assert wait_for_claim(paths.plan) == first.pid
    second = subprocess.run([sys.executable, "-I", "-S", runner.__file__, paths.plan], timeout=30)
    assert second.returncode == 0 and first.poll() is None  # it went away at once, the first still works
    assert first.wait(timeout=30) == 0
    assert runner_on(paths.plan) is None  # the lock went with the process
    with open(paths.log) as f:
        assert f.read().count("==> [1/1] install") == 1


def test_start_follows_a_runner_it_did_not_launch(tmp_path):
    paths = plan_in(tmp_path, 1.5)
    orphan = subprocess.Popen([sys.executable, "-I", "-S", runner.__file__, paths.plan], start_new_session=True)
    wait_for_claim(paths.plan)
    build = Build("default", "orphan", 1, EnvSpec.from_dict({"name": "orphan"}), paths, 60)

    async def start_and_wait():
        builder = LocalBuilder(poll_interval=0.05)
        handle = await builder.start(build)
        assert handle["pid"] == orphan.pid and builder.is_running(build)
        return await builder.wait(build)

    result = asyncio.run(start_and_wait())
    assert result["status"] == "ready", result
    orphan.wait(timeout=10)
    with open(paths.log) as f:
        assert f.read().splitlines().count("installed") == 1  # built once


def test_storage_without_locks_still_builds(tmp_path, monkeypatch):
    """NFS mounted `nolock` answers ENOLCK: the runner goes on (unclaimed) and a server finds no claim."""
    paths = plan_in(tmp_path, 0)

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(runner.fcntl, "flock", no_locks)
    monkeypatch.setattr(runner.signal, "signal", lambda *args: None)  # in-process: leave pytest's handlers alone
    assert runner.main(paths.plan) == 0
    with open(paths.result) as f:
        assert json.load(f)["status"] == "ready"
    assert runner_on(paths.plan) is None
