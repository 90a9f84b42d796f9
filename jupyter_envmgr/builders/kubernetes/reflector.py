"""Watch-backed caches of one kind of object (Jobs or pods) in one namespace of one cluster (`Reflector`), and
each cluster's set of them with its API client (`ClusterState`).

It lists before it watches, so nothing is missed; resumes a dropped watch from the last resourceVersion;
lists again on 410 Gone, and every c.EnvManagerApp.kubernetes_resync_seconds whatever happens, so an event
lost on the way is noticed instead of being waited for.
"""
from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from typing import Callable, Optional

from .client import KubeApi, abort, describe, iter_lines
from .config import Cluster
from .objects import SELECTOR, owner_job

log = logging.getLogger("jupyter_envmgr.kubernetes")


class Gone(Exception):
    """The watch's resourceVersion is too old (410): list again."""


class Reflector:
    """`on_change` is called (from the reflector's thread) after every change."""

    def __init__(self, api: KubeApi, kind: str, namespace: str, list_fn: Callable, on_change: Callable):
        self.api = api
        self.kind = kind
        self.namespace = namespace
        self.list_fn = list_fn
        self.on_change = on_change
        self.objects: dict = {}
        self.lock = threading.Lock()
        self.synced = threading.Event()
        self.resource_version: Optional[str] = None
        self.listed_at = 0.0
        self.stats = {"lists": 0, "watches": 0, "gone": 0, "errors": 0}
        self.last_error = ""
        self._stop = threading.Event()
        self._resp = None
        self.thread = threading.Thread(target=self._run, name=f"envmgr-watch-{kind}-{namespace}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        abort(self._resp)

    def get(self, name: str) -> Optional[dict]:
        with self.lock:
            return self.objects.get(name)

    def values(self) -> list:
        with self.lock:
            return list(self.objects.values())

    def put(self, obj: dict) -> None:
        """Seed the cache with an object the server just created (its watch event follows)."""
        with self.lock:
            self.objects.setdefault(obj["metadata"]["name"], obj)

    def _due(self) -> bool:
        return time.monotonic() - self.listed_at >= self.api.config.kubernetes_resync_seconds

    def _run(self) -> None:
        need_list = True
        failures = 0
        while not self._stop.is_set():
            try:
                if need_list or self._due():
                    self._list()
                    need_list = False
                self._watch()
                failures = 0
            except Gone:
                self.stats["gone"] += 1
                need_list = True
                log.info("watch of %s in %s: resourceVersion too old (410 Gone); listing again", self.kind, self.namespace)
            except Exception as e:
                if self._stop.is_set():
                    return
                failures += 1
                self.stats["errors"] += 1
                self.last_error = describe(e)
                delay = min(30.0, self.api.config.kubernetes_api_retry_backoff * (2 ** min(failures - 1, 6)))
                level = logging.INFO if failures == 1 else logging.WARNING
                log.log(level, "watch of %s in %s interrupted (%s); resuming in %.1fs", self.kind, self.namespace, self.last_error, delay)
                if getattr(e, "status", None) == 410:
                    need_list = True
                self._stop.wait(delay)

    def _list(self) -> None:
        data = self.api.call(f"list {self.kind} in {self.namespace}", self.list_fn, self.namespace, label_selector=SELECTOR)
        self.stats["lists"] += 1
        with self.lock:
            self.objects = {o["metadata"]["name"]: o for o in data.get("items") or []}
            self.resource_version = (data.get("metadata") or {}).get("resourceVersion")
        self.listed_at = time.monotonic()
        self.synced.set()
        self.on_change()

    def _watch(self) -> None:
        self.stats["watches"] += 1
        config = self.api.config
        # A watch ends by itself no later than the next re-list is due.
        remaining = config.kubernetes_resync_seconds - (time.monotonic() - self.listed_at)
        timeout = max(1, int(min(config.kubernetes_watch_timeout, remaining)))
        resp = self.list_fn(
            self.namespace, label_selector=SELECTOR, watch=True, resource_version=self.resource_version,
            timeout_seconds=timeout, allow_watch_bookmarks=True, _preload_content=False,
            _request_timeout=(config.kubernetes_api_timeout, timeout + config.kubernetes_api_timeout),
        )
        self._resp = resp
        try:
            if self._stop.is_set():
                return
            for line in iter_lines(resp):
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone()
                    raise RuntimeError(f"watch error {obj.get('code')}: {obj.get('message')}")
                rv = (obj.get("metadata") or {}).get("resourceVersion")
                if kind != "BOOKMARK":
                    name = obj["metadata"]["name"]
                    with self.lock:
                        if kind == "DELETED":
                            self.objects.pop(name, None)
                        else:
                            self.objects[name] = obj
                if rv:
                    self.resource_version = rv
                if kind != "BOOKMARK":
                    self.on_change()
        finally:
            self._resp = None
            resp.release_conn()


class Signal:
    """Wakes the event loop's waiters from watch threads: `changed` is set, then replaced, on every change."""

    def __init__(self):
        self.changed = asyncio.Event()
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    def bind(self) -> None:
        """Called on the loop before the first watch starts."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()

    def wake(self) -> None:
        """Called from watch threads."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._notify)

    def _notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class ClusterState:
    """One cluster's API client (made on first use) and its reflectors, by namespace; every change wakes `signal`."""

    def __init__(self, config, cluster: Cluster, signal: Signal):
        self.config = config
        self.cluster = cluster
        self.signal = signal
        self._api: Optional[KubeApi] = None
        self.jobs: dict = {}
        self.pods: dict = {}

    @property
    def api(self) -> KubeApi:
        if self._api is None:
            self._api = KubeApi(self.config, self.cluster)
        return self._api

    @property
    def changed(self) -> asyncio.Event:
        return self.signal.changed

    def watching(self, namespace: str) -> Reflector:
        self.signal.bind()
        if namespace not in self.jobs:
            api = self.api
            self.jobs[namespace] = Reflector(api, "jobs", namespace, api.batch.list_namespaced_job, self.signal.wake)
            self.pods[namespace] = Reflector(api, "pods", namespace, api.core.list_namespaced_pod, self.signal.wake)
            self.jobs[namespace].start()
            self.pods[namespace].start()
        return self.jobs[namespace]

    async def synced(self, namespace: str, timeout: Optional[float] = None) -> bool:
        """Wait (bounded) until the namespace's Jobs and pods have been listed once."""
        jobs = self.watching(namespace)
        deadline = time.monotonic() + (self.api.patience() if timeout is None else timeout)
        while True:
            changed = self.changed
            if jobs.synced.is_set() and self.pods[namespace].synced.is_set():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    def job(self, namespace: str, name: str) -> Optional[dict]:
        reflector = self.jobs.get(namespace)
        return reflector.get(name) if reflector else None

    def pod(self, namespace: str, name: str) -> Optional[dict]:
        reflector = self.pods.get(namespace)
        return reflector.get(name) if reflector else None

    def pod_of(self, namespace: str, job: str) -> Optional[dict]:
        """The newest pod of a Job."""
        reflector = self.pods.get(namespace)
        pods = [p for p in (reflector.values() if reflector else []) if owner_job(p) == job]
        return max(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "", default=None)

    async def stop(self) -> None:
        for reflector in list(self.jobs.values()) + list(self.pods.values()):
            reflector.stop()
        self.jobs.clear()
        self.pods.clear()
        if self._api is not None:
            await asyncio.to_thread(self._api.close)
            self._api = None
