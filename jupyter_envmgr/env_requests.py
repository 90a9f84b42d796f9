"""Requests for environments: a user who may read a namespace but not write it asks; a writer decides.

A request is a small JSON file on the root (`<root>/requests/<namespace>/<id>.json`, see layout.py),
so every server of the root sees the same requests. Files are written atomically under a lock per
namespace (flock, bounded wait), by the blocking functions here, which `records.Records` runs in its
worker threads. `RequestDesk` applies the rules: a request is validated exactly as a create is (a
dry run), approving creates the environment with the requester as its owner.

    requested --approve--> approved      (the environment exists, owned by the requester)
              --reject---> rejected      (with the writer's message)
              --withdraw-> withdrawn     (by the requester)
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import uuid
from typing import Callable, Iterator, Optional

from .errors import EnvmgrError, conflict, invalid
from .layout import Layout
from .records import now
from .spec import redact_url, secrets_in
from .store import atomic_write, flock_bounded, secret_mode

STATUSES = ("requested", "approved", "rejected", "withdrawn")
ID_RE = re.compile(r"^[0-9a-f]{32}$")
#: Open requests one user may have at once: enough for real use, bounded against a flood of files.
MAX_OPEN_PER_USER = 20
MAX_MESSAGE = 1000
LOCK_TIMEOUT = 5.0


def not_found(request_id: str) -> EnvmgrError:
    return EnvmgrError(404, "not_found", f"no request with id {request_id[:40]!r}; GET /envmgr/api/requests lists yours")


# ---------------------------------------------------------------- files (blocking; run in Records' threads)


@contextlib.contextmanager
def _locked(directory: str, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """An exclusive lock on a namespace's requests, across threads and servers."""
    os.makedirs(directory, exist_ok=True)
    fd = os.open(os.path.join(directory, ".lock"), os.O_CREAT | os.O_RDWR, 0o644)
    try:
        flock_bounded(fd, timeout, "the requests of this namespace are being changed by another server; retry in a moment")
        yield
    finally:
        os.close(fd)


def _write(path: str, request: dict) -> None:
    has_secrets = bool(secrets_in(list(request["spec"].get("index_urls") or [])))
    atomic_write(path, json.dumps(request, indent=2, sort_keys=True) + "\n", secret_mode(has_secrets))


def read(layout: Layout, namespaces: list, request_id: str) -> dict:
    """The request with this id, in whichever offered namespace holds it (404 when none does)."""
    if not isinstance(request_id, str) or not ID_RE.fullmatch(request_id):
        raise not_found(str(request_id))
    for namespace in namespaces:
        try:
            with open(layout.request_path(namespace, request_id)) as f:
                return json.load(f)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except ValueError:
            raise conflict("damaged", f"the request file of {request_id} is not valid JSON; an administrator "
                                      f"removes {layout.request_path(namespace, request_id)}") from None
    raise not_found(request_id)


def list_namespace(layout: Layout, namespace: str) -> list:
    """Every readable request of a namespace, oldest first (a damaged file is skipped, never fatal)."""
    out = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(layout.requests_dir(namespace)):
            if not entry.name.endswith(".json") or not ID_RE.fullmatch(entry.name[:-5]):
                continue
            with contextlib.suppress(OSError, ValueError):
                with open(entry.path) as f:
                    request = json.load(f)
                if isinstance(request, dict) and request.get("status") in STATUSES:
                    out.append(request)
    return sorted(out, key=lambda r: (r.get("created") or "", r.get("id") or ""))


def add(layout: Layout, request: dict) -> dict:
    """Keep a new request, unless the same name is already asked for or the requester has too many open."""
    namespace = request["namespace"]
    with _locked(layout.requests_dir(namespace)):
        open_ = [r for r in list_namespace(layout, namespace) if r["status"] == "requested"]
        same = next((r for r in open_ if r["name"] == request["name"]), None)
        if same is not None:
            raise conflict("name_taken", f"{request['name']!r} is already requested in namespace {namespace!r} "
                                         f"(request {same['id']} by {same['requester']}); pick another name")
        if sum(r["requester"] == request["requester"] for r in open_) >= MAX_OPEN_PER_USER:
            raise conflict("too_many_requests", f"{request['requester']} has {MAX_OPEN_PER_USER} open requests in "
                                                f"namespace {namespace!r}; withdraw some or wait for a decision")
        _write(layout.request_path(namespace, request["id"]), request)
    return request


def change(layout: Layout, namespace: str, request_id: str, transition: Callable[[dict], dict]) -> dict:
    """Read-modify-write one request under its namespace's lock."""
    with _locked(layout.requests_dir(namespace)):
        path = layout.request_path(namespace, request_id)
        try:
            with open(path) as f:
                request = json.load(f)
        except FileNotFoundError:
            raise not_found(request_id) from None
        request = transition(request)
        _write(path, request)
    return request


# ---------------------------------------------------------------- transitions (pure)


def new_request(namespace: str, spec: dict, requester: str, created: str) -> dict:
    return {"id": uuid.uuid4().hex, "namespace": namespace, "name": spec["name"], "spec": spec,
            "requester": requester, "status": "requested", "created": created, "updated": created,
            "message": "", "decided_by": None}


def decided(status: str, by: str, when: str, message: str = "") -> Callable[[dict], dict]:
    """The transition out of `requested`; anything else was decided already (409)."""
    def transition(request: dict) -> dict:
        if request.get("status") != "requested":
            raise conflict("already_decided", f"request {request.get('id')} is {request.get('status')} already; "
                                              "send a new request to ask again")
        out = dict(request, status=status, updated=when, decided_by=by, message=message)
        if status == "approved":
            out["environment"] = request["name"]
        return out
    return transition


def reopened(why: str, when: str) -> Callable[[dict], dict]:
    """Back to `requested` when approving could not create the environment after all."""
    def transition(request: dict) -> dict:
        out = dict(request, status="requested", updated=when, decided_by=None, message=f"approving failed: {why}"[:MAX_MESSAGE])
        out.pop("environment", None)
        return out
    return transition


def public(request: dict) -> dict:
    """A request as the API shows it: credentials in index URLs redacted."""
    spec = dict(request.get("spec") or {})
    if isinstance(spec.get("index_urls"), list):
        spec["index_urls"] = [redact_url(u) if isinstance(u, str) else u for u in spec["index_urls"]]
    return dict(request, spec=spec)


# ---------------------------------------------------------------- the rules


class RequestDesk:
    """Who may ask, see and decide; stateless (everything is on the root), so any server may answer."""

    def __init__(self, manager, may: Callable[[str, str], bool], user: str):
        self.manager = manager
        self.records = manager.records
        self.may = may  # (action, namespace) -> bool: the server's authorizer on envmgr:<namespace>
        self.user = user

    def _namespaces(self) -> list:
        return list(self.manager.offer.namespaces)

    async def submit(self, body, namespace: Optional[str]) -> dict:
        if not isinstance(body, dict):
            raise EnvmgrError(400, "invalid_json", "the body must be a JSON object: the create body of the environment you ask for")
        body_ns = body.get("namespace") if isinstance(body.get("namespace"), str) else None
        namespace = self.manager.placement.check_namespace(namespace or body_ns)
        if not self.may("read", namespace):
            raise EnvmgrError(403, "forbidden", f"{self.user or 'this user'} may not read namespace {namespace!r}, so "
                                                "may not ask for environments in it; ask an administrator for access")
        spec = copy.deepcopy(body)
        spec.pop("namespace", None)
        await self.manager.create(copy.deepcopy(body), namespace, self.user, dry_run=True)  # the same 4xx as a create
        request = new_request(namespace, spec, self.user, now())
        await self.records.run(add, self.manager.store, request)
        return public(request)

    async def list(self, status: Optional[str] = None, namespace: Optional[str] = None) -> list:
        """The user's own requests, and every request of the namespaces the user may write."""
        namespaces = [self.manager.placement.check_namespace(namespace)] if namespace else self._namespaces()
        if namespace and not self.may("read", namespaces[0]):
            raise EnvmgrError(403, "forbidden", f"{self.user or 'this user'} may not read namespace {namespace!r}; "
                                                "ask an administrator for access")
        wanted = set(status.split(",")) if status else None
        if wanted and not wanted <= set(STATUSES):
            raise invalid("status", f"{status[:60]!r} is not a request status; use {', '.join(STATUSES)}")
        out = []
        for ns in namespaces:
            writer = self.may("write", ns)
            if not writer and not self.may("read", ns):
                continue
            for request in await self.records.run(list_namespace, self.manager.store, ns):
                if (writer or request.get("requester") == self.user) and (not wanted or request["status"] in wanted):
                    out.append(public(request))
        return out

    async def act(self, request_id: str, body) -> dict:
        if not isinstance(body, dict) or not isinstance(body.get("action"), str):
            raise EnvmgrError(400, "invalid_json", 'the body must be {"action": "approve" | "reject" | "withdraw"}, '
                                                   'with "message" for reject')
        unknown = set(body) - {"action", "message"}
        if unknown:
            raise EnvmgrError(400, "unknown_field", f"unknown field(s) {', '.join(sorted(map(str, unknown)))[:200]}; "
                                                    "an action takes 'action' and, for reject, 'message'")
        action = body["action"]
        request = await self.records.run(read, self.manager.store, self._namespaces(), request_id)
        namespace = request["namespace"]
        writer = self.may("write", namespace)
        mine = request.get("requester") == self.user
        if not writer and not mine:
            raise not_found(request_id)  # not theirs to see
        if action in ("approve", "reject") and not writer:
            raise EnvmgrError(403, "forbidden", f"{self.user or 'this user'} may not write namespace {namespace!r}, so "
                                                f"may not {action} requests in it; a writer of the namespace decides")
        if action == "withdraw" and not mine:
            raise EnvmgrError(403, "forbidden", f"only the requester ({request.get('requester')}) may withdraw request "
                                                f"{request_id}; reject it instead")
        if action == "approve":
            return public(await self._approve(request))
        if action == "reject":
            message = body.get("message")
            if not isinstance(message, str) or not message.strip():
                raise invalid("message", "say why the request is rejected, so the requester knows what to change")
            if len(message) > MAX_MESSAGE:
                raise invalid("message", f"is {len(message)} characters; keep it under {MAX_MESSAGE}")
            change_to = decided("rejected", self.user, now(), " ".join(message.split()))
        elif action == "withdraw":
            change_to = decided("withdrawn", self.user, now())
        else:
            raise invalid("action", f"{action[:64]!r} is not a request action; use approve, reject or withdraw")
        return public(await self.records.run(change, self.manager.store, namespace, request_id, change_to))

    async def _approve(self, request: dict) -> dict:
        """Decide first (atomically, so a withdraw or a second approver cannot race), then create; a create
        that fails after all (the name taken meanwhile, a full disk) reopens the request and says why."""
        namespace, spec = request["namespace"], request["spec"]
        if request["status"] == "requested":  # most refusals before anything changes: the same 4xx as a create
            await self.manager.create(copy.deepcopy(spec), namespace, request["requester"], dry_run=True)
        approved = await self.records.run(change, self.manager.store, namespace, request["id"],
                                          decided("approved", self.user, now()))
        try:
            await self.manager.create(copy.deepcopy(spec), namespace, request["requester"])
        except EnvmgrError as e:
            await self.records.run(change, self.manager.store, namespace, request["id"], reopened(e.message, now()))
            raise
        return approved
