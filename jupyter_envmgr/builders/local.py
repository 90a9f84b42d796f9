"""Local builds: the runner as a subprocess in its own session (process group).

Its own session means a server crash or restart does not take the build down; the handle
(host, boot id, pid) lets the next server on this machine follow it to its end or notice it died.
"""
from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import socket
import sys
import time

from .. import runner
from .base import Build, Builder, clear_result, read_result

RUNNER = os.path.abspath(runner.__file__)
DIED = "the build process ended without a result (it was killed, or the machine restarted); rebuild to try again"


def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def runner_alive(handle: dict, plan_path: str) -> bool:
    """The pid still runs *our* runner on this plan (guards against pid reuse)."""
    try:
        with open(f"/proc/{handle['pid']}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except (OSError, KeyError):
        return False
    return plan_path.encode() in argv


def runner_on(plan_path: str):
    """The pid of a runner that still works on this plan (it holds the lock of its pid file), else None."""
    try:
        fd = os.open(os.path.join(os.path.dirname(plan_path), runner.PID_FILE), os.O_RDONLY)
    except OSError:
        return None
    try:
        for _ in range(50):  # the runner writes its pid right after it takes the lock
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return None
            except BlockingIOError:
                pid = os.pread(fd, 32, 0).strip()
            except OSError:  # storage without locks: nothing to learn here
                return None
            if pid:
                return int(pid)
            time.sleep(0.01)
        return None
    finally:
        os.close(fd)


def kill_group(handle) -> None:
    """SIGKILL the runner's process group (its pid: the runner leads its own session); gone is fine."""
    pid = (handle or {}).get("pid")
    if pid and (handle or {}).get("host") == socket.gethostname():
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class LocalBuilder(Builder):
    kind = "local"

    def __init__(self, python: str = sys.executable, poll_interval: float = 0.5):
        self.python = python
        self.poll_interval = poll_interval
        self._children: dict = {}

    async def start(self, build: Build) -> dict:
        handle = {"kind": "local", "host": socket.gethostname(), "boot_id": boot_id()}
        pid = await asyncio.to_thread(runner_on, build.paths.plan)
        if pid and runner_alive({"pid": pid}, build.paths.plan):  # launched by a server that died before it
            build.handle = {**handle, "pid": pid}                 # could record the handle: follow that runner
            return build.handle
        await asyncio.to_thread(clear_result, build)
        with open(build.paths.log, "ab") as errors:  # logs/ exists since the claim; never re-create a deleted env
            proc = await asyncio.create_subprocess_exec(
                self.python, "-I", "-S", RUNNER, build.paths.plan,  # stdlib only: skip site for a fast start
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=errors,
                start_new_session=True,
            )
        self._children[build.key] = proc
        build.handle = {**handle, "pid": proc.pid}
        return build.handle

    async def wait(self, build: Build) -> dict:
        proc = self._children.get(build.key)
        try:
            if proc is not None:
                await proc.wait()
            else:  # re-attached after a restart: not our child, so watch /proc
                while await asyncio.to_thread(runner_alive, build.handle or {}, build.paths.plan):
                    await asyncio.sleep(self.poll_interval)
        finally:
            self._children.pop(build.key, None)
            kill_group(build.handle)  # whatever the runner left behind (it may have been SIGKILLed)
        return await asyncio.to_thread(read_result, build, DIED)

    async def cancel(self, build: Build) -> None:
        pid = (build.handle or {}).get("pid")
        if not pid or not await asyncio.to_thread(runner_alive, build.handle, build.paths.plan):
            kill_group(build.handle)
            return
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                return
            for _ in range(int(grace / 0.05)):
                if not runner_alive(build.handle, build.paths.plan):
                    return
                await asyncio.sleep(0.05)

    def owns(self, handle: dict) -> bool:
        return handle.get("kind") == "local" and handle.get("host") == socket.gethostname()

    def is_running(self, build: Build) -> bool:
        return build.key in self._children or runner_alive(build.handle or {}, build.paths.plan)
