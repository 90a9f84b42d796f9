"""The REST routes of API.md, thin: parse, authorize, call the manager, serialize."""
from __future__ import annotations

import asyncio
import errno
import json
import os
import time
from typing import Optional

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.httputil import responses
from tornado.iostream import StreamClosedError

from ._version import __version__
from .auth import scope
from .errors import EnvmgrError, invalid, not_found
from .manager import ACTIVE, EnvironmentManager
from .spec import NAME_RE, scrub

RESOURCE = "envmgr"
TEXT = "text/plain; charset=utf-8"
NAME = r"(?P<name>[^/]+)"


class EnvmgrHandler(ExtensionHandlerMixin, APIHandler):
    """Base: errors as {"message", "reason"}, JSON bodies with a size limit, the namespace query."""

    auth_resource = RESOURCE

    @property
    def manager(self) -> EnvironmentManager:
        return self.settings["envmgr_manager"]

    @property
    def max_body_bytes(self) -> int:
        return self.settings["envmgr_max_body_bytes"]

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            e = EnvmgrError(507, "no_space", f"the storage root is full ({e.strerror}); free space or delete "
                                             "environments (jupyter envmgr gc frees old revisions), then retry")
        if isinstance(e, EnvmgrError) and not self._finished:
            self.log.info("envmgr %s %s: %s %s", self.request.method, self.request.path, e.status, e.message)
            self.clear()
            self.set_status(e.status)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps(e.to_json()))
            return
        super()._handle_request_exception(e)

    def write_error(self, status_code: int, **kwargs) -> None:
        exc = (kwargs.get("exc_info") or (None, None, None))[1]
        if isinstance(exc, web.HTTPError):
            message = exc.log_message or responses.get(status_code, "error")
            if exc.args and "%" in message:
                message = message % exc.args
            reason = {401: "unauthenticated", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}.get(status_code, exc.reason or "error")
        else:
            message, reason = "the server failed on this request; see its log", "internal_error"
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"message": message, "reason": reason}))

    def body(self) -> object:
        raw = self.request.body or b""
        if len(raw) > self.max_body_bytes:
            raise EnvmgrError(413, "too_large", f"the request body is {len(raw)} bytes, more than the {self.max_body_bytes} allowed (c.EnvManagerApp.max_body_bytes)")
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except ValueError as e:
            raise EnvmgrError(400, "invalid_json", f"the body is not valid JSON ({e}); send a JSON object") from None
        except RecursionError:
            raise EnvmgrError(400, "invalid_json", "the body nests too deeply to be a request; send a flat JSON object") from None

    def namespace(self, body_namespace: Optional[str] = None) -> str:
        """The namespace of this request, after the authorizer agreed to it (resource envmgr:<ns>)."""
        namespace = self.manager.check_namespace(self.get_query_argument("namespace", None) or body_namespace)
        action = "read" if self.request.method == "GET" else "write"
        if not self.may(action, namespace):
            raise EnvmgrError(403, "forbidden", f"{self.owner() or 'this user'} may not {action} environments in namespace {namespace!r}; ask an administrator for access")
        return namespace

    def may(self, action: str, namespace: str) -> bool:
        return self.authorizer.is_authorized(self, self.current_user, action, scope(namespace))

    def env_name(self, name: str) -> str:
        """A name from the URL, checked before it comes near a path."""
        if not NAME_RE.match(name) or not 2 <= len(name) <= 63:
            raise not_found(name, self.get_query_argument("namespace", None) or self.manager.settings.default_namespace)
        return name

    def write_json(self, data: dict, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    def owner(self) -> str:
        user = self.current_user
        return getattr(user, "username", None) or getattr(user, "name", None) or str(user or "")


class InfoHandler(EnvmgrHandler):
    @web.authenticated
    @authorized
    async def get(self):
        info = self.manager.info(__version__, self.manager.builder.kind)
        info["namespaces"] = [ns for ns in info["namespaces"] if self.may("read", ns)]  # only what this user may see
        self.write_json(info)


class EnvironmentsHandler(EnvmgrHandler):
    @web.authenticated
    @authorized
    async def get(self):
        envs = self.manager.list(self.namespace(), self.get_query_argument("label", None), self.get_query_argument("status", None))
        self.write_json({"environments": envs})

    @web.authenticated
    @authorized
    async def post(self):
        body = self.body()
        namespace = self.namespace(body.get("namespace") if isinstance(body, dict) and isinstance(body.get("namespace"), str) else None)
        record = await self.manager.create(body, namespace, self.owner())
        self.set_header("Location", url_path_join(self.base_url, "envmgr/api/environments", record["name"]))
        self.write_json(self.manager.public(record), 202)


class EnvironmentHandler(EnvmgrHandler):
    @web.authenticated
    @authorized
    async def get(self, name):
        self.write_json(self.manager.public(self.manager.get(self.namespace(), self.env_name(name))))

    @web.authenticated
    @authorized
    async def patch(self, name):
        body = self.body()
        record, built = await self.manager.patch(self.namespace(), self.env_name(name), body)
        self.write_json(self.manager.public(record), 202 if built else 200)

    @web.authenticated
    @authorized
    async def delete(self, name):
        await self.manager.delete(self.namespace(), self.env_name(name))
        self.set_status(204)
        self.finish()


class LogHandler(EnvmgrHandler):
    @web.authenticated
    @authorized
    async def get(self, name):
        ns, name = self.namespace(), self.env_name(name)
        record = self.manager.get(ns, name)
        revision = self._revision(record)
        secrets = self.manager.secrets(record)
        path = self.manager.paths(ns, name, revision).log
        self.set_header("Content-Type", TEXT)
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        if self.get_query_argument("follow", "0") in ("1", "true", "yes"):
            await self._follow(ns, name, revision, path, secrets)
        else:
            self.finish(scrub(_read(path), secrets), set_content_type=TEXT)

    def _revision(self, record: dict) -> int:
        raw = self.get_query_argument("revision", None)
        if raw is None:
            return record["revision"]
        numbers = [r["revision"] for r in record.get("revisions", [])]
        if not (raw.isascii() and raw.isdigit()) or int(raw) not in numbers:
            raise invalid("revision", f"{raw[:20]!r} is not a kept revision of {record['name']!r}; kept: {numbers}")
        return int(raw)

    async def _follow(self, ns: str, name: str, revision: int, path: str, secrets: list) -> None:
        """Stream the log as it grows, until this revision's build ends (bounded by the build timeout)."""
        deadline = time.monotonic() + self.manager.settings.build_timeout + 120
        offset = 0
        while time.monotonic() < deadline:
            record = self.manager.get(ns, name) if self.manager.store.exists(ns, name) else None
            active = bool(record) and record.get("revision") == revision and record.get("status") in ACTIVE
            chunk = _read_bytes(path, offset)
            if chunk:
                complete = chunk if not active else chunk[: chunk.rfind(b"\n") + 1]
                offset += len(complete)
                if complete:
                    try:
                        self.write(scrub(complete.decode(errors="replace"), secrets))
                        await self.flush()
                    except StreamClosedError:
                        return
            if not active:
                break
            event = self.manager.changed
            try:
                await asyncio.wait_for(event.wait(), timeout=0.3)
            except asyncio.TimeoutError:
                pass
        self.finish(set_content_type=TEXT)


class PackagesHandler(EnvmgrHandler):
    @web.authenticated
    @authorized
    async def get(self, name):
        ns, name = self.namespace(), self.env_name(name)
        record = self.manager.get(ns, name)
        packages = []
        if record.get("ready_revision"):
            prefix = self.manager.store.prefix(ns, name, record["ready_revision"])
            packages = await self.manager.recipe_book.installed(record["manager"], prefix)
        self.write_json({"packages": packages})


class RevisionsHandler(EnvmgrHandler):
    @web.authenticated
    @authorized
    async def get(self, name):
        self.write_json({"revisions": self.manager.revisions(self.namespace(), self.env_name(name))})


class ActionsHandler(EnvmgrHandler):
    @web.authenticated
    @authorized
    async def post(self, name):
        body = self.body()
        record = await self.manager.action(self.namespace(), self.env_name(name), body, self.owner())
        self.write_json(self.manager.public(record), 202)


class ExportHandler(EnvmgrHandler):
    @web.authenticated
    @authorized
    async def get(self, name):
        ns, name = self.namespace(), self.env_name(name)
        fmt = self.get_query_argument("format", "spec")
        if fmt == "spec":
            spec = self.manager.export_spec(ns, name)
            self.set_header("Content-Disposition", f'attachment; filename="{name}.json"')
            self.write_json(spec)
        elif fmt == "requirements":
            record = self.manager.get(ns, name)
            text = scrub(self.manager.lock_text(ns, name), self.manager.secrets(record))
            self.set_header("Content-Disposition", f'attachment; filename="{name}.lock.txt"')
            self.finish(text, set_content_type=TEXT)
        else:
            raise invalid("format", f"{fmt!r} is not an export format; use requirements or spec")


def _read_bytes(path: str, offset: int = 0) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read()
    except FileNotFoundError:
        return b""


def _read(path: str) -> str:
    return _read_bytes(path).decode(errors="replace")


def route_table() -> list:
    """(path under base_url, handler): the same table the OpenAPI test compares with API.md."""
    api = "envmgr/api"
    env = f"{api}/environments/{NAME}"
    return [
        (f"{api}/info", InfoHandler),
        (f"{api}/environments", EnvironmentsHandler),
        (env, EnvironmentHandler),
        (f"{env}/log", LogHandler),
        (f"{env}/packages", PackagesHandler),
        (f"{env}/revisions", RevisionsHandler),
        (f"{env}/actions", ActionsHandler),
        (f"{env}/export", ExportHandler),
    ]
