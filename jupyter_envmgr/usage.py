"""Who uses which revision: kernel starts recorded by the writer, reported by each notebook server.

Two halves. `UsageBook` (the writer: the service, or the embedded server) keeps, per environment, one file
per (user, reporting server) under `envs/<ns>/<name>/usage/`: the kernels that server runs now (until the
report expires) and the starts of the last `days`. Blocking; run it in the records' worker threads.
`UsageReporter` (every notebook server) knows its own kernels: who started each (the authenticated caller
of the kernel or session request), the notebook (the session's path, "console"), the revision (its
kernelspec at start). It reports them on every start and stop and as a heartbeat: to the service with
`POST /envmgr/api/usage` when there is one (settings["envmgr_service"]), else straight to the book.
"""
from __future__ import annotations

import asyncio
import datetime
import getpass
import hashlib
import json
import os
import re
import threading
import time
from typing import Optional

from .store import atomic_write

DIR = "usage"
HEARTBEAT_SECONDS = 60.0  # a reporter reports at least this often; its running kernels expire after 3 heartbeats
USE_FIELDS = ("user", "notebook", "revision", "started", "last_activity")
REPORT_FIELDS = {"namespace", "name", "revision", "notebook", "kernel_id", "started", "last_activity"}
#: Kernel and session requests of jupyter_server whose success starts (or restarts) or stops a kernel.
STARTS = re.compile(r"/api/(?:sessions|kernels)/?\Z|/api/kernels/(?P<id>[^/]+)/restart/?\Z")
STOPS = re.compile(r"/api/(?:sessions|kernels)/[^/]+/?\Z")


def stamp(seconds: Optional[float] = None) -> str:
    return datetime.datetime.fromtimestamp(time.time() if seconds is None else seconds,
                                           datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _seconds(text: str) -> float:
    try:
        return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp()
    except (TypeError, ValueError):
        return 0.0


class UsageBook:
    """The writer's record of kernel uses (files on the root, written whole)."""

    def __init__(self, store, days: float):
        self.store = store
        self.days = days
        self._lock = threading.Lock()
        self._last: dict = {}  # (caller, reporter) -> {(user, ns, name)} it reported running last time

    @property
    def enabled(self) -> bool:
        return self.days > 0

    def _dir(self, namespace: str, name: str) -> str:
        return os.path.join(self.store.env_dir(namespace, name), DIR)

    def report(self, caller: Optional[str], reporter: str, uses: list, heartbeat: float, now: Optional[float] = None) -> int:
        """Blocking. `uses`: every kernel `reporter` runs now (each with its user); what it reported before and
        left out has stopped. `caller`: who reported (None: this server itself). Returns the uses recorded."""
        if not self.enabled:
            return 0
        now = time.time() if now is None else now
        groups: dict = {}
        for use in uses:
            groups.setdefault((use["user"], use["namespace"], use["name"]), []).append(use)
        with self._lock:
            for key in self._last.get((caller, reporter), set()) - set(groups):
                groups[key] = []  # stopped since the last report
            self._last[(caller, reporter)] = {k for k, v in groups.items() if v}
            recorded = 0
            for (user, namespace, name), running in groups.items():
                recorded += self._write(user, reporter, namespace, name, running, now + 3 * heartbeat if heartbeat > 0 else now, now)
        return recorded

    def _write(self, user: str, reporter: str, namespace: str, name: str, running: list, expires: float, now: float) -> int:
        directory = self._dir(namespace, name)
        try:
            os.mkdir(directory)  # one level: a deleted environment is not brought back by a late report
        except FileExistsError:
            pass
        except FileNotFoundError:
            return 0
        path = os.path.join(directory, hashlib.sha256(f"{user}\0{reporter}".encode()).hexdigest()[:24] + ".json")
        old = _read(path)
        horizon = now - self.days * 86400
        recent = {(u.get("kernel_id"), u.get("started")): u for u in old.get("recent", []) if _seconds(u.get("started")) >= horizon}
        kept = []
        for use in running:
            entry = {"user": user, **{k: use[k] for k in REPORT_FIELDS - {"namespace", "name"}}}
            recent[(use["kernel_id"], use["started"])] = entry
            kept.append(entry)
        atomic_write(path, json.dumps({"user": user, "reporter": reporter, "expires": expires, "running": kept,
                                       "recent": sorted(recent.values(), key=lambda u: u["started"])}))
        self._forget_old(directory, horizon)
        return len(kept)

    def _forget_old(self, directory: str, horizon: float) -> None:
        """Files of reporters that have said nothing for `days` go (nothing in them is recent any more)."""
        for entry in os.listdir(directory):
            path = os.path.join(directory, entry)
            try:
                if os.stat(path).st_mtime < horizon:
                    os.unlink(path)
            except OSError:
                continue

    def read(self, namespace: str, name: str, now: Optional[float] = None) -> tuple:
        """Blocking. (kernels running now, starts of the last `days`, newest first), as API.md's <use>s."""
        now = time.time() if now is None else now
        horizon = now - self.days * 86400
        running, recent = [], []
        try:
            entries = sorted(os.listdir(self._dir(namespace, name)))
        except OSError:
            return [], []
        for entry in entries:
            data = _read(os.path.join(self._dir(namespace, name), entry))
            if data.get("expires", 0) > now:
                running += data.get("running", [])
            recent += [u for u in data.get("recent", []) if _seconds(u.get("started")) >= horizon]

        def public(uses: list) -> list:
            return sorted(({k: u.get(k) for k in USE_FIELDS} for u in uses), key=lambda u: u["started"] or "", reverse=True)

        return public(running), public(recent)


def _read(path: str) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}  # a damaged or half-gone file is no use, and breaks no other


def check_report(body, may_read, namespaces) -> tuple:
    """(reporter, heartbeat, uses) of a POST /envmgr/api/usage body, or EnvmgrError (400/403/422)."""
    from .errors import EnvmgrError, invalid
    from .spec import NAME_RE

    if not isinstance(body, dict):
        raise EnvmgrError(400, "invalid_json", 'the body must be {"reporter": "...", "heartbeat": 60, "uses": [...]}')
    unknown = set(body) - {"reporter", "heartbeat", "uses"}
    if unknown:
        raise EnvmgrError(400, "unknown_field", f"unknown field(s) {', '.join(sorted(map(str, unknown)))[:200]}; a report has reporter, heartbeat and uses")
    reporter, heartbeat, uses = body.get("reporter"), body.get("heartbeat", HEARTBEAT_SECONDS), body.get("uses")
    if not isinstance(reporter, str) or not 0 < len(reporter) <= 200 or not reporter.isprintable():
        raise invalid("reporter", "must name the reporting server in 1-200 printable characters, e.g. 'host:8888'")
    if isinstance(heartbeat, bool) or not isinstance(heartbeat, (int, float)) or not 0 <= heartbeat <= 3600:
        raise invalid("heartbeat", "must be the seconds until the next report, 0-3600 (0: these kernels are not followed)")
    if not isinstance(uses, list) or len(uses) > 10000:
        raise invalid("uses", "must be a list (at most 10000) of the kernels that server runs now")
    for i, use in enumerate(uses):
        where = f"uses[{i}]"
        if not isinstance(use, dict) or set(use) != REPORT_FIELDS:
            raise invalid(where, f"must have exactly {', '.join(sorted(REPORT_FIELDS))} (the user is who reports)")
        if use["namespace"] not in namespaces:
            raise invalid(f"{where}.namespace", f"{str(use['namespace'])[:64]!r} is not a namespace of this server")
        if not isinstance(use["name"], str) or not NAME_RE.fullmatch(use["name"]):
            raise invalid(f"{where}.name", "must be an environment name")
        if isinstance(use["revision"], bool) or not isinstance(use["revision"], int) or use["revision"] < 1:
            raise invalid(f"{where}.revision", "must be a revision number")
        for key in ("notebook", "kernel_id", "started", "last_activity"):
            if not isinstance(use[key], str) or not 0 < len(use[key]) <= 1000 or not use[key].isprintable():
                raise invalid(f"{where}.{key}", "must be a non-empty printable string of at most 1000 characters")
        if not _seconds(use["started"]) or not _seconds(use["last_activity"]):
            raise invalid(f"{where}.started", "started and last_activity must be times as 2026-01-02T03:04:05Z")
        if not may_read(use["namespace"]):
            raise EnvmgrError(403, "forbidden", f"this user may not read namespace {use['namespace']!r}, so runs no kernel of it")
    return reporter, float(heartbeat), uses


class UsageReporter:
    """This notebook server's kernels on envmgr environments, reported to the writer (module docstring)."""

    def __init__(self, web_app, book: Optional[UsageBook], run, reporter: str, log):
        self.settings = web_app.settings
        self.book = book  # None: this server only reports (service mode)
        self.run = run  # the records' worker threads
        self.reporter = reporter
        self.log = log
        self._users: dict = {}  # kernel id -> who started it
        self._started: dict = {}  # kernel id -> when it (re)started
        self._pending: Optional[asyncio.Task] = None
        self._task: Optional[asyncio.Task] = None
        self.default_user = os.environ.get("JUPYTERHUB_USER") or getpass.getuser()

    def attach(self) -> None:
        """Follow kernel and session requests (jupyter_server's request log hook: the authenticated caller and
        the answer, after the response went out), and report every heartbeat."""
        previous = self.settings.get("log_function")

        def log_function(handler):
            if previous is not None:
                previous(handler)
            try:
                self._seen(handler)
            except Exception:  # noqa: BLE001 - recording must never break a request's log
                self.log.debug("envmgr usage: could not note %s", handler.request.path, exc_info=True)

        self.settings["log_function"] = log_function
        self._task = asyncio.ensure_future(self._beat())

    def stop(self) -> None:
        for task in (self._task, self._pending):
            if task:
                task.cancel()

    def _seen(self, handler) -> None:
        request, status = handler.request, handler.get_status()
        if status >= 400 or request.method not in ("POST", "DELETE", "PATCH"):
            return
        path = request.path
        if request.method == "POST" and STARTS.search(path):
            user = handler.current_user
            who = getattr(user, "username", None) or getattr(user, "name", None) or str(user or "") or self.default_user
            kid = STARTS.search(path)["id"]
            location = handler._headers.get("Location", "")
            self._schedule(kid, location, who)
        elif request.method == "DELETE" and STOPS.search(path):
            self._schedule(None, "", "")
        elif request.method == "PATCH" and "/api/sessions/" in path:
            # JupyterLab starts a notebook's session under a placeholder path (<dir>/<uuid>) and then sets the
            # notebook's path: the start is reported again, now with the notebook it belongs to.
            self._schedule(None, "", "")

    def _schedule(self, kid: Optional[str], location: str, who: str) -> None:
        previous = self._pending

        async def note_then_report():
            if previous is not None and not previous.done():
                await asyncio.wait([previous])  # in the order the requests came: a start is noted before a rename reports it
            kernel_id = kid or await self._kernel_of(location)
            if kernel_id:
                self._users[kernel_id] = who
                self._started[kernel_id] = stamp()
            await self.report()

        self._pending = asyncio.ensure_future(note_then_report())

    async def _kernel_of(self, location: str) -> Optional[str]:
        """The kernel of a POST's answer: /api/kernels/<id>, or a session /api/sessions/<id>."""
        last = location.rstrip("/").rpartition("/")[2]
        if "/api/kernels/" in location:
            return last
        if "/api/sessions/" in location:
            try:
                model = await self.settings["session_manager"].get_session(session_id=last)
                return model["kernel"]["id"]
            except Exception:  # noqa: BLE001 - a session already gone
                return None
        return None

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            await self.report()

    async def uses(self) -> list:
        """Every kernel of this server that runs an envmgr environment, as a report's uses (with user)."""
        km = self.settings["kernel_manager"]
        notebooks = {}
        try:
            for s in await self.settings["session_manager"].list_sessions():
                if s.get("kernel"):
                    notebooks[s["kernel"]["id"]] = "console" if s.get("type") == "console" else s.get("path") or "console"
        except Exception:  # noqa: BLE001 - no session manager: every kernel is a console
            pass
        out = []
        for kid in list(km.list_kernel_ids()):
            try:
                kernel = km.get_kernel(kid)
            except KeyError:  # stopped meanwhile
                continue
            spec = getattr(kernel, "_kernel_spec", None)  # read at its start: the revision it started on
            meta = (getattr(spec, "metadata", None) or {}).get("envmgr") if spec is not None else None
            if not meta:
                continue
            activity = getattr(kernel, "last_activity", None)
            started = self._started.setdefault(kid, stamp())
            out.append({"user": self._users.get(kid, self.default_user), "namespace": meta["namespace"],
                        "name": meta["name"], "revision": meta["revision"], "notebook": notebooks.get(kid, "console"),
                        "kernel_id": kid, "started": started,
                        "last_activity": activity.strftime("%Y-%m-%dT%H:%M:%SZ") if activity else started})
        for gone in set(self._started) - set(km.list_kernel_ids()):
            self._started.pop(gone, None)
            self._users.pop(gone, None)
        return out

    async def report(self) -> None:
        try:
            uses = await self.uses()
            service = self.settings.get("envmgr_service")
            if service is not None:
                body = {"reporter": self.reporter, "heartbeat": HEARTBEAT_SECONDS,
                        "uses": [{k: v for k, v in u.items() if k != "user"} for u in uses]}
                status, _, raw = await service.request("POST", "envmgr/api/usage", body)
                if status != 200:
                    self.log.info("envmgr usage: the service answered %s: %s", status, raw[:300])
            elif self.book is not None and self.book.enabled:
                await self.run(self.book.report, None, self.reporter, uses, HEARTBEAT_SECONDS)
        except Exception as e:  # noqa: BLE001 - a report that fails is retried by the next heartbeat
            self.log.info("envmgr usage: reporting kernels failed: %s", e)


def report_job(use: dict) -> None:
    """`jupyter envmgr run`: a job's start, to the server this user runs, when one is found (a second at most);
    nothing when none is (the job runs all the same)."""
    from .client import ClientError, EnvmgrClient

    try:
        client = EnvmgrClient.discover()
        client.timeout = 1.0
        roots = {os.path.abspath(s.get("path", "")) for s in client.info().get("storages", [])}
        if os.path.abspath(use["root"]) not in roots:
            return  # that server keeps another root: this environment is not its to count
        client.request("POST", "envmgr/api/usage", {
            "reporter": f"job:{os.uname().nodename}:{os.getpid()}", "heartbeat": 0,
            "uses": [{"namespace": use["namespace"], "name": use["name"], "revision": use["revision"], "notebook": "job",
                      "kernel_id": f"job-{os.getpid()}-{int(time.time())}", "started": stamp(), "last_activity": stamp()}]})
    except (ClientError, OSError, ValueError):
        pass
