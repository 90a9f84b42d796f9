"""A notebook server that reads: every envmgr route forwarded to the environment service, with its user's identity.

With `c.EnvManagerApp.service_url`, a user's server keeps the routes of API.md (so the panel, the
magics and `jupyter envmgr` work unchanged) but decides nothing and writes nothing: each request
goes to the service with this server's identity (its JupyterHub server token, or
`c.EnvManagerApp.service_token`), and the answer comes back as it is. One stream of the service's
`/events` feeds this server's own `/events` clients and refreshes its kernelspecs; the kernelspecs
themselves are read from the root, so the picker and kernel starts never depend on the service.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import AsyncIterator, Callable, Optional
from urllib.parse import urlparse

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from jupyter_server.utils import url_path_join
from tornado import httputil, web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.iostream import StreamClosedError

from .spec import redact_url

RESOURCE = "envmgr"
#: Headers of a request that the service needs to answer it as this server would.
REQUEST_HEADERS = ("Content-Type", "If-None-Match", "Accept")
#: Headers of the service's answer that the client needs.
RESPONSE_HEADERS = ("Content-Type", "Etag", "Content-Disposition", "Cache-Control", "X-Accel-Buffering")
KEEPALIVE_SECONDS = 15.0
QUEUE_SIZE = 1000


class ServiceUnavailable(Exception):
    """The service did not answer: the route answers 503 naming service_url."""


class ServiceClient:
    """Requests to the environment service with this server's identity (a bounded wait each)."""

    def __init__(self, url: str, token: str, timeout: float = 60.0, connect_timeout: float = 5.0):
        self.url = url if url.endswith("/") else url + "/"
        self.token = token
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.http = AsyncHTTPClient()

    @property
    def shown_url(self) -> str:
        """The URL as /info and messages show it: credentials redacted."""
        return redact_url(self.url)

    @property
    def prefix(self) -> str:
        return urlparse(self.url).path

    def unavailable(self, why: str) -> dict:
        return {"message": f"the environment service at {self.shown_url} cannot be reached ({why}); check that it "
                           "runs and that c.EnvManagerApp.service_url points at it, then retry",
                "reason": "service_unavailable"}

    def _request(self, method: str, path: str, body=None, headers: Optional[dict] = None, **kwargs) -> HTTPRequest:
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            headers = dict(headers or {}, **{"Content-Type": "application/json"})
        if method in ("POST", "PATCH", "PUT") and body is None:
            body = b""
        return HTTPRequest(self.url + path, method=method, body=body,
                           headers=dict(headers or {}, Authorization=f"token {self.token}"),
                           connect_timeout=self.connect_timeout, follow_redirects=False,
                           allow_nonstandard_methods=True, **kwargs)

    async def request(self, method: str, path: str, body=None, headers: Optional[dict] = None) -> tuple:
        """(status, headers, body bytes) of one request; `path` is relative to the service's base URL."""
        try:
            response = await self.http.fetch(self._request(method, path, body, headers, request_timeout=self.timeout),
                                              raise_error=False)
        except (OSError, asyncio.TimeoutError) as e:
            raise ServiceUnavailable(str(e) or type(e).__name__) from None
        if response.code == 599:
            raise ServiceUnavailable(str(response.error or "no answer"))
        if _gateway_error(response.code, response.headers):
            raise ServiceUnavailable(f"{response.code} from the proxy in front of it")
        return response.code, response.headers, response.body or b""

    async def stream(self, path: str, on_headers: Callable, on_chunk: Callable, headers: Optional[dict] = None,
                     timeout: float = 7 * 24 * 3600.0) -> None:
        """A streamed GET (a followed log, /events): `on_headers(status, headers)` once, then `on_chunk(bytes)`."""
        state = {"status": None, "headers": httputil.HTTPHeaders()}

        def header_line(line: str) -> None:
            if line.startswith("HTTP/"):
                state["status"] = int(line.split(" ", 2)[1])
                state["headers"] = httputil.HTTPHeaders()
            elif line.strip():
                state["headers"].parse_line(line)
            elif state["status"] not in (None, 100):
                if _gateway_error(state["status"], state["headers"]):
                    state["gateway"] = state["status"]
                else:
                    on_headers(state["status"], state["headers"])

        def chunk(data: bytes) -> None:
            if "gateway" not in state:
                on_chunk(data)

        try:
            response = await self.http.fetch(
                self._request("GET", path, headers=headers, request_timeout=timeout,
                              header_callback=header_line, streaming_callback=chunk),
                raise_error=False)
        except (OSError, asyncio.TimeoutError) as e:
            raise ServiceUnavailable(str(e) or type(e).__name__) from None
        if response.code == 599 and state["status"] is None:
            raise ServiceUnavailable(str(response.error or "no answer"))
        if "gateway" in state:
            raise ServiceUnavailable(f"{state['gateway']} from the proxy in front of it")


def _gateway_error(status: int, headers) -> bool:
    """A 502/503/504 that is not the service's own JSON: the hub's proxy (or another) answered for a service
    that is down, with its HTML error page."""
    return status in (502, 503, 504) and not (headers.get("Content-Type") or "").startswith("application/json")


class Relay:
    """This server's /events clients, fed from the one stream of the service's events."""

    def __init__(self):
        self._subscribers: set = set()

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue]:
        queue: asyncio.Queue = asyncio.Queue(QUEUE_SIZE)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    def publish(self, event: Optional[dict]) -> None:
        """An event for every client; None ends their streams (they reconnect and list again)."""
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:  # a client that stopped reading is let go
                self._subscribers.discard(queue)
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                queue.put_nowait(None)


class Follower:
    """Follows the service's /events on one stream: relays each event, refreshes the kernelspecs it names."""

    def __init__(self, client: ServiceClient, relay: Relay, refresh: Callable[[Optional[list]], None],
                 log: Optional[logging.Logger] = None):
        self.client = client
        self.relay = relay
        self.refresh = refresh  # blocking: run in a worker thread
        self.log = log or logging.getLogger("jupyter_envmgr")
        self.connected = asyncio.Event()
        self._kernels: dict = {}  # (namespace, name) -> kernel name, for deletes

    async def run(self) -> None:
        delay = 0.5
        while True:
            started = time.monotonic()
            try:
                await self._follow()
            except ServiceUnavailable as e:
                self.log.warning("jupyter_envmgr: the environment service at %s cannot be reached (%s); retrying",
                                 self.client.shown_url, e)
            except Exception:  # never let the follower die: kernels and the picker do not depend on it
                self.log.exception("jupyter_envmgr: following the service's events failed")
            self.connected.clear()
            self.relay.publish(None)
            delay = 0.5 if time.monotonic() - started > 30 else min(delay * 2, 10.0)
            await asyncio.sleep(delay)

    async def _follow(self) -> None:
        buffer = bytearray()
        status = {}

        def on_headers(code, headers):
            status["code"] = code
            if code == 200:
                self.connected.set()
                asyncio.ensure_future(asyncio.to_thread(self.refresh, None))  # what changed while away

        def on_chunk(chunk: bytes) -> None:
            buffer.extend(chunk)
            while b"\n\n" in buffer:
                block, _, rest = bytes(buffer).partition(b"\n\n")
                buffer[:] = rest
                if status.get("code") == 200:
                    self._event(block.decode(errors="replace"))

        await self.client.stream("envmgr/api/events", on_headers, on_chunk)
        if status.get("code") != 200:
            raise ServiceUnavailable(f"its /events answered {status.get('code')}: {bytes(buffer)[:200].decode(errors='replace')}")

    def _event(self, block: str) -> None:
        data = "\n".join(line[5:].lstrip() for line in block.splitlines() if line.startswith("data:"))
        if not data:
            return  # a comment (keepalive)
        try:
            event = json.loads(data)
        except ValueError:
            return
        self.relay.publish(event)
        record = event.get("environment") or {}
        key = (record.get("namespace") or event.get("namespace"), record.get("name") or event.get("name"))
        kernel = record.get("kernel_name") or self._kernels.get(key)
        if event.get("type") == "upsert" and record.get("kernel_name"):
            self._kernels[key] = record["kernel_name"]
        elif event.get("type") == "delete":
            self._kernels.pop(key, None)
        asyncio.ensure_future(asyncio.to_thread(self.refresh, [kernel] if kernel else None))


class ForwardHandler(ExtensionHandlerMixin, APIHandler):
    """Any envmgr route: the same request to the service, its answer back as it is."""

    auth_resource = RESOURCE

    @property
    def client(self) -> ServiceClient:
        return self.settings["envmgr_service"]

    def _service_path(self) -> str:
        path = self.request.path[len(self.base_url.rstrip("/")) + 1:] if self.request.path.startswith(self.base_url.rstrip("/") + "/") else self.request.path.lstrip("/")
        return path + (f"?{self.request.query}" if self.request.query else "")

    def _request_headers(self) -> dict:
        return {h: self.request.headers[h] for h in REQUEST_HEADERS if h in self.request.headers}

    def _unavailable(self, why: str) -> None:
        self.set_status(503)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(self.client.unavailable(why)))

    def _copy_headers(self, status: int, headers) -> None:
        self.set_status(status)
        for name in RESPONSE_HEADERS:
            if name in headers:
                self.set_header(name, headers[name])
        location = headers.get("Location")
        if location:
            path = urlparse(location).path
            prefix = self.client.prefix
            self.set_header("Location", url_path_join(self.base_url, path[len(prefix):]) if path.startswith(prefix) else location)

    def finish(self, *args, **kwargs):
        """Keep the service's Content-Type (APIHandler.finish would make every answer JSON, a log too)."""
        kwargs.setdefault("set_content_type", self._headers.get("Content-Type", "application/json"))
        return super().finish(*args, **kwargs)

    def _streaming(self) -> bool:
        return self.request.method == "GET" and self.request.path.endswith("/log") and \
            self.get_query_argument("follow", "0").lower() in ("1", "true", "yes")

    async def _forward(self, *args, **kwargs) -> None:
        if self._streaming():
            await self._forward_stream()
            return
        try:
            status, headers, body = await self.client.request(self.request.method, self._service_path(),
                                                              self.request.body if self.request.body else None,
                                                              self._request_headers())
        except ServiceUnavailable as e:
            self._unavailable(str(e))
            return
        self._copy_headers(status, headers)
        self.finish(body if status not in (204, 304) else None)

    async def _forward_stream(self) -> None:
        started = asyncio.Event()

        def on_headers(status, headers):
            self._copy_headers(status, headers)
            started.set()

        def on_chunk(chunk: bytes) -> None:
            if self.request.connection.stream is None or self.request.connection.stream.closed():
                raise StreamClosedError()  # the reader went away: stop the service's stream too
            self.write(chunk)
            asyncio.ensure_future(self._flush_quietly())

        try:
            await self.client.stream(self._service_path(), on_headers, on_chunk, self._request_headers())
        except ServiceUnavailable as e:
            if not started.is_set():
                self._unavailable(str(e))
                return
        if not self._finished:
            self.finish()

    async def _flush_quietly(self) -> None:
        with contextlib.suppress(StreamClosedError):
            await self.flush()

    @web.authenticated
    @authorized
    async def get(self, *args, **kwargs):
        await self._forward()

    @web.authenticated
    @authorized
    async def post(self, *args, **kwargs):
        await self._forward()

    @web.authenticated
    @authorized
    async def patch(self, *args, **kwargs):
        await self._forward()

    @web.authenticated
    @authorized
    async def delete(self, *args, **kwargs):
        await self._forward()


class ForwardInfoHandler(ForwardHandler):
    """`GET /info`: the service's, plus where the service is and whether it answers."""

    @web.authenticated
    @authorized
    async def get(self):
        service = {"url": self.client.shown_url, "reachable": True}
        try:
            status, headers, body = await self.client.request("GET", self._service_path(), headers=self._request_headers())
        except ServiceUnavailable as e:
            service.update(reachable=False, message=self.client.unavailable(str(e))["message"])
            status, body = 200, json.dumps(unreachable_info(self.settings.get("envmgr_version", ""))).encode()
        if status != 200:
            self._copy_headers(status, headers)
            self.finish(body)
            return
        info = json.loads(body)
        info["service"] = service
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(info))


def unreachable_info(version: str) -> dict:
    """What /info says while the service does not answer: every key, nothing offered."""
    return {"version": version, "backend": "service", "managers": [], "python_versions": [], "namespaces": [],
            "clusters": [], "default_python": None, "storages": [], "presets": [], "base_packages": {}, "limits": {}}


class RelayEventsHandler(ForwardHandler):
    """`GET /events`: this server's clients share its one stream of the service's events."""

    @web.authenticated
    @authorized
    async def get(self):
        namespace = self.get_query_argument("namespace", None)
        cluster = self.get_query_argument("cluster", None)
        follower = self.settings["envmgr_follower"]
        try:
            await asyncio.wait_for(follower.connected.wait(), 5.0)
        except asyncio.TimeoutError:
            self._unavailable("its event stream is not connected")
            return
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        async with self.settings["envmgr_relay"].subscribe() as queue:
            if not await self._send(": connected\n\n"):
                return
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
                except asyncio.TimeoutError:
                    text = ": keepalive\n\n"
                else:
                    if event is None:
                        break
                    record = event.get("environment") or {}
                    if namespace and (record.get("namespace") or event.get("namespace")) != namespace:
                        continue
                    if cluster and record and record.get("cluster") != cluster:
                        continue
                    text = f"data: {json.dumps(event)}\n\n"
                if not await self._send(text):
                    return
        self.finish()

    async def _send(self, text: str) -> bool:
        try:
            self.write(text)
            await asyncio.wait_for(self.flush(), 10.0)
            return True
        except (StreamClosedError, asyncio.TimeoutError):
            self.request.connection.close()
            return False


def forward_table(paths: list) -> list:
    """(path, handler) for every route of the writer's table: /info and /events are this server's own."""
    special = {"envmgr/api/info": ForwardInfoHandler, "envmgr/api/events": RelayEventsHandler}
    return [(path, special.get(path, ForwardHandler)) for path in paths]
