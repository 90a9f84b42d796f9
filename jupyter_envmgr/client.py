"""A small client of the REST contract, shared by `jupyter envmgr` and the `%envmgr` magics.

Standard library HTTP (works inside any kernel); one async helper, `run_code`, talks to a kernel
through the server's websocket, for the demo and the tests.
"""
from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Callable, Iterator, Optional

ACTIVE = ("pending", "warming")


class ClientError(Exception):
    """An error answered by the server (its message), or a server that cannot be reached."""

    def __init__(self, status: int, message: str, reason: str = ""):
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason


def find_server(url: Optional[str] = None, token: Optional[str] = None) -> tuple:
    """(url, token) of the Jupyter server to talk to.

    Explicit arguments win, then $JUPYTER_ENVMGR_URL/$JUPYTER_ENVMGR_TOKEN, then Jupyter's runtime
    files: the server that started this process's kernel (JPY_PARENT_PID) if any, else the newest.
    """
    url = url or os.environ.get("JUPYTER_ENVMGR_URL")
    token = token if token is not None else os.environ.get("JUPYTER_ENVMGR_TOKEN")
    if url:
        return url, token or ""
    servers = _running_servers()
    if not servers:
        raise ClientError(0, "no running Jupyter server found; start one (jupyter lab) or pass --url and --token")
    parent = os.environ.get("JPY_PARENT_PID")
    chosen = next((s for s in servers if parent and str(s.get("pid")) == parent), None)
    chosen = chosen or max(servers, key=lambda s: s.get("_mtime", 0))
    return chosen["url"], token or chosen.get("token", "")


def _running_servers() -> list:
    from jupyter_core.paths import jupyter_runtime_dir

    found = []
    directory = jupyter_runtime_dir()
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    for name in names:
        if not (name.startswith("jpserver-") and name.endswith(".json")):
            continue
        path = os.path.join(directory, name)
        try:
            with open(path) as f:
                info = json.load(f)
            os.kill(int(info["pid"]), 0)
        except (OSError, ValueError, KeyError):
            continue
        info["_mtime"] = os.path.getmtime(path)
        found.append(info)
    return found


class EnvmgrClient:
    def __init__(self, url: str, token: str = "", namespace: Optional[str] = None, timeout: float = 60):
        self.url = url.rstrip("/") + "/"
        self.token = token
        self.namespace = namespace
        self.timeout = timeout

    @classmethod
    def discover(cls, url=None, token=None, namespace=None) -> "EnvmgrClient":
        return cls(*find_server(url, token), namespace=namespace)

    # ------------------------------------------------------------ transport

    def _url(self, path: str, query: Optional[dict] = None) -> str:
        query = {k: v for k, v in (query or {}).items() if v is not None}
        if self.namespace and path.startswith("envmgr/") and "namespace" not in query:
            query["namespace"] = self.namespace
        return self.url + path + ("?" + urllib.parse.urlencode(query) if query else "")

    def _open(self, method: str, path: str, body=None, query=None, timeout=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self._url(path, query), data=data, method=method)
        if self.token:
            req.add_header("Authorization", f"token {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            return urllib.request.urlopen(req, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                err = json.loads(raw)
                raise ClientError(e.code, err.get("message") or str(e), err.get("reason") or "") from None
            except ValueError:
                raise ClientError(e.code, f"HTTP {e.code}: {raw[:200].decode(errors='replace') or e.reason}") from None
        except (urllib.error.URLError, OSError) as e:
            raise ClientError(0, f"cannot reach the Jupyter server at {self.url}: {getattr(e, 'reason', e)}") from None

    def request(self, method: str, path: str, body=None, query=None):
        with self._open(method, path, body, query) as resp:
            raw = resp.read()
            if resp.headers.get_content_type() == "application/json" and raw:
                return json.loads(raw)
            return raw.decode()

    def _api(self, method: str, path: str = "", body=None, **query):
        return self.request(method, "envmgr/api/" + path, body, query)

    # ------------------------------------------------------------ the contract

    def info(self) -> dict:
        return self._api("GET", "info")

    def list(self, label: Optional[str] = None, status: Optional[str] = None) -> list:
        return self._api("GET", "environments", label=label, status=status)["environments"]

    def get(self, name: str) -> dict:
        return self._api("GET", f"environments/{name}")

    def create(self, spec: dict) -> dict:
        return self._api("POST", "environments", spec)

    def update(self, name: str, fields: dict, dry_run: bool = False) -> dict:
        """PATCH; a dry run answers the record as it would be, plus `changes` when it would build."""
        return self._api("PATCH", f"environments/{name}", fields, dry_run=1 if dry_run else None)

    def delete(self, name: str) -> None:
        self._api("DELETE", f"environments/{name}")

    def action(self, name: str, action: str, dry_run: bool = False, **extra) -> dict:
        """rebuild, cancel, rollback, clone, pin; rebuild and pin take a dry run (API.md)."""
        return self._api("POST", f"environments/{name}/actions", dict(extra, action=action), dry_run=1 if dry_run else None)

    def packages(self, name: str) -> list:
        return self._api("GET", f"environments/{name}/packages")["packages"]

    def revisions(self, name: str) -> list:
        return self._api("GET", f"environments/{name}/revisions")["revisions"]

    def export(self, name: str, fmt: str = "spec"):
        return self._api("GET", f"environments/{name}/export", format=fmt)

    def log(self, name: str, revision: Optional[int] = None) -> str:
        return self._api("GET", f"environments/{name}/log", revision=revision)

    def follow_log(self, name: str, revision: Optional[int] = None) -> Iterator[str]:
        """Yield the log as it grows, until the build ends."""
        resp = self._open("GET", f"envmgr/api/environments/{name}/log", query={"revision": revision, "follow": 1}, timeout=3600)
        with resp:
            while True:
                chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(65536)
                if not chunk:
                    return
                yield chunk.decode(errors="replace")

    def wait(self, name: str, timeout: float = 3600, on_update: Optional[Callable[[dict], None]] = None,
             interval: float = 0.25) -> dict:
        """Poll until the environment leaves pending/warming; returns the final record."""
        deadline = time.monotonic() + timeout
        while True:
            record = self.get(name)
            if on_update:
                on_update(record)
            if record["status"] not in ACTIVE:
                return record
            if time.monotonic() > deadline:
                raise ClientError(0, f"{name} is still {record['status']} after {timeout:.0f}s")
            time.sleep(interval)

    # ------------------------------------------------------------ kernels

    async def run_code(self, kernel_name: str, code: str, timeout: float = 120) -> str:
        """Start a kernel through the server, run `code`, return its output; raise on an error."""
        async with self.kernel(kernel_name, timeout) as kernel:
            return await kernel.execute(code)

    def kernel(self, kernel_name: str, timeout: float = 120) -> "KernelSession":
        """`async with client.kernel(name) as k: await k.execute(code)`: one kernel for several cells."""
        return KernelSession(self, kernel_name, timeout)


    # ------------------------------------------------------------ requests (env_requests.py)

    def submit_request(self, spec: dict) -> dict:
        return self._api("POST", "requests", spec)

    def requests(self, status: Optional[str] = None) -> list:
        return self._api("GET", "requests", status=status)["requests"]

    def request_action(self, request_id: str, action: str, message: Optional[str] = None) -> dict:
        body = {"action": action} if message is None else {"action": action, "message": message}
        return self._api("POST", f"requests/{urllib.parse.quote(request_id, safe='')}/actions", body)

class KernelSession:
    """A kernel started through the server's REST API and driven over its websocket.

    Async all the way: the server may run in this very event loop (the tests).
    """

    def __init__(self, client: EnvmgrClient, kernel_name: str, timeout: float):
        self.client, self.kernel_name, self.timeout = client, kernel_name, timeout
        self.headers = {"Authorization": f"token {client.token}"} if client.token else {}

    async def __aenter__(self) -> "KernelSession":
        from tornado.httpclient import AsyncHTTPClient, HTTPRequest
        from tornado.websocket import websocket_connect

        self.http = AsyncHTTPClient()
        resp = await self.http.fetch(self.client._url("api/kernels"), method="POST", headers=self.headers,
                                     body=json.dumps({"name": self.kernel_name}), request_timeout=self.timeout)
        self.id = json.loads(resp.body)["id"]
        try:
            ws_url = self.client._url(f"api/kernels/{self.id}/channels").replace("http", "ws", 1)
            self.conn = await websocket_connect(HTTPRequest(ws_url, headers=self.headers, connect_timeout=self.timeout))
        except BaseException:
            await self._shutdown()
            raise
        return self

    async def execute(self, code: str) -> str:
        return await _execute(self.conn, code, self.timeout)

    async def _shutdown(self) -> None:
        await self.http.fetch(self.client._url(f"api/kernels/{self.id}"), method="DELETE", headers=self.headers,
                              request_timeout=self.timeout, raise_error=False)

    async def __aexit__(self, *exc) -> None:
        self.conn.close()
        await self._shutdown()


async def _execute(conn, code: str, timeout: float) -> str:
    import asyncio

    msg_id = uuid.uuid4().hex
    conn.write_message(json.dumps({
        "header": {"msg_id": msg_id, "username": "envmgr", "session": uuid.uuid4().hex,
                   "msg_type": "execute_request", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True},
    }))
    out, error = [], None
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"the kernel did not finish running the code within {timeout:.0f}s")
        raw = await asyncio.wait_for(conn.read_message(), timeout=remaining)
        if raw is None:
            raise ConnectionError("the kernel's websocket closed")
        msg = json.loads(raw)
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = msg["header"]["msg_type"]
        if kind == "stream":
            out.append(msg["content"]["text"])
        elif kind in ("execute_result", "display_data", "update_display_data"):
            data = msg["content"]["data"]
            out.append((data.get("text/html") or data.get("text/plain", "")) + "\n")
        elif kind == "error":
            error = f"{msg['content']['ename']}: {msg['content']['evalue']}"
        elif kind == "status" and msg["content"]["execution_state"] == "idle":
            break
    if error:
        raise RuntimeError(f"the code failed in the kernel: {error}")
    return "".join(out)


def _requirement_name(line: str) -> str:
    import re

    m = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line.split("#", 1)[0])
    return re.sub(r"[-_.]+", "-", m[1]).lower() if m else ""


def merge_pip_packages(text: str, extra: str) -> str:
    """Add requirement lines to the `pip:` sub-list of an environment.yaml's dependencies (made if missing)."""
    text = text or ""
    lines = text.splitlines()
    have = set()
    start = next((i for i, l in enumerate(lines) if l.strip() in ("- pip:", "-  pip:")), None)
    if start is not None:
        indent = len(lines[start]) - len(lines[start].lstrip())
        end = start + 1
        while end < len(lines) and (not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) > indent):
            if lines[end].strip().startswith("- "):
                have.add(_requirement_name(lines[end].strip()[2:]))
            end += 1
        child = " " * (indent + 4)
    new = [l.strip() for l in extra.splitlines() if l.strip() and _requirement_name(l) not in have]
    if not new:
        return text
    if start is None:
        if not any(l.startswith("dependencies:") for l in lines):
            lines.append("dependencies:")
        at = next(i for i, l in enumerate(lines) if l.startswith("dependencies:")) + 1
        while at < len(lines) and lines[at].startswith((" ", "-")):
            at += 1
        lines[at:at] = ["  - pip:"] + [f"      - {p}" for p in new]
    else:
        while end > start + 1 and not lines[end - 1].strip():
            end -= 1
        lines[end:end] = [f"{child}- {p}" for p in new]
    return "\n".join(lines) + "\n"


def merge_packages(manager: str, text: str, extra: str) -> str:
    """Add package lines (a preset, `%envmgr install`) to packages text without duplicating a name.

    pip: requirements lines; a name already present keeps its own line. conda: match specs go into the
    environment.yaml's `dependencies:` list. Standard library only: it also runs inside user kernels.
    """
    text = text or ""
    if manager == "conda":
        import re

        have = {re.split(r"[=<>!~ ]", l.strip()[1:].strip())[0] for l in text.splitlines() if l.strip().startswith("- ")}
        new = [l.strip().lstrip("- ").strip() for l in extra.splitlines() if l.strip() and not l.strip().endswith(":")]
        new = [spec for spec in new if re.split(r"[=<>!~ ]", spec)[0] not in have]
        if not new:
            return text
        if "dependencies:" not in text:
            text = text.rstrip("\n") + ("\n" if text.strip() else "") + "dependencies:\n"
        lines = text.splitlines()
        at = next(i for i, l in enumerate(lines) if l.startswith("dependencies:")) + 1
        while at < len(lines) and (lines[at].startswith((" ", "-")) and not lines[at].strip().startswith("- pip:")):
            at += 1
        lines[at:at] = [f"  - {spec}" for spec in new]
        return "\n".join(lines) + "\n"
    have = {_requirement_name(l) for l in text.splitlines()}
    added = [l.strip() for l in extra.splitlines() if l.strip() and _requirement_name(l) not in have]
    if not added:
        return text
    return (text.rstrip("\n") + "\n" if text.strip() else "") + "\n".join(added) + "\n"
