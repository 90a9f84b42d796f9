"""Fixtures of the real-JupyterHub tests (issue 22): one hub for the session (hubkit.Hub), with

- the Unix users alice and bob (hub users) and envsvc (the service's account), made with `useradd -m` when
  missing and removed again if this session made them;
- configurable-http-proxy from npm, installed once into ~/.cache/jupyter-envmgr-tests/chp;
- the envmgr service as a hub-managed service running as envsvc (`oauth_no_confirm`), the group
  team-a-readers with bob, and the two grants the service needs: the users' `access:services!service=envmgr`
  and the same scope asked for by the `server` role;
- alice's and bob's single-user servers, spawned through the hub's REST API, each given
  `--EnvManagerApp.service_url` (the service through the hub's proxy) and `JUPYTER_ENVMGR_ROOT`.

The venv of sys.executable (and the interpreter it links to, under /root for pyenv) must be reachable by
those users: `grant_traverse` adds o+x (never o+r) to the directories on the way that lack it, for the
session only. Running as root is needed (users, setuid); elsewhere the tests skip with that reason.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import hubkit  # noqa: E402


def _why_not() -> str:
    if os.geteuid() != 0:
        return "the JupyterHub tests make Unix users and setuid to them: run as root (CI does)"
    for tool in ("useradd", "userdel", "npm", "node"):
        if not shutil.which(tool):
            return f"the JupyterHub tests need {tool}"
    try:
        import jupyterhub  # noqa: F401
    except ImportError:
        return "the JupyterHub tests need the jupyterhub package (pip install -e '.[test]')"
    return ""


@pytest.fixture(scope="session")
def hub_machine():
    """Users, reachable venv, the proxy binary: what the machine needs before a hub can start."""
    reason = _why_not()
    if reason:
        pytest.skip(reason)
    import jupyter_envmgr

    made = hubkit.ensure_users(hubkit.USERS + (hubkit.SERVICE_USER,))
    changed = hubkit.grant_traverse([os.path.realpath(sys.executable), sys.prefix, sys.base_prefix,
                                     os.path.dirname(os.path.dirname(os.path.abspath(jupyter_envmgr.__file__)))])
    try:
        yield hubkit.install_proxy()
    finally:
        hubkit.remove_users(made)
        for name in set(hubkit.USERS + (hubkit.SERVICE_USER,)) - set(made):
            import pwd

            hubkit.end_processes(pwd.getpwnam(name).pw_uid)
        hubkit.restore_modes(changed)


@pytest.fixture(scope="session")
def hub(hub_machine, local_index):
    """The hub with its proxy and the service, and both users' servers started."""
    base = tempfile.mkdtemp(prefix="envmgr-hub-", dir="/tmp")
    hub = hubkit.Hub(base, hub_machine, local_index.url)
    try:
        started = time.monotonic()
        hub.start()
        times = [f"hub, proxy and service {time.monotonic() - started:.1f} s"]
        for user in hubkit.USERS:
            started = time.monotonic()
            hub.spawn(user)
            times.append(f"{user}'s server {time.monotonic() - started:.1f} s")
        print("started: " + ", ".join(times))  # shown with -s
        yield hub
    except BaseException:
        print(f"--- hub log tail ({hub.log_path if hasattr(hub, 'log_path') else base}) ---")
        if hasattr(hub, "log_path"):
            print(hub.log_tail())
        raise
    finally:
        hub.stop()
        for name in hubkit.USERS + (hubkit.SERVICE_USER,):
            import pwd

            hubkit.end_processes(pwd.getpwnam(name).pw_uid)
        if os.environ.get("ENVMGR_TEST_KEEP_HUB"):
            print(f"hub base kept: {base}")
        else:
            hubkit.remove_tree(base)
