"""Test helpers: wheels made here, a package index served on loopback, waiting on a real server."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional
from urllib.parse import unquote

from jupyter_envmgr.client import EnvmgrClient
from jupyter_envmgr.demo import free_port, start_server, wait_for_server

ACTIVE = ("pending", "warming")


def make_wheel(name: str, version: str, module_code: str = "", requires: tuple = ()) -> tuple:
    """A real, installable pure-Python wheel: (filename, bytes); `requires`: its Requires-Dist lines."""
    dist = re.sub(r"[-_.]+", "_", name).lower()
    module = dist
    requires_dist = "".join(f"Requires-Dist: {r}\n" for r in requires)
    files = {
        f"{module}/__init__.py": module_code or f"__version__ = {version!r}\nNAME = {name!r}\n",
        f"{dist}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{requires_dist}",
        f"{dist}-{version}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: envmgr-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record_lines = []
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path, text in files.items():
            data = text.encode()
            zf.writestr(path, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record_lines.append(f"{path},sha256={digest},{len(data)}")
        record = f"{dist}-{version}.dist-info/RECORD"
        zf.writestr(record, "\n".join(record_lines + [f"{record},,"]) + "\n")
    return f"{dist}-{version}-py3-none-any.whl", buf.getvalue()


class LocalIndex:
    """A PEP 503 simple index on 127.0.0.1.

    Fixed projects are added with `add`; any project named `envmgr-slow-*` is made on the fly and
    trickled out over `slow_seconds` (a build that takes a while, never cached under another name);
    `envmgr-brief-*` likewise over a quarter of that. With `max_age` the index answers with the cache
    headers of the public index: `Cache-Control: max-age=<max_age>, public` on simple pages, immutable
    files, so uv answers from its HTTP cache meanwhile; without it (the tests' default) every resolve sees
    a project's newest files at once.
    """

    def __init__(self, slow_seconds: float = 20.0, max_age: int = 0):
        self.files: dict = {}  # project -> {filename: bytes}
        self.hashes: dict = {}  # (project, filename) -> sha256 hex, of files added from disk
        self.slow_seconds = slow_seconds
        self.max_age = max_age
        self.requests: list = []
        index = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self.head_only = True
                self.do_GET()

            def do_GET(self):
                index.requests.append(self.path)
                path = unquote(self.path.split("?")[0])
                m = re.match(r"^/simple/([^/]+)/?$", path)
                if m:
                    return self._page(m[1])
                m = re.match(r"^/files/([^/]+)/([^/]+)$", path)
                if m and m[2] in index.project(m[1]):
                    return self._file(m[1], index.project(m[1])[m[2]])
                self.send_error(404)

            def _page(self, project):
                files = index.project(project)
                if not files:
                    return self.send_error(404)
                links = "".join(
                    f'<a href="/files/{project}/{fn}#sha256={index.sha256(project, fn, data)}">{fn}</a>\n'
                    for fn, data in files.items()
                )
                body = f"<!DOCTYPE html><html><body>\n{links}</body></html>".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                if index.max_age:
                    self.send_header("Cache-Control", f"max-age={index.max_age}, public")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not getattr(self, "head_only", False):
                    self.wfile.write(body)

            def _file(self, project, data):
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                if index.max_age:
                    self.send_header("Cache-Control", "max-age=365000000, immutable, public")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if getattr(self, "head_only", False):
                    return
                seconds = index.delay(project)
                if seconds:
                    pieces = 20
                    step = max(1, len(data) // pieces)
                    try:
                        for i in range(0, len(data), step):
                            self.wfile.write(data[i:i + step])
                            self.wfile.flush()
                            time.sleep(seconds / pieces)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                else:
                    self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/simple"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def delay(self, project: str) -> float:
        """Seconds over which a project's files are trickled out."""
        if project.startswith("envmgr-slow-"):
            return self.slow_seconds
        if project.startswith("envmgr-brief-"):
            return self.slow_seconds / 4
        return 0.0

    def normalize(self, project: str) -> str:
        return re.sub(r"[-_.]+", "-", project).lower()

    def add(self, name: str, version: str, module_code: str = "", requires: tuple = ()) -> None:
        filename, data = make_wheel(name, version, module_code, requires)
        self.files.setdefault(self.normalize(name), {})[filename] = data

    def sha256(self, project: str, filename: str, data: bytes) -> str:
        return self.hashes.get((self.normalize(project), filename)) or hashlib.sha256(data).hexdigest()

    def add_file(self, path: str) -> None:
        """A wheel from disk (named `<dist>-<version>-...whl`), with its hash computed once."""
        filename = os.path.basename(path)
        project = self.normalize(filename.split("-", 1)[0])
        with open(path, "rb") as f:
            data = f.read()
        self.files.setdefault(project, {})[filename] = data
        self.hashes[(project, filename)] = hashlib.sha256(data).hexdigest()

    def project(self, project: str) -> dict:
        project = self.normalize(project)
        if project.startswith(("envmgr-slow-", "envmgr-brief-")) and project not in self.files:
            self.add(project, "1.0")
        return self.files.get(project, {})

    def close(self) -> None:
        self.server.shutdown()


def disk(*paths) -> int:
    """Blocks on disk under `paths`, each inode once (what `du -s a b c` says)."""
    seen, total = set(), 0
    for path in paths:
        for dirpath, _, filenames in os.walk(path):
            for name in filenames:
                st = os.lstat(os.path.join(dirpath, name))
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_blocks * 512
    return total


def unique(prefix: str) -> str:
    return f"{prefix}-{os.urandom(4).hex()}"


class Api:
    """The REST contract through pytest-jupyter's jp_fetch, with errors returned, not raised."""

    def __init__(self, fetch, serverapp):
        self.fetch = fetch
        self.serverapp = serverapp

    async def call(self, method: str, path: str = "", body=None, raw_body=None, **params):
        parts = ["envmgr", "api"] + [p for p in path.split("/") if p]
        kwargs = {"method": method, "raise_error": False}
        if raw_body is not None:
            kwargs["body"] = raw_body
        elif body is not None:
            kwargs["body"] = json.dumps(body)
        elif method in ("POST", "PATCH"):
            kwargs["body"] = "{}"
        if params:
            kwargs["params"] = {k: str(v) for k, v in params.items()}
        resp = await self.fetch(*parts, **kwargs)
        text = resp.body.decode() if resp.body else ""
        if resp.headers.get("Content-Type", "").startswith("application/json") and text:
            return resp.code, json.loads(text)
        return resp.code, text

    async def ok(self, method: str, path: str = "", body=None, expect=(200, 202, 204), **params):
        status, data = await self.call(method, path, body, **params)
        assert status in expect, (status, data)
        return data

    async def create(self, body: dict, **params) -> dict:
        return await self.ok("POST", "environments", body, expect=(202,), **params)

    async def get(self, name: str, **params) -> dict:
        return await self.ok("GET", f"environments/{name}", **params)

    async def wait(self, name: str, timeout: float = 300, **params) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            record = await self.get(name, **params)
            if record["status"] not in ACTIVE:
                return record
            assert time.monotonic() < deadline, f"{name} still {record['status']}: {record['message']}"
            await asyncio.sleep(0.2)

    async def wait_for(self, name: str, predicate, timeout: float = 120, **params) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            record = await self.get(name, **params)
            if predicate(record):
                return record
            assert time.monotonic() < deadline, f"{name}: condition not met, last {record}"
            await asyncio.sleep(0.1)

    def client(self, namespace=None):
        return EnvmgrClient(self.serverapp.connection_url, self.serverapp.identity_provider.token, namespace)

    async def run(self, kernel_name: str, code: str) -> str:
        return await self.client().run_code(kernel_name, code, timeout=120)


class Server:
    """One jupyter server process on a shared root, with its own config/runtime/data dirs."""

    def __init__(self, base, root, uv_cache, config=None, user=None, **envmgr):
        self.base = base
        self.port = free_port()
        self.token = "t" + os.urandom(8).hex()
        self.proc = start_server(base, self.port, self.token, {"root_dir": root, "uv_cache_dir": uv_cache, **envmgr}, config, user)
        self.client = EnvmgrClient(f"http://127.0.0.1:{self.port}/", self.token)
        wait_for_server(self.client, self.proc)

    def kill(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def call(url: str, token: str, method: str, path: str, body=None, **query) -> tuple:
    """(status, parsed body) of one request, errors returned, not raised."""
    data = None if body is None else json.dumps(body).encode()
    full = url.rstrip("/") + "/" + path + ("?" + urllib.parse.urlencode(query) if query else "")
    req = urllib.request.Request(full, data=data, method=method)
    if token:
        req.add_header("Authorization", f"token {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            status, raw, kind = resp.status, resp.read(), resp.headers.get_content_type()
    except urllib.error.HTTPError as e:
        status, raw, kind = e.code, e.read(), e.headers.get_content_type()
    return status, (json.loads(raw) if kind == "application/json" and raw else raw.decode(errors="replace"))


class Service:
    """`jupyter envmgr service` as a process (standalone, with tokens) writing `root`."""

    def __init__(self, base, root, uv_cache, tokens: dict, groups: Optional[dict] = None,
                 access: Optional[dict] = None, namespaces=("default",), user: Optional[str] = None, **envmgr):
        os.makedirs(base, exist_ok=True)
        self.base, self.root, self.tokens, self.user = base, root, tokens, user
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        settings = {"root_dir": root, "uv_cache_dir": uv_cache, "namespaces": list(namespaces), "build_timeout": 300.0, **envmgr}
        lines = [f"c.EnvManagerApp.{k} = {v!r}" for k, v in settings.items()]
        lines += [f"c.EnvService.tokens = {tokens!r}", f"c.EnvService.groups = {groups or {}!r}",
                  f"c.NamespaceAuthorizer.namespace_access = {access or {}!r}", "c.ServerApp.allow_root = True"]
        self.config = os.path.join(base, "service_config.py")
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.start()

    def start(self):
        env = dict(os.environ, JUPYTER_CONFIG_DIR=os.path.join(self.base, "config"),
                   JUPYTER_RUNTIME_DIR=os.path.join(self.base, "runtime"), JUPYTER_DATA_DIR=os.path.join(self.base, "data"))
        env.pop("JUPYTERHUB_API_TOKEN", None)
        log = open(os.path.join(self.base, "service.log"), "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "jupyter_envmgr.cli", "service", "--config", self.config,
                                      "--ip", "127.0.0.1", "--port", str(self.port)],
                                     env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        token = next(iter(self.tokens))
        deadline = time.monotonic() + 90
        while not (self._up() and call(self.url, token, "GET", "envmgr/api/info")[0] == 200):
            assert self.proc.poll() is None, open(os.path.join(self.base, "service.log")).read()[-3000:]
            assert time.monotonic() < deadline, "the service did not start"
            time.sleep(0.2)

    def _up(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def client(self, user: str, namespace: Optional[str] = None) -> EnvmgrClient:
        token = next(t for t, u in self.tokens.items() if u == user)
        return EnvmgrClient(self.url, token, namespace)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def unix_user(name: str) -> str:
    """A real Unix account for a test (CI runs as root), able to run this interpreter; skips elsewhere."""
    import pwd

    import pytest

    if os.geteuid() != 0:
        pytest.skip("needs root to make a second Unix user (CI runs as root)")
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True, capture_output=True)
    # Other accounts must reach this interpreter (pyenv's lives under /root): search, not read, on its parents.
    grant_traverse([os.path.dirname(os.path.realpath(sys.executable)), sys.prefix])
    return name


def grant_traverse(paths) -> list:
    """Let other users reach `paths` (the venv, its interpreter, a test's tmp dir): o+x on every directory on
    the way that lacks it (e.g. /root, 0700, where pyenv keeps the interpreter; pytest's tmp dirs). No read bit
    is added, so nothing becomes listable. Returns [(dir, old mode)] for `restore_modes`."""
    import stat

    changed = []
    for path in paths:
        parts = os.path.abspath(path).split(os.sep)
        for i in range(1, len(parts) + 1):
            directory = os.sep.join(parts[:i]) or os.sep
            if not os.path.isdir(directory):
                continue
            mode = stat.S_IMODE(os.stat(directory).st_mode)
            if not mode & stat.S_IXOTH:
                os.chmod(directory, mode | stat.S_IXOTH)
                changed.append((directory, mode))
    return changed


def restore_modes(changed) -> None:
    for directory, mode in reversed(changed):
        try:
            os.chmod(directory, mode)
        except OSError:
            pass