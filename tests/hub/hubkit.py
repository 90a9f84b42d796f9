"""A real JupyterHub for the team case: real Unix users, configurable-http-proxy from npm, the envmgr
service as a hub-managed service under an account of its own, and single-user servers that the hub's
LocalProcessSpawner starts as their users, through the hub's REST API.

Nothing here stands in for a part: the hub, the proxy, the service, the servers and the kernels are the
real programs, each in its own process, and the Unix users are real (`useradd -m`). It needs root (to make
users, and because the hub setuids to them); tests/hub/conftest.py skips with the reason otherwise.
"""
from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Optional

from jupyter_envmgr.client import ClientError, EnvmgrClient  # noqa: F401 - the tests use both
from jupyter_envmgr.demo import free_port
from helpers import grant_traverse, restore_modes  # noqa: F401 - conftest uses both through hubkit

USERS = ("alice", "bob")
SERVICE_USER = "envsvc"
SERVICE = "envmgr"
ADMIN_SERVICE = "envmgr-tests"
GROUP = "team-a-readers"
NAMESPACE_ACCESS = {
    "team-a": {"read": [f"group:{GROUP}"], "write": ["alice"]},
    "default": {"read": ["*"], "write": ["*"]},  # a team sandbox: everyone may make their own there
}
VENV_BIN = os.path.dirname(os.path.abspath(sys.executable))
CACHE = os.environ.get("ENVMGR_TEST_HUB_CACHE") or os.path.join(
    pwd.getpwuid(os.getuid()).pw_dir, ".cache", "jupyter-envmgr-tests")
#: uv's cache of the service: owned by the service's account, so not under root's home; kept between runs.
SERVICE_UV_CACHE = os.environ.get("ENVMGR_TEST_HUB_UV_CACHE") or "/var/tmp/jupyter-envmgr-hub-tests/uv"


def network_env() -> dict:
    """The machine's TLS, proxy and installer settings (a CA bundle of a proxy, say): the service's builds need
    them to reach the package index, and the hub passes a process only the variables it is told to."""
    keys = ("SSL_CERT", "CA_BUNDLE", "CA_CERTS", "PROXY")
    return {k: v for k, v in os.environ.items()
            if any(part in k.upper() for part in keys) or k.startswith(("UV_", "PIP_"))}


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2):
    """Call `predicate` until it returns something true; AssertionError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - the last failure is reported
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {last!r})")
        time.sleep(interval)


# ---------------------------------------------------------------------------------------- machine setup

def ensure_users(names) -> list:
    """Make the Unix users that do not exist yet (home 0700); returns the ones made here."""
    made = []
    for name in names:
        try:
            pwd.getpwnam(name)
        except KeyError:
            subprocess.run(["useradd", "-m", "-s", "/bin/bash", name], check=True, capture_output=True, timeout=60)
            made.append(name)
        os.chmod(pwd.getpwnam(name).pw_dir, 0o700)
    return made


def processes_of(uid: int) -> list:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                for line in f:
                    if line.startswith("Uid:"):
                        if int(line.split()[1]) == uid:
                            pids.append(int(entry))
                        break
        except OSError:
            continue
    return pids


def end_processes(uid: int, timeout: float = 10) -> None:
    """End what still runs as a test user (servers, kernels, builds that the hub or the service started)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in processes_of(uid):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while processes_of(uid) and time.monotonic() < deadline:
            time.sleep(0.1)


def remove_users(names) -> None:
    for name in names:
        end_processes(pwd.getpwnam(name).pw_uid)
        subprocess.run(["userdel", "-r", name], capture_output=True, timeout=60)


def install_proxy() -> str:
    """configurable-http-proxy from npm, installed once into the tests' cache (outside the repository)."""
    prefix = os.path.join(CACHE, "chp")
    binary = os.path.join(prefix, "node_modules", ".bin", "configurable-http-proxy")
    if not os.path.exists(binary):
        os.makedirs(prefix, exist_ok=True)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", prefix, "configurable-http-proxy@4"],
                       check=True, capture_output=True, timeout=600)
    return binary


# ---------------------------------------------------------------------------------------- running as a user

def user_env(name: str, **extra) -> dict:
    home = pwd.getpwnam(name).pw_dir
    return {"PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin", "HOME": home, "USER": name, "LOGNAME": name,
            "LANG": "C.UTF-8", **extra}


def as_user(name: str, argv: list, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    """Run argv as the Unix user `name` (setuid in the child: uid, gid and no extra groups)."""
    entry = pwd.getpwnam(name)
    return subprocess.run(argv, user=entry.pw_uid, group=entry.pw_gid, extra_groups=[], env=user_env(name),
                          cwd=entry.pw_dir, capture_output=True, text=True, timeout=timeout, **kwargs)


def python_as(name: str, code: str, *args, timeout: float = 120) -> dict:
    """Run Python `code` as `name`; the code prints one JSON object as its last line, which is returned."""
    done = as_user(name, [sys.executable, "-c", code, *args], timeout=timeout)
    assert done.returncode == 0, f"as {name}: {done.stderr[-3000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------- HTTP

class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a redirect is an answer (the tests check that a bad token is never sent to a login page)


_OPENER = urllib.request.build_opener(_NoRedirect)


def http(method: str, url: str, token: str = "", body=None, timeout: float = 30, headers=None) -> tuple:
    """(status, parsed JSON or text, headers) of one request; errors and redirects are answers, not exceptions."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", f"token {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            status, raw, headers = resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as e:
        status, raw, headers = e.code, e.read(), e.headers
    text = raw.decode(errors="replace")
    try:
        return status, json.loads(text) if text else None, headers
    except ValueError:
        return status, text, headers


# ---------------------------------------------------------------------------------------- the hub

class Hub:
    """One JupyterHub with its proxy and the envmgr service, in `base` (0755, owned by root).

    base/hub       the hub's database, cookie secret, config and log (0700: root's only)
    base/root      the envmgr root, owned by the service's account
    base/service   the service's config file (readable by the service)
    """

    def __init__(self, base: str, proxy: str, index_url: str):
        self.base = base
        self.proxy_bin = proxy
        self.index_url = index_url
        self.hub_dir = os.path.join(base, "hub")
        self.root = os.path.join(base, "root")
        self.service_dir = os.path.join(base, "service")
        self.hold_file = os.path.join(self.service_dir, "hold")
        self.port = free_port()
        self.hub_port = free_port()
        self.api_port = free_port()
        self.service_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        #: The service's URL as notebook servers are given it (through the hub's proxy).
        self.service_url = f"{self.url}/services/{SERVICE}/"
        #: The service itself, not through the proxy.
        self.service_direct = f"http://127.0.0.1:{self.service_port}/services/{SERVICE}/"
        self.admin_token = secrets.token_hex(24)
        self.password = secrets.token_hex(12)
        self.proc: Optional[subprocess.Popen] = None
        self.tokens: dict = {}
        self.svc = pwd.getpwnam(SERVICE_USER)

    # ---------------------------------------------------------------- setup

    def write_config(self) -> None:
        for d in (self.hub_dir, self.service_dir):
            os.makedirs(d, exist_ok=True)
        os.chmod(self.base, 0o755)
        os.chmod(self.hub_dir, 0o700)
        os.chmod(self.service_dir, 0o755)
        os.makedirs(self.root, exist_ok=True)
        os.chown(self.root, self.svc.pw_uid, self.svc.pw_gid)
        os.chmod(self.root, 0o755)
        os.makedirs(SERVICE_UV_CACHE, exist_ok=True)
        os.chmod(os.path.dirname(SERVICE_UV_CACHE), 0o755)
        subprocess.run(["chown", "-R", f"{self.svc.pw_uid}:{self.svc.pw_gid}", SERVICE_UV_CACHE], check=True, timeout=300)
        os.chmod(SERVICE_UV_CACHE, 0o755)
        self.service_config = os.path.join(self.service_dir, "envmgr_service_config.py")
        with open(self.service_config, "w") as f:
            f.write(
                f"c.EnvManagerApp.root_dir = {self.root!r}\n"
                f"c.EnvManagerApp.uv_cache_dir = {SERVICE_UV_CACHE!r}\n"
                "c.EnvManagerApp.build_timeout = 300.0\n"
                "c.EnvManagerApp.namespaces = ['default', 'team-a']\n"
                f"c.NamespaceAuthorizer.namespace_access = {NAMESPACE_ACCESS!r}\n"
                # A setting to try by hand (e.g. while a fix is under way); empty in CI.
                + os.environ.get("ENVMGR_TEST_HUB_SERVICE_CONFIG", "") + "\n"
            )
        os.chmod(self.service_config, 0o644)
        # The hub starts a small loop that runs the service again whenever it ends, once no hold file exists:
        # the fault tests keep the service down that way, and bring it back at once by removing the file
        # (the hub itself would notice an exited service only at its next poll, 30 s later).
        # The hub's stop (SIGINT, then SIGTERM) ends the loop and the service at once.
        command = ["sh", "-c", "trap 'kill $pid 2>/dev/null; exit 0' INT TERM; "
                               f"while :; do while [ -e {self.hold_file} ]; do sleep 0.2; done; "
                               "\"$0\" \"$@\" & pid=$!; wait $pid; sleep 0.2; done",
                   sys.executable, "-m", "jupyter_envmgr.cli", "service", "--config", self.service_config]
        config = {
            "ip": "127.0.0.1", "port": self.port, "hub_ip": "127.0.0.1", "hub_port": self.hub_port,
            "db_url": f"sqlite:///{self.hub_dir}/jupyterhub.sqlite",
            "cookie_secret_file": f"{self.hub_dir}/cookie_secret",
            "pid_file": f"{self.hub_dir}/jupyterhub.pid",
        }
        lines = ["c = get_config()  # noqa"]
        lines += [f"c.JupyterHub.{k} = {v!r}" for k, v in config.items()]
        lines += [
            f"c.ConfigurableHTTPProxy.command = [{self.proxy_bin!r}]",
            f"c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{self.api_port}'",
            f"c.ConfigurableHTTPProxy.pid_file = {self.hub_dir + '/proxy.pid'!r}",
            "c.JupyterHub.authenticator_class = 'dummy'",
            f"c.DummyAuthenticator.password = {self.password!r}",
            f"c.Authenticator.allowed_users = {set(USERS)!r}",
            "c.JupyterHub.spawner_class = 'localprocess'",
            f"c.Spawner.cmd = [{os.path.join(VENV_BIN, 'jupyterhub-singleuser')!r}]",
            f"c.Spawner.args = ['--EnvManagerApp.service_url={self.service_url}']",
            f"c.Spawner.environment = {{'JUPYTER_ENVMGR_ROOT': {self.root!r}}}",
            "c.Spawner.start_timeout = 120",
            "c.Spawner.http_timeout = 120",
            f"c.JupyterHub.load_groups = {{{GROUP!r}: {{'users': ['bob']}}}}",
            "c.JupyterHub.load_roles = " + repr([
                # Both are needed (issue 22): the users hold access to the service, and the server token asks for it.
                {"name": "user", "scopes": ["self", f"access:services!service={SERVICE}"]},
                {"name": "server", "scopes": ["users:activity!user", "access:servers!server",
                                              f"access:services!service={SERVICE}"]},
                {"name": "envmgr-tests-admin", "scopes": ["admin:users", "admin:servers", "tokens", "admin:groups"],
                 "services": [ADMIN_SERVICE]},
            ]),
            "c.JupyterHub.services = " + repr([
                {"name": SERVICE, "url": f"http://127.0.0.1:{self.service_port}", "command": command,
                 "user": SERVICE_USER, "cwd": self.svc.pw_dir, "oauth_no_confirm": True,
                 "environment": network_env()},
                {"name": ADMIN_SERVICE, "api_token": self.admin_token},
            ]),
            "c.JupyterHub.cleanup_servers = True",
        ]
        self.config_file = os.path.join(self.hub_dir, "jupyterhub_config.py")
        with open(self.config_file, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self, timeout: float = 120) -> None:
        self.write_config()
        env = {"PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin", "HOME": pwd.getpwuid(0).pw_dir, "LANG": "C.UTF-8",
               **network_env()}
        self.log_path = os.path.join(self.hub_dir, "hub.log")
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", self.config_file], cwd=self.hub_dir,
                                     env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        wait_until(lambda: self.alive() and self.hub("GET", "")[0] == 200, timeout, f"the hub at {self.url} ({self.log_path})")
        for user in USERS:
            self.tokens[user] = self.new_token(user)
        self.wait_service(timeout)

    def alive(self) -> bool:
        assert self.proc.poll() is None, f"the hub exited with {self.proc.returncode}; see {self.log_path}"
        return True

    def log_tail(self, chars: int = 4000) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()[-chars:]

    # ---------------------------------------------------------------- the hub's REST API (as the tests' admin service)

    def hub(self, method: str, path: str, body=None, timeout: float = 30) -> tuple:
        status, data, _ = http(method, f"{self.url}/hub/api/{path}", self.admin_token, body, timeout)
        return status, data

    def new_token(self, user: str, **fields) -> str:
        status, data = self.hub("POST", f"users/{user}/tokens", {"note": "envmgr hub tests", **fields})
        assert status in (200, 201), (status, data)
        return data["token"]

    def user_model(self, user: str) -> dict:
        status, data = self.hub("GET", f"users/{user}")
        assert status == 200, (status, data)
        return data

    def spawn(self, user: str, timeout: float = 120) -> EnvmgrClient:
        """Start the user's single-user server through the hub; returns an envmgr client of that server."""
        status, data = self.hub("POST", f"users/{user}/server")
        assert status in (201, 202, 400), (status, data)  # 400: already running
        wait_until(lambda: self.alive() and (self.user_model(user)["servers"].get("") or {}).get("ready"),
                   timeout, f"{user}'s server")
        client = self.client(user)
        wait_until(lambda: client.info(), 60, f"envmgr in {user}'s server")
        return client

    def stop_server(self, user: str, timeout: float = 60) -> None:
        status, data = self.hub("DELETE", f"users/{user}/server")
        assert status in (202, 204, 400), (status, data)
        wait_until(lambda: not self.user_model(user)["servers"], timeout, f"{user}'s server to stop")

    def server_url(self, user: str) -> str:
        return f"{self.url}/user/{user}/"

    def client(self, user: str, namespace: Optional[str] = None) -> EnvmgrClient:
        """An envmgr client of the user's own server, with the user's hub token."""
        return EnvmgrClient(self.server_url(user), self.tokens[user], namespace, timeout=60)

    def service_client(self, user: str, namespace: Optional[str] = None, direct: bool = True) -> EnvmgrClient:
        """An envmgr client of the service itself (direct, or through the hub's proxy), with the user's hub token."""
        return EnvmgrClient(self.service_direct if direct else self.service_url, self.tokens[user], namespace, timeout=60)

    # ---------------------------------------------------------------- the service

    def service_pids(self) -> list:
        """The service and its builds (not the shell loop around them)."""
        pids = []
        for pid in processes_of(self.svc.pw_uid):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if os.path.basename(argv[0]) != b"sh" and any(b"jupyter_envmgr" in arg for arg in argv):
                pids.append(pid)
        return pids

    def wait_service(self, timeout: float = 120) -> None:
        client = self.service_client(USERS[0])
        wait_until(lambda: self.alive() and client.info(), timeout,
                   f"the envmgr service at {self.service_direct} (hub log: {self.log_path})")

    def hold_service(self) -> None:
        """Stop the service (and any build of it) and keep it down: the loop around it waits on the hold file."""
        open(self.hold_file, "w").close()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in self.service_pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 10
            while self.service_pids() and time.monotonic() < deadline:
                time.sleep(0.1)

    def release_service(self, timeout: float = 120) -> None:
        """Let the service start again and wait until it answers."""
        os.unlink(self.hold_file)
        self.wait_service(timeout)

    # ---------------------------------------------------------------- teardown

    def stop(self, timeout: float = 30) -> None:
        """Stop the hub (it stops the servers and the service), the proxy, and keep the service's loop from
        starting it again (the hold file stays; its directory goes with the hub's base)."""
        if os.path.isdir(self.service_dir):
            open(self.hold_file, "w").close()
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        pid_file = os.path.join(self.hub_dir, "proxy.pid")
        try:
            with open(pid_file) as f:
                os.kill(int(f.read().strip()), signal.SIGTERM)
        except (OSError, ValueError):
            pass


def remove_tree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
