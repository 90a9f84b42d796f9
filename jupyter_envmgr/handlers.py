"""The REST routes of API.md, thin: parse, authorize, call the manager, serialize."""
from __future__ import annotations

import asyncio
import json
import time
from typing import Optional

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.httputil import responses
from tornado.iostream import StreamClosedError

from . import lifecycle
from .lifecycle import Status
from ._version import __version__
from .auth import scope
from .errors import EnvmgrError, invalid, not_found
from .manager import EnvironmentManager
from .spec import NAME_RE, scrub
from .store import read_bytes, storage_error

RESOURCE = "envmgr"
TEXT = "text/plain; charset=utf-8"
NAME = r"(?P<name>[^/]+)"
#: A streaming client that has not taken what was sent this long is let go.
STALLED_CLIENT_SECONDS = 10.0
KEEPALIVE_SECONDS = 15.0
LOG_POLL_SECONDS = 0.5  # how often a followed log is read while its build runs


class EnvmgrHandler(ExtensionHandlerMixin, APIHandler):
    """Base: errors as {"message", "reason"}, JSON bodies with a size limit, the namespace query."""

    auth_resource = RESOURCE

    @property
    def manager(self) -> EnvironmentManager:
        return self.settings["envmgr_manager"]

    async def prepare(self):
        """Answer only once the manager has reconciled the root (kernelspecs resynced, builds re-attached)."""
        await super().prepare()
        if self.current_user:  # a refused request is refused at once
            await self.manager.started.wait()

    @property
    def max_body_bytes(self) -> int:
        return self.settings["envmgr_max_body_bytes"]

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, OSError):
            e = storage_error(e, self.manager.store.root_of_fault(e)) or e
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

    def dry_run(self) -> bool:
        """`?dry_run=1`: validate everything, write nothing."""
        return self.get_query_argument("dry_run", "0").lower() in ("1", "true", "yes")

    def namespace(self, body_namespace: Optional[str] = None, body_cluster: Optional[str] = None) -> str:
        """The namespace of this request (?cluster= and ?namespace=, or the body's), after the authorizer agreed
        to it (resource envmgr:<ns>)."""
        namespace = self.manager.placement.check_place(self.get_query_argument("cluster", None) or body_cluster,
                                                       self.get_query_argument("namespace", None) or body_namespace)
        action = "read" if self.request.method == "GET" else "write"
        if not self.may(action, namespace):
            raise EnvmgrError(403, "forbidden", f"{self.owner() or 'this user'} may not {action} environments in namespace {namespace!r}; ask an administrator for access")
        return namespace

    def may(self, action: str, namespace: str) -> bool:
        return self.authorizer.is_authorized(self, self.current_user, action, scope(namespace))

    def env_name(self, name: str) -> str:
        """A name from the URL, checked before it comes near a path."""
        if not NAME_RE.fullmatch(name) or not 2 <= len(name) <= 63:
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
        info["service"] = None  # this server is the writer (embedded, or the service itself)
        self.write_json(info)


class EnvironmentsHandler(EnvmgrHandler):
    @web.authenticated
    @authorized
    async def get(self):
        body, etag = await self.manager.list_json(self.namespace(), self.get_query_argument("label", None), self.get_query_argument("status", None))
        self.set_header("Content-Type", "application/json")
        self.set_header("Etag", etag)
        if self.check_etag_header():
            self.set_status(304)
            self.finish()
            return
        self.finish(body)

    @web.authenticated
    @authorized
    async def post(self):
        body = self.body()
        field = (lambda key: body.get(key) if isinstance(body, dict) and isinstance(body.get(key), str) else None)
        namespace = self.namespace(field("namespace"), field("cluster"))
        record = await self.manager.create(body, namespace, self.owner(), dry_run=self.dry_run())
        if self.dry_run():
            self.write_json(self.manager.public(record), 200)
            return
        self.set_header("Location", url_path_join(self.base_url, "envmgr/api/environments", record["name"]))
        self.write_json(self.manager.public(record), 202)


class EnvironmentHandler(EnvmgrHandler):
    @web.authenticated
    @authorized
    async def get(self, name):
        self.write_json(self.manager.public(await self.manager.get(self.namespace(), self.env_name(name))))

    @web.authenticated
    @authorized
    async def patch(self, name):
        body = self.body()
        record, built = await self.manager.patch(self.namespace(), self.env_name(name), body, dry_run=self.dry_run())
        self.write_json(self.manager.public(record), 202 if built and not self.dry_run() else 200)

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
        record = await self.manager.records.read_for_change(ns, name)
        revision = self._revision(record)
        secrets = self.manager.secrets(record)
        path = self.manager.paths(ns, name, revision).log
        self.set_header("Content-Type", TEXT)
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        if self.get_query_argument("follow", "0") in ("1", "true", "yes"):
            await self._follow(ns, name, revision, path, secrets)
        else:
            text = await self.manager.records.run(read_bytes, path)
            self.finish(scrub(text.decode(errors="replace"), secrets), set_content_type=TEXT)

    def _revision(self, record: dict) -> int:
        raw = self.get_query_argument("revision", None)
        if raw is None:
            return record["revision"]
        numbers = [r["revision"] for r in record.get("revisions", [])]
        if not (raw.isascii() and raw.isdigit()) or int(raw) not in numbers:
            raise invalid("revision", f"{raw[:20]!r} is not a kept revision of {record['name']!r}; kept: {numbers}")
        return int(raw)

    async def _follow(self, ns: str, name: str, revision: int, path: str, secrets: list) -> None:
        """Stream the log as it grows, until this revision's build ends, the client stops reading, or the deadline.
        The log is read every LOG_POLL_SECONDS; a change of the record (its build ending) wakes it at once."""
        deadline = time.monotonic() + self.manager.settings.build_timeout + 120
        offset = 0
        records = self.manager.records
        async with self.manager.feed.subscribe(ns) as changes:
            while time.monotonic() < deadline:
                try:
                    record = await records.read(ns, name)
                except EnvmgrError:
                    record = None  # deleted: send what is left, then end
                active = bool(record) and record.get("revision") == revision and lifecycle.is_active(record.get("status"))
                chunk = await records.run(read_bytes, path, offset)
                complete = chunk if not active else chunk[: chunk.rfind(b"\n") + 1]
                offset += len(complete)
                if complete:
                    try:
                        self.write(scrub(complete.decode(errors="replace"), secrets))
                        await asyncio.wait_for(self.flush(), STALLED_CLIENT_SECONDS)
                    except (StreamClosedError, asyncio.TimeoutError):
                        self.request.connection.close()  # a reader that went away or stopped reading
                        return
                if not active:
                    break
                await _changed(changes, name, LOG_POLL_SECONDS)
        self.finish(set_content_type=TEXT)


async def _changed(changes: asyncio.Queue, name: str, seconds: float) -> None:
    """Wait at most `seconds` for an event about environment `name` (of the queue's namespace)."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        try:
            event = await asyncio.wait_for(changes.get(), left)
        except asyncio.TimeoutError:
            return
        if event is None or (event.get("environment") or event).get("name") == name:
            return


class EventsHandler(EnvmgrHandler):
    """`GET /envmgr/api/events`: the change feed as server-sent events, for the namespaces the user may read."""

    @web.authenticated
    @authorized
    async def get(self):
        cluster = self.get_query_argument("cluster", None)
        if self.get_query_argument("namespace", None):
            readable = {self.namespace()}
        elif cluster:  # every namespace of that cluster
            cluster = self.manager.placement.check_cluster(cluster)
            readable = {ns for ns in self.manager.namespaces if self.manager.placement.cluster_of(ns) == cluster and self.may("read", ns)}
        else:
            readable = {ns for ns in self.manager.namespaces if self.may("read", ns)}
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        async with self.manager.feed.subscribe() as queue:
            if not await self._send(": connected\n\n"):
                return
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
                except asyncio.TimeoutError:
                    text = ": keepalive\n\n"
                else:
                    if event is None:  # fell too far behind: the client reconnects and re-lists
                        break
                    namespace = event.get("namespace") or event.get("environment", {}).get("namespace")
                    if namespace not in readable:
                        continue
                    text = f"data: {json.dumps(event)}\n\n"
                if not await self._send(text):
                    return
        self.finish()

    async def _send(self, text: str) -> bool:
        try:
            self.write(text)
            await asyncio.wait_for(self.flush(), STALLED_CLIENT_SECONDS)
            return True
        except (StreamClosedError, asyncio.TimeoutError):
            self.request.connection.close()
            return False


class PackagesHandler(EnvmgrHandler):
    @web.authenticated
    @authorized
    async def get(self, name):
        ns, name = self.namespace(), self.env_name(name)
        record = await self.manager.records.read_for_change(ns, name)
        packages = []
        if record.get("ready_revision"):
            ready = record["ready_revision"]
            prefix = self.manager.store.prefix(ns, name, ready)
            # Marked against the inputs of the revision listed, not a newer one still building or failed.
            inputs = next((r.get("inputs") or {} for r in record.get("revisions", []) if r.get("revision") == ready), {})
            packages = await self.manager.recipe_book.installed(
                record["manager"], prefix, inputs.get("packages", record.get("packages") or ""), record.get("env_vars") or {})
        self.write_json({"packages": packages})


class RevisionsHandler(EnvmgrHandler):
    @web.authenticated
    @authorized
    async def get(self, name):
        self.write_json({"revisions": await self.manager.revisions(self.namespace(), self.env_name(name))})


class ActionsHandler(EnvmgrHandler):
    @web.authenticated
    @authorized
    async def post(self, name):
        body = self.body()
        record, status = await self.manager.action(self.namespace(), self.env_name(name), body, self.owner(),
                                                   dry_run=self.dry_run())
        self.write_json(self.manager.public(record), status)


class ExportHandler(EnvmgrHandler):
    @web.authenticated
    @authorized
    async def get(self, name):
        ns, name = self.namespace(), self.env_name(name)
        fmt = self.get_query_argument("format", "spec")
        if fmt == "spec":
            spec = await self.manager.export_spec(ns, name)
            self.set_header("Content-Disposition", f'attachment; filename="{name}.json"')
            self.write_json(spec)
        elif fmt == "requirements":
            record = await self.manager.get(ns, name)
            text = scrub(await self.manager.lock_text(ns, name), self.manager.secrets(record))
            self.set_header("Content-Disposition", f'attachment; filename="{name}.lock.txt"')
            self.finish(text, set_content_type=TEXT)
        else:
            raise invalid("format", f"{fmt[:40]!r} is not an export format; use requirements or spec")


class SuggestionsHandler(EnvmgrHandler):
    """A spec proposed from a notebook or a script (suggestions.py); nothing is written."""

    @web.authenticated
    @authorized
    async def post(self):
        from . import suggestions

        body = self.body()
        info = self.manager.info(__version__, self.manager.builder.kind)
        try:
            suggestion = await asyncio.to_thread(suggestions.from_body, body, info["python_versions"],
                                                 self.manager.settings.default_python)
        except suggestions.SuggestionError as e:
            raise invalid(e.field, str(e).split(": ", 1)[-1]) from None
        self.write_json(suggestion)


class AuditHandler(EnvmgrHandler):
    """Known vulnerabilities in a revision's lock (audit.py): the kept result when fresh, else checked now."""

    @web.authenticated
    @authorized
    async def get(self, name):
        from . import audit

        ns, name = self.namespace(), self.env_name(name)
        record = await self.manager.records.read_for_change(ns, name)
        auditor = self.manager.auditor
        if auditor is None:
            raise EnvmgrError(503, "no_advisory_db", "no advisory database is configured; an administrator sets "
                                                     "c.EnvManagerApp.advisory_db (an OSV directory, zip export or query service URL)")
        raw = self.get_query_argument("revision", None)
        ready = [r["revision"] for r in record.get("revisions", []) if r.get("status") == Status.READY]
        if raw is None:
            if not record.get("ready_revision"):
                raise EnvmgrError(409, "not_ready", f"{name!r} has no ready revision yet, so there is no lock to audit; wait for the build to finish")
            revision = record["ready_revision"]
        elif raw.isascii() and raw.isdigit() and int(raw) in ready:
            revision = int(raw)
        else:
            raise invalid("revision", f"{raw[:20]!r} is not a ready revision of {name!r}; ready: {ready}")
        paths = self.manager.paths(ns, name, revision)
        try:
            result = await asyncio.to_thread(audit.fresh_or_audit, auditor, revision, paths.lock, paths.log,
                                             self.settings.get("envmgr_audit_interval", 86400.0))
        except audit.DatabaseUnavailable as e:
            raise EnvmgrError(503, "advisory_db_unavailable", str(e)) from None
        self.write_json(result)



class RequestsBase(EnvmgrHandler):
    """Requests for environments (env_requests.py). The namespace rules are checked per request by the
    desk; the route itself only needs read on envmgr, since a reader may ask."""

    def desk(self):
        from .env_requests import RequestDesk

        def may(action: str, namespace: str) -> bool:  # the route's resource too, as every other route asks it
            return self.authorizer.is_authorized(self, self.current_user, action, RESOURCE) and self.may(action, namespace)

        return RequestDesk(self.manager, may, self.owner())


class RequestsHandler(RequestsBase):
    @web.authenticated
    @authorized(action="read")
    async def get(self):
        requests = await self.desk().list(self.get_query_argument("status", None), self.get_query_argument("namespace", None))
        self.write_json({"requests": requests})

    @web.authenticated
    @authorized(action="read")
    async def post(self):
        request = await self.desk().submit(self.body(), self.get_query_argument("namespace", None))
        self.write_json(request, 202)


class RequestActionsHandler(RequestsBase):
    @web.authenticated
    @authorized(action="read")
    async def post(self, id):
        self.write_json(await self.desk().act(id, self.body()))


class PodSpecHandler(EnvmgrHandler):
    """What it takes to use an environment elsewhere (elsewhere.py): the `run` line and the pod fragment."""

    @web.authenticated
    @authorized
    async def get(self, name):
        from . import elsewhere

        ns, name = self.namespace(), self.env_name(name)
        record = await self.manager.records.read_for_change(ns, name)
        app = self.extensionapp
        claim, mount = elsewhere.cluster_storage(app, self.manager.placement.cluster_of(ns))
        self.write_json(await self.manager.records.run(
            elsewhere.usage, self.manager.store.root_of(ns), record, claim, mount, app.kubernetes_image,
            self.manager.settings.default_namespace))


def route_table() -> list:
    """(path under base_url, handler): the same table the OpenAPI test compares with API.md."""
    api = "envmgr/api"
    env = f"{api}/environments/{NAME}"
    return [
        (f"{api}/info", InfoHandler),
        (f"{api}/environments", EnvironmentsHandler),
        (f"{api}/events", EventsHandler),
        (env, EnvironmentHandler),
        (f"{env}/log", LogHandler),
        (f"{env}/packages", PackagesHandler),
        (f"{env}/revisions", RevisionsHandler),
        (f"{env}/actions", ActionsHandler),
        (f"{env}/export", ExportHandler),
        (f"{env}/audit", AuditHandler),
        (f"{env}/usage", UsageHandler),
        (f"{api}/usage", UsageReportHandler),
        (f"{api}/suggestions", SuggestionsHandler),
        (f"{api}/package-search", PackageSearchHandler),
        (f"{env}/pod-spec", PodSpecHandler),
        (f"{api}/requests", RequestsHandler),
        (f"{api}/requests/(?P<id>[^/]+)/actions", RequestActionsHandler),
    ]


class UsageHandler(EnvmgrHandler):
    """`GET .../usage`: what an environment's revisions hold on disk and whether kernels use them."""

    @web.authenticated
    @authorized
    async def get(self, name):
        ns, name = self.namespace(), self.env_name(name)
        kname = self.manager.kernels.name(ns, name)
        running = sum(1 for k in self.kernel_manager.list_kernels() if k.get("name") == kname)
        self.write_json(await self.manager.usage(ns, name, running))


class PackageSearchHandler(EnvmgrHandler):
    """`GET /package-search?q=`: names starting with q and their versions, from the index the builds use (package_search.py)."""

    @web.authenticated
    @authorized
    async def get(self):
        import os

        from .package_search import PackageSearch, configured_index

        url = configured_index(self.settings, os.environ)
        if not url:
            raise EnvmgrError(503, "no_index", "no package index is configured for the search: set UV_DEFAULT_INDEX "
                                              "(or UV_INDEX_URL) in the server's environment to the index the builds use")
        searches = self.settings.setdefault("envmgr_package_searches", {})
        search = searches.get(url) or searches.setdefault(url, PackageSearch(url))
        self.write_json({"index": search.shown_url, "packages": await search.search(self.get_query_argument("q", ""))})


class UsageReportHandler(EnvmgrHandler):
    """`POST /envmgr/api/usage`: a notebook server reports the kernels it runs (usage.py); the user of each
    use is the authenticated caller. A reader of a namespace runs kernels there, so read is enough."""

    @web.authenticated
    @authorized(action="read")
    async def post(self):
        from . import usage

        manager = self.manager
        reporter, heartbeat, uses = usage.check_report(self.body(), lambda ns: self.may("read", ns), manager.namespaces)
        caller = self.owner()
        recorded = await manager.report_usage(caller, reporter, [dict(u, user=caller) for u in uses], heartbeat)
        self.write_json({"recorded": recorded})
