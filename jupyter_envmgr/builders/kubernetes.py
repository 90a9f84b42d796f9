"""Kubernetes builds: the same runner and plan as a local build, run by a batch/v1 Job on the shared volume.

How a build goes:
- `start` copies `runner.py` onto the volume (`<root>/.envmgr/runner-<sha>.py`, content-addressed), points
  the plan's log at stdout, and creates a Job (manifest from `k8s_objects`, pure) whose container runs
  `python <runner> <plan>` with the volume mounted at the root's own path, so every path in the plan holds.
- One watch per namespace on Jobs and one on their pods (label `app.kubernetes.io/managed-by=jupyter-envmgr`),
  each a list followed by a watch from the list's resourceVersion, resumed from the last seen version when a
  connection drops and re-listed on `410 Gone`. No polling loops: waiters wake up on watch events.
- The pod log is followed into the revision's log file (the manager reads progress from it, as for local builds).
- The result is the runner's `result.json` on the volume, or, when the runner could not write one, what the
  Job's conditions and the pod's container state say (deadline exceeded, OOMKilled, image not found...).
- `cancel` deletes the Job with propagationPolicy Foreground and waits (bounded) until it and its pod are gone.
- After a restart `prepare` lists the Jobs; `is_running` is True for a Job that still exists, and `wait`
  re-attaches to it, running or ended; a record whose Job is gone is finished by the manager from result.json.

Every API call has a time-out and is retried with exponential backoff on connection errors, time-outs, 429 and
5xx; when the retries run out the caller gets EnvmgrError(503, "unavailable").
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from traitlets import Dict, Float, HasTraits, Int, List, Unicode

from .. import runner as runner_module
from ..errors import EnvmgrError
from ..store import atomic_write
from . import k8s_objects as objects
from .base import Build, Builder, clear_result

log = logging.getLogger("jupyter_envmgr.kubernetes")

RETRY_STATUSES = {0, 429, 500, 502, 503, 504}
SERVICEACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


class Gone(Exception):
    """The watch's resourceVersion is too old (410): list again."""


# ---------------------------------------------------------------- configuration (c.EnvManagerApp.kubernetes_*)


class KubernetesConfig(HasTraits):
    """The Kubernetes backend's settings; mixed into EnvManagerApp, so they are `c.EnvManagerApp.kubernetes_*`."""

    kubernetes_context = Unicode(
        "", config=True,
        help="""The kubeconfig context (the cluster and user) builds are submitted with. Empty: the in-cluster
        service account when the server runs in a pod, else the kubeconfig's current context.""",
    )
    kubernetes_config_file = Unicode(
        "", config=True, help="The kubeconfig file to read contexts from. Empty: $KUBECONFIG, else ~/.kube/config.",
    )
    kubernetes_namespace_selector = Unicode(
        "", config=True,
        help="""When set (a label selector such as `envmgr.jupyter.org/enabled=true`), the namespaces offered are
        listed from the API at start instead of taken from c.EnvManagerApp.namespaces (needs `list` on
        namespaces, a ClusterRole). An environment's namespace is the Kubernetes namespace its Jobs run in.""",
    )
    kubernetes_pvc_name = Unicode(
        "jupyter-envmgr", config=True,
        help="""The ReadWriteMany PersistentVolumeClaim that holds the root (c.EnvManagerApp.root_dir). It is
        mounted into every build Job at root_dir, which must be where notebook pods mount it too, because
        environments refer to their interpreters by absolute path. Each namespace offered needs a claim of this
        name on the same storage. A claim that is not ReadWriteMany or not Bound is refused with 422.""",
    )
    kubernetes_image = Unicode(
        objects.DEFAULT_IMAGE, config=True,
        help=f"""The image of build Jobs. It needs `python` (any 3.x; it runs only the standard-library build
        runner) and `uv` on its PATH. Default: {objects.DEFAULT_IMAGE} (Debian slim with Python 3.12 and uv).""",
    )
    kubernetes_image_pull_policy = Unicode("IfNotPresent", config=True, help="imagePullPolicy of the build container.")
    kubernetes_image_pull_secrets = List(Unicode(), config=True, help="Names of Secrets used to pull the build image.")
    kubernetes_python = Unicode("python", config=True, help="The interpreter in the build image that runs the build runner.")
    kubernetes_uv = Unicode("uv", config=True, help="The uv executable in the build image.")
    kubernetes_python_interpreters = Dict(
        config=True,
        help="""Base interpreters for environments, {"3.12.3": "/path/python3.12"}, as paths that exist both in
        the build image and in every notebook pod (a Python on the shared volume, such as a conda prefix under
        the root). Empty (the default): uv installs the Pythons of kubernetes_python_versions under
        <root>/python on the volume the first time a build asks for them (the build pods need network access
        to uv's Python downloads).""",
    )
    kubernetes_python_versions = List(
        Unicode(), ["3.10", "3.11", "3.12", "3.13"], config=True,
        help="Python versions offered when kubernetes_python_interpreters is empty (installed by uv on the volume).",
    )
    kubernetes_requests = Dict(
        {"cpu": "500m", "memory": "1Gi"}, config=True, help="Resource requests of the build container.",
    )
    kubernetes_limits = Dict(
        {"cpu": "2", "memory": "4Gi"}, config=True,
        help="Resource limits of the build container; large wheels (torch) need a few GiB of memory to install.",
    )
    kubernetes_gpu_resource = Unicode(
        "nvidia.com/gpu", config=True,
        help="The extended resource requested, `gpu` times, by builds of environments with gpu > 0.",
    )
    kubernetes_node_selector = Dict(config=True, help="nodeSelector of every build pod.")
    kubernetes_tolerations = List(Dict(), config=True, help="Tolerations of every build pod.")
    kubernetes_gpu_node_selector = Dict(
        config=True, help="nodeSelector added for builds of environments with gpu > 0 (e.g. to preload CUDA wheels on GPU nodes).",
    )
    kubernetes_gpu_tolerations = List(
        Dict(), [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}], config=True,
        help="Tolerations added for builds of environments with gpu > 0 (GPU nodes are usually tainted).",
    )
    kubernetes_active_deadline_seconds = Int(
        0, config=True,
        help="""activeDeadlineSeconds of build Jobs: Kubernetes stops the Job after this long, whatever happens to
        the server. 0 (the default): build_timeout + kubernetes_start_timeout.""",
    )
    kubernetes_ttl_seconds_after_finished = Int(
        3600, config=True,
        help="""ttlSecondsAfterFinished of build Jobs: ended Jobs and their pods are removed after this long. The
        server needs an ended Job only until it has read its result, so an hour is plenty; -1 keeps them.""",
    )
    kubernetes_run_as_user = Int(
        1000, config=True,
        help="""UID of build pods. Use the UID of notebook pods (1000 in Zero to JupyterHub) so that both may
        write the environments. Must not be 0: builds run under the `restricted` Pod Security Standard.""",
    )
    kubernetes_run_as_group = Int(100, config=True, help="GID of build pods (the notebook pods' GID; 100 in Zero to JupyterHub).")
    kubernetes_fs_group = Int(
        -1, config=True, help="fsGroup of build pods (-1, the default: none; NFS and most RWX volumes ignore it).",
    )
    kubernetes_service_account = Unicode(
        "", config=True, help="serviceAccountName of build pods (its token is never mounted). Empty: the namespace's default.",
    )
    kubernetes_priority_class_name = Unicode("", config=True, help="priorityClassName of build pods.")
    kubernetes_extra_labels = Dict(config=True, help="Labels added to build Jobs and pods.")
    kubernetes_extra_annotations = Dict(config=True, help="Annotations added to build Jobs and pods.")
    kubernetes_extra_env = Dict(
        config=True, help="Environment variables of the build container (e.g. proxies); the build plan's own env comes on top.",
    )
    kubernetes_start_timeout = Float(
        600.0, config=True,
        help="""Seconds a build pod may take to start (scheduling, image pull) before the build fails with the
        reason Kubernetes gives (e.g. insufficient nvidia.com/gpu, ImagePullBackOff) and its Job is deleted.""",
    )
    kubernetes_api_timeout = Float(10.0, config=True, help="Seconds one Kubernetes API request may take before it counts as failed.")
    kubernetes_api_retries = Int(
        4, config=True,
        help="""How often a failed API request (connection error, time-out, 429, 5xx) is retried, with exponential
        backoff from kubernetes_api_retry_backoff seconds, before the request fails with 503.""",
    )
    kubernetes_api_retry_backoff = Float(0.5, config=True, help="Seconds before the first retry of a failed API request; doubles each time (at most 10 s).")
    kubernetes_watch_timeout = Int(
        300, config=True,
        help="timeoutSeconds of each watch request; the watch then resumes from the last resourceVersion seen.",
    )


@dataclass
class KubeSettings:
    root: str
    job: objects.JobOptions
    namespaces: list = field(default_factory=lambda: ["default"])
    context: str = ""
    config_file: str = ""
    namespace_selector: str = ""
    uv: str = "uv"
    uv_cache_dir: str = ""
    python_interpreters: dict = field(default_factory=dict)
    python_versions: list = field(default_factory=list)
    start_timeout: float = 600.0
    api_timeout: float = 10.0
    api_retries: int = 4
    api_retry_backoff: float = 0.5
    watch_timeout: int = 300
    cancel_timeout: float = 60.0
    result_grace: float = 30.0  # how long a completed Job's result.json may take to show on this node (NFS caches)


def settings_from_app(app) -> KubeSettings:
    """KubeSettings from the traits of an EnvManagerApp (the app or `jupyter envmgr render-job`)."""
    root = os.path.abspath(os.path.expanduser(app.root_dir))
    deadline = app.kubernetes_active_deadline_seconds or int(app.build_timeout + app.kubernetes_start_timeout)
    job = objects.JobOptions(
        pvc_name=app.kubernetes_pvc_name,
        mount_path=root,
        image=app.kubernetes_image,
        image_pull_policy=app.kubernetes_image_pull_policy,
        image_pull_secrets=list(app.kubernetes_image_pull_secrets),
        python=app.kubernetes_python,
        requests=dict(app.kubernetes_requests),
        limits=dict(app.kubernetes_limits),
        gpu_resource=app.kubernetes_gpu_resource,
        node_selector=dict(app.kubernetes_node_selector),
        tolerations=list(app.kubernetes_tolerations),
        gpu_node_selector=dict(app.kubernetes_gpu_node_selector),
        gpu_tolerations=list(app.kubernetes_gpu_tolerations),
        active_deadline_seconds=deadline,
        ttl_seconds_after_finished=None if app.kubernetes_ttl_seconds_after_finished < 0 else app.kubernetes_ttl_seconds_after_finished,
        run_as_user=app.kubernetes_run_as_user,
        run_as_group=app.kubernetes_run_as_group,
        fs_group=None if app.kubernetes_fs_group < 0 else app.kubernetes_fs_group,
        service_account=app.kubernetes_service_account,
        priority_class_name=app.kubernetes_priority_class_name,
        extra_labels=dict(app.kubernetes_extra_labels),
        extra_annotations=dict(app.kubernetes_extra_annotations),
        extra_env=dict(app.kubernetes_extra_env),
    )
    if job.run_as_user == 0:
        raise ValueError("c.EnvManagerApp.kubernetes_run_as_user must not be 0: build pods run as non-root")
    uv_cache = app.uv_cache_dir or os.path.join(root, "cache", "uv")
    return KubeSettings(
        root=root,
        job=job,
        namespaces=list(app.namespaces),
        context=app.kubernetes_context,
        config_file=app.kubernetes_config_file,
        namespace_selector=app.kubernetes_namespace_selector,
        uv=app.kubernetes_uv,
        uv_cache_dir=uv_cache,
        python_interpreters=dict(app.kubernetes_python_interpreters),
        python_versions=list(app.kubernetes_python_versions),
        start_timeout=app.kubernetes_start_timeout,
        api_timeout=app.kubernetes_api_timeout,
        api_retries=app.kubernetes_api_retries,
        api_retry_backoff=app.kubernetes_api_retry_backoff,
        watch_timeout=app.kubernetes_watch_timeout,
    )


def in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.exists(SERVICEACCOUNT_NAMESPACE)


def own_namespace() -> Optional[str]:
    try:
        with open(SERVICEACCOUNT_NAMESPACE) as f:
            return f.read().strip() or None
    except OSError:
        return None


# ---------------------------------------------------------------- the API, bounded and retried


def describe(error: BaseException) -> str:
    status = getattr(error, "status", None)
    if status is not None and hasattr(error, "reason"):
        body = getattr(error, "body", None)
        detail = ""
        if body:
            try:
                detail = json.loads(body).get("message", "")
            except (ValueError, AttributeError):
                detail = str(body)[:200]
        return f"HTTP {status} {error.reason}" + (f": {detail}" if detail else "")
    text = str(error).strip()
    return f"{type(error).__name__}" + (f": {text[:300]}" if text else "")


class KubeApi:
    """One API client (kubeconfig context or in-cluster), and `call`: one request, bounded, retried."""

    def __init__(self, settings: KubeSettings):
        from kubernetes import client, config

        self.settings = settings
        cfg = client.Configuration()
        try:
            if not settings.context and in_cluster():
                config.load_incluster_config(client_configuration=cfg)
                self.context = "in-cluster"
            else:
                config.load_kube_config(config_file=settings.config_file or None, context=settings.context or None,
                                        client_configuration=cfg, persist_config=False)
                self.context = settings.context or "current-context"
        except Exception as e:  # no kubeconfig, unknown context, bad file
            raise EnvmgrError(503, "unavailable", f"the Kubernetes configuration could not be loaded ({describe(e)}); "
                              "set c.EnvManagerApp.kubernetes_context / kubernetes_config_file, or run in a pod") from None
        cfg.retries = False  # our own bounded retries are the only ones
        self.host = cfg.host
        self.client = client.ApiClient(cfg)
        self.core = client.CoreV1Api(self.client)
        self.batch = client.BatchV1Api(self.client)

    @property
    def timeout(self) -> tuple:
        t = self.settings.api_timeout
        return (t, t)

    def delays(self):
        for attempt in range(self.settings.api_retries):
            yield min(10.0, self.settings.api_retry_backoff * (2 ** attempt))

    @staticmethod
    def transient(error: BaseException) -> bool:
        import urllib3
        from kubernetes.client.exceptions import ApiException

        if isinstance(error, ApiException):
            return error.status in RETRY_STATUSES
        return isinstance(error, (urllib3.exceptions.HTTPError, OSError, TimeoutError))

    def once(self, fn: Callable, *args, **kwargs):
        resp = fn(*args, _preload_content=False, _request_timeout=self.timeout, **kwargs)
        try:
            data = resp.data
        finally:
            resp.release_conn()
        return json.loads(data) if data else {}

    def unavailable(self, what: str, error: BaseException) -> EnvmgrError:
        return EnvmgrError(
            503, "unavailable",
            f"the Kubernetes API at {self.host} did not answer ({what}) after {self.settings.api_retries + 1} "
            f"attempts: {describe(error)}; check the cluster and c.EnvManagerApp.kubernetes_context",
        )

    def call(self, what: str, fn: Callable, *args, **kwargs):
        """Blocking: for start-up and threads. Non-transient API errors (404, 409, 403...) are raised as they are."""
        delays = self.delays()
        while True:
            try:
                return self.once(fn, *args, **kwargs)
            except Exception as e:
                time.sleep(self.retry_delay(what, e, delays))

    async def acall(self, what: str, fn: Callable, *args, **kwargs):
        delays = self.delays()
        while True:
            try:
                return await asyncio.to_thread(self.once, fn, *args, **kwargs)
            except Exception as e:
                await asyncio.sleep(self.retry_delay(what, e, delays))

    def retry_delay(self, what: str, error: Exception, delays) -> float:
        """How long to wait before retrying after `error`; raises it (or 503) when it is not worth a retry."""
        if not self.transient(error):
            raise error
        delay = next(delays, None)
        if delay is None:
            raise self.unavailable(what, error) from None
        log.warning("kubernetes API %s failed (%s); retrying in %.1fs", what, describe(error), delay)
        return delay

    def close(self) -> None:
        self.client.close()


def iter_lines(resp):
    """Lines of a streamed (chunked) response as they arrive."""
    buf = b""
    for chunk in resp.stream(amt=None, decode_content=False):
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            yield line
    if buf:
        yield buf


def abort(resp) -> None:
    """Unblock a thread reading `resp` and drop its connection."""
    if resp is None:
        return
    for method in ("shutdown", "close"):
        try:
            getattr(resp, method)()
        except Exception:
            pass


# ---------------------------------------------------------------- watch-backed caches


class Reflector:
    """A cache of one kind of object (Jobs or pods) of one namespace, kept by list-then-watch in a thread.

    It lists before it watches, so nothing is missed; resumes a dropped watch from the last resourceVersion;
    lists again on 410 Gone. `on_change` is called (from the thread) after every change.
    """

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

    def forget(self, name: str) -> None:
        with self.lock:
            self.objects.pop(name, None)

    def _run(self) -> None:
        need_list = True
        failures = 0
        while not self._stop.is_set():
            try:
                if need_list:
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
                delay = min(30.0, self.api.settings.api_retry_backoff * (2 ** min(failures - 1, 6)))
                level = logging.INFO if failures == 1 else logging.WARNING
                log.log(level, "watch of %s in %s interrupted (%s); resuming in %.1fs", self.kind, self.namespace, self.last_error, delay)
                if getattr(e, "status", None) == 410:
                    need_list = True
                self._stop.wait(delay)

    def _list(self) -> None:
        data = self.api.call(f"list {self.kind} in {self.namespace}", self.list_fn, self.namespace, label_selector=objects.SELECTOR)
        self.stats["lists"] += 1
        with self.lock:
            self.objects = {o["metadata"]["name"]: o for o in data.get("items") or []}
            self.resource_version = (data.get("metadata") or {}).get("resourceVersion")
        self.synced.set()
        self.on_change()

    def _watch(self) -> None:
        self.stats["watches"] += 1
        timeout = self.api.settings.watch_timeout
        resp = self.list_fn(
            self.namespace, label_selector=objects.SELECTOR, watch=True, resource_version=self.resource_version,
            timeout_seconds=timeout, allow_watch_bookmarks=True, _preload_content=False,
            _request_timeout=(self.api.settings.api_timeout, timeout + self.api.settings.api_timeout),
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


# ---------------------------------------------------------------- the pod log, into the revision's log file


def count_lines(path: str) -> int:
    try:
        with open(path, "rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 16), b""))
    except FileNotFoundError:
        return 0


class LogFollower:
    """Copies the build container's log into `path`, line by line, across dropped connections and restarts.

    The file holds exactly the pod log's complete lines, so after a reconnection (or a server restart) the
    lines already in the file are skipped. Once the container has ended, a last plain read makes it complete.
    """

    def __init__(self, builder: "KubernetesBuilder", namespace: str, job: str, path: str):
        self.builder = builder
        self.namespace = namespace
        self.job = job
        self.path = path
        self.written = count_lines(path)
        self.pod: Optional[str] = None
        self._stop = threading.Event()
        self._resp = None
        self.task = asyncio.ensure_future(self._run())

    def stop(self) -> None:
        self._stop.set()
        abort(self._resp)
        self.task.cancel()

    async def finish(self, timeout: float) -> None:
        """Let the follower reach the end of the log (bounded), then stop it."""
        try:
            await asyncio.wait_for(asyncio.shield(self.task), timeout)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("following the log of %s failed", self.job)
        self.stop()

    async def _run(self) -> None:
        b = self.builder
        while True:  # until the build container has started (or the Job is gone)
            changed = b.changed
            pod = b.pod_of(self.namespace, self.job)
            if pod is not None and objects.container_started(pod):
                break
            job = b.job(self.namespace, self.job)
            if job is None or objects.job_state(job) != "running":
                if pod is None:
                    return
                if not objects.container_started(pod):
                    return
            await changed.wait()
        self.pod = pod["metadata"]["name"]
        # A thread of its own, not the loop's executor: a build may stream its log for an hour.
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def target():
            try:
                self._follow()
            except Exception:
                log.exception("following the log of pod %s failed", self.pod)
            finally:
                loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))

        threading.Thread(target=target, name=f"envmgr-log-{self.pod}", daemon=True).start()
        await done

    def _append(self, out, lines: list, seen: int) -> int:
        for line in lines:
            seen += 1
            if seen > self.written:
                out.write(line + b"\n")
                self.written += 1
        out.flush()
        return seen

    def _read(self, follow: bool) -> bool:
        """Stream the log once; True when it ran to its end without a connection problem."""
        api = self.builder.api
        resp = api.core.read_namespaced_pod_log(
            self.pod, self.namespace, container=objects.CONTAINER, follow=follow, _preload_content=False,
            _request_timeout=(api.settings.api_timeout, max(api.settings.watch_timeout, 60)),
        )
        self._resp = resp
        seen, buf = 0, b""
        try:
            with open(self.path, "ab") as out:
                for chunk in resp.stream(amt=None, decode_content=False):
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    seen = self._append(out, lines, seen)
                    if self._stop.is_set():
                        return False
                if not follow and buf:  # the very end of a finished log may lack its newline
                    self._append(out, [buf], seen)
        finally:
            self._resp = None
            resp.release_conn()
        return True

    def _follow(self) -> None:
        """Copy the log, holding an exclusive lock on the log file: when several servers of one root follow
        the same build (each re-attached after a restart), one copies and the others wait to take over."""
        import fcntl

        with open(self.path, "ab") as lock:
            while True:
                try:
                    fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError:
                    if self._stop.wait(2.0):
                        return
            self.written = count_lines(self.path)  # what another copier wrote meanwhile
            self._copy()

    def _copy(self) -> None:
        from kubernetes.client.exceptions import ApiException

        failures = 0
        while not self._stop.is_set():
            pod = self.builder.pod(self.namespace, self.pod)
            ended = pod is None or objects.container_terminated(pod) is not None
            try:
                self._read(follow=not ended)
                if ended:
                    return
                failures = 0
            except ApiException as e:
                if e.status == 404:  # the pod is gone: nothing more to read
                    return
                failures += 1
            except Exception as e:  # a dropped or timed-out stream: read again, skipping what we have
                if self._stop.is_set():
                    return
                failures += 1
                log.info("log stream of %s interrupted (%s); resuming", self.pod, describe(e))
            self._stop.wait(min(5.0, 0.2 * (2 ** min(failures, 5))))


# ---------------------------------------------------------------- the builder


class KubernetesBuilder(Builder):
    kind = "kubernetes"

    def __init__(self, settings: KubeSettings):
        self.settings = settings
        self._api: Optional[KubeApi] = None
        self._jobs: dict = {}  # namespace -> Reflector of Jobs
        self._pods: dict = {}  # namespace -> Reflector of pods
        self._followers: dict = {}  # build key -> LogFollower
        self._cancelled: set = set()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self.changed = asyncio.Event()

    # ------------------------------------------------------------ configuration

    @property
    def api(self) -> KubeApi:
        if self._api is None:
            self._api = KubeApi(self.settings)
        return self._api

    @property
    def cluster(self) -> str:
        return self.api.host

    def interpreters(self) -> dict:
        """{version: interpreter as the build pod sees it}; uv-managed versions map to themselves."""
        if self.settings.python_interpreters:
            return dict(self.settings.python_interpreters)
        return {v: v for v in self.settings.python_versions}

    def toolchain(self):
        from .. import pythons
        from ..recipes import Toolchain

        found = self.interpreters()
        extra = {}
        if not self.settings.python_interpreters:
            # Base interpreters must be on the volume: uv installs them under <root>/python, never the image's.
            extra = {"UV_PYTHON_DOWNLOADS": "automatic", "UV_PYTHON_PREFERENCE": "only-managed"}
        return Toolchain(
            uv=self.settings.uv,
            python_for=lambda v: pythons.pick(found, v),
            uv_cache_dir=self.settings.uv_cache_dir,
            python_install_dir=os.path.join(self.settings.root, "python"),
            extra_env=extra,
        )

    def namespaces(self) -> list:
        """The namespaces offered: listed by label selector when configured, else the configured ones."""
        if not self.settings.namespace_selector:
            return list(self.settings.namespaces)
        try:
            data = self.api.call("list namespaces", self.api.core.list_namespace, label_selector=self.settings.namespace_selector)
        except Exception as e:
            log.warning("could not list namespaces (%s); using c.EnvManagerApp.namespaces", describe(e))
            return list(self.settings.namespaces)
        names = sorted(n["metadata"]["name"] for n in data.get("items") or [])
        if names:
            self.settings.namespaces = names
        return list(self.settings.namespaces)

    def storages(self) -> list:
        return [{"name": self.settings.job.pvc_name, "path": self.settings.root, "access_mode": "ReadWriteMany"}]

    def info(self) -> dict:
        return {"cluster": self._api.host if self._api else None, "pvc": self.settings.job.pvc_name,
                "image": self.settings.job.image}

    # ------------------------------------------------------------ watches

    def _on_change(self) -> None:
        """Called from watch threads: wake every waiter on the event loop."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._notify)

    def _notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    def _watching(self, namespace: str) -> Reflector:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        if namespace not in self._jobs:
            api = self.api
            self._jobs[namespace] = Reflector(api, "jobs", namespace, api.batch.list_namespaced_job, self._on_change)
            self._pods[namespace] = Reflector(api, "pods", namespace, api.core.list_namespaced_pod, self._on_change)
            self._jobs[namespace].start()
            self._pods[namespace].start()
        return self._jobs[namespace]

    async def _synced(self, namespace: str, timeout: Optional[float] = None) -> bool:
        """Wait (bounded) until the namespace's Jobs have been listed once."""
        reflector = self._watching(namespace)
        deadline = time.monotonic() + (self._patience() if timeout is None else timeout)
        while True:
            changed = self.changed
            if reflector.synced.is_set() and namespace in self._pods and self._pods[namespace].synced.is_set():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    def _patience(self) -> float:
        """How long all attempts of one API call may take."""
        s = self.settings
        return (s.api_retries + 1) * 2 * s.api_timeout + sum(min(10.0, s.api_retry_backoff * 2 ** i) for i in range(s.api_retries))

    async def prepare(self) -> None:
        """At server start, before records are reconciled: list this server's Jobs in every namespace."""
        results = await asyncio.gather(*(self._synced(ns) for ns in self.settings.namespaces), return_exceptions=True)
        for ns, ok in zip(self.settings.namespaces, results):
            if ok is not True:
                log.warning("the Jobs of namespace %s could not be listed yet; builds there are re-attached when they are", ns)

    def job(self, namespace: str, name: str) -> Optional[dict]:
        reflector = self._jobs.get(namespace)
        return reflector.get(name) if reflector else None

    def pod(self, namespace: str, name: str) -> Optional[dict]:
        reflector = self._pods.get(namespace)
        return reflector.get(name) if reflector else None

    def pod_of(self, namespace: str, job: str) -> Optional[dict]:
        """The newest pod of a Job."""
        reflector = self._pods.get(namespace)
        pods = [p for p in (reflector.values() if reflector else []) if objects.owner_job(p) == job]
        return max(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "", default=None)

    # ------------------------------------------------------------ storage

    async def check_storage(self, namespace: Optional[str] = None) -> None:
        from kubernetes.client.exceptions import ApiException

        api = self.api
        pvc = self.settings.job.pvc_name
        for ns in [namespace] if namespace else self.settings.namespaces:
            try:
                claim = await api.acall(f"get PersistentVolumeClaim {pvc} in {ns}",
                                        api.core.read_namespaced_persistent_volume_claim, pvc, ns)
            except ApiException as e:
                if e.status == 404:
                    raise EnvmgrError(422, "invalid_field", f"storage: there is no PersistentVolumeClaim {pvc!r} in namespace {ns!r}; "
                                      "create it (deploy/pvc.yaml) or set c.EnvManagerApp.kubernetes_pvc_name") from None
                if e.status in (401, 403):
                    raise EnvmgrError(503, "unavailable", f"the server may not read PersistentVolumeClaim {pvc!r} in namespace {ns!r} "
                                      f"({describe(e)}); grant the Role of deploy/rbac.yaml") from None
                raise EnvmgrError(503, "unavailable", f"reading PersistentVolumeClaim {pvc!r} in {ns!r} failed: {describe(e)}") from None
            problem = objects.pvc_problem(claim, ns)
            if problem:
                raise EnvmgrError(422, "invalid_field", problem)

    # ------------------------------------------------------------ builds

    def runner_path(self) -> str:
        with open(runner_module.__file__, "rb") as f:
            source = f.read()
        path = os.path.join(self.settings.root, ".envmgr", objects.runner_file_name(source))
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            atomic_write(path, source, mode=0o644)
        return path

    def manifest(self, build: Build, name: str) -> dict:
        return objects.job_manifest(
            self.settings.job, namespace=build.namespace, env_name=build.name, revision=build.revision, name=name,
            plan_path=build.paths.plan, runner_path=self.runner_path(), gpu=int(build.spec.gpu or 0),
        )

    @staticmethod
    def plan_to_stdout(build: Build) -> None:
        """The Job's runner writes its log to stdout (the pod log); the server copies it into paths.log."""
        with open(build.paths.plan) as f:
            plan = json.load(f)
        if plan.get("log") is not None:
            plan["log"] = None
            atomic_write(build.paths.plan, json.dumps(plan, indent=2), mode=0o600)

    def _adoptable(self, build: Build) -> Optional[dict]:
        """A running Job of this very revision, left by a server that stopped before it saved the handle."""
        reflector = self._jobs.get(build.namespace)
        for job in reflector.values() if reflector else []:
            meta = job["metadata"]
            lab = meta.get("labels") or {}
            if (lab.get(objects.LABEL_NAME) == build.name and lab.get(objects.LABEL_REVISION) == str(build.revision)
                    and (meta.get("annotations") or {}).get(objects.ANNOTATION_PLAN) == build.paths.plan
                    and not meta.get("deletionTimestamp") and objects.job_state(job) == "running"):
                return job
        return None

    def _handle(self, job: dict) -> dict:
        meta = job["metadata"]
        return {"kind": "kubernetes", "cluster": self.cluster, "namespace": meta["namespace"], "job": meta["name"],
                "uid": meta.get("uid")}

    async def start(self, build: Build) -> dict:
        from kubernetes.client import V1Job
        from kubernetes.client.exceptions import ApiException

        api = self.api
        await self._synced(build.namespace)
        job = self._adoptable(build)
        if job is None:
            clear_result(build)
            try:
                os.unlink(self._cancel_marker(build))
            except FileNotFoundError:
                pass
            self.plan_to_stdout(build)
            name = objects.job_name(build.name, build.revision, secrets.token_hex(3))
            manifest = self.manifest(build, name)
            try:
                job = await api.acall(f"create Job {name}", api.batch.create_namespaced_job, build.namespace, V1Job.from_dict(manifest))
            except ApiException as e:
                if e.status != 409:
                    raise EnvmgrError(503 if e.status in (401, 403) else 422, "job_refused",
                                      f"Kubernetes refused the build Job: {describe(e)}") from None
                # An earlier attempt of this very create went through before its answer was lost: it is ours.
                job = await api.acall(f"get Job {name}", api.batch.read_namespaced_job, name, build.namespace)
            self._jobs[build.namespace].put(job)
            log.info("created Job %s/%s for %s/%s revision %s", build.namespace, name, build.namespace, build.name, build.revision)
        else:
            log.info("adopted running Job %s for %s/%s revision %s", job["metadata"]["name"], build.namespace, build.name, build.revision)
        build.handle = self._handle(job)
        self._follow(build)
        return build.handle

    def _follow(self, build: Build) -> LogFollower:
        follower = self._followers.get(build.key)
        if follower is None or follower.job != build.handle["job"]:
            follower = LogFollower(self, build.handle["namespace"], build.handle["job"], build.paths.log)
            self._followers[build.key] = follower
        return follower

    async def wait(self, build: Build) -> dict:
        handle = build.handle or {}
        ns, name = handle.get("namespace", build.namespace), handle.get("job")
        await self._synced(ns, timeout=build.timeout + 60)  # the watch retries until the API answers
        follower = self._follow(build)
        try:
            state, job, message = await self._until_ended(build, ns, name)
            await follower.finish(timeout=self.settings.result_grace)
            return await self._result(build, state, job, message)
        finally:
            follower.stop()
            self._followers.pop(build.key, None)
            self._cancelled.discard(build.key)

    async def _until_ended(self, build: Build, ns: str, name: str) -> tuple:
        """(state, job, message) once the Job has a terminal condition, is gone, or its pod cannot start."""
        job = self.job(ns, name)
        created = _timestamp((job or {}).get("metadata", {}).get("creationTimestamp")) or time.time()
        start_deadline = created + self.settings.start_timeout
        while True:
            changed = self.changed
            job = self.job(ns, name)
            if job is None:
                if await self._gone(ns, name):
                    return "gone", None, ""
                continue
            state = objects.job_state(job)
            if state != "running":
                return state, job, ""
            pod = self.pod_of(ns, name)
            timeout = None
            if not (pod is not None and objects.container_started(pod)) and not job["metadata"].get("deletionTimestamp"):
                reason, detail = objects.pod_waiting(pod) if pod else ("", "")
                if reason in objects.FATAL_WAITING or time.time() > start_deadline:
                    if reason:
                        why = f"{reason}: {detail}" if detail else reason
                    elif pod is not None:
                        why = f"pod {pod['metadata']['name']} is {(pod.get('status') or {}).get('phase', 'Pending')}"
                    else:
                        why = "no pod was created (see `kubectl describe job`)"
                    await self._delete(ns, name)
                    if reason in objects.FATAL_WAITING:
                        return "stuck", job, f"the build pod cannot start: {why}"
                    return "stuck", job, (f"the build pod did not start within {self.settings.start_timeout:.0f}s "
                                          f"(c.EnvManagerApp.kubernetes_start_timeout): {why}")
                timeout = max(0.1, start_deadline - time.time())
            try:
                await asyncio.wait_for(changed.wait(), timeout)
            except asyncio.TimeoutError:
                pass

    async def _gone(self, ns: str, name: str) -> bool:
        """The cache has no such Job: confirm with a read (a new Job may not be in the cache yet)."""
        from kubernetes.client.exceptions import ApiException

        api = self.api
        try:
            job = await api.acall(f"get Job {name}", api.batch.read_namespaced_job, name, ns)
        except ApiException as e:
            if e.status == 404:
                return True
            raise EnvmgrError(503, "unavailable", f"reading Job {name} failed: {describe(e)}") from None
        except EnvmgrError:  # the API is away: wait for the watch to come back
            changed = self.changed
            try:
                await asyncio.wait_for(changed.wait(), self._patience())
            except asyncio.TimeoutError:
                pass
            return False
        self._jobs[ns].put(job)
        return False

    @staticmethod
    def _cancel_marker(build: Build) -> str:
        return os.path.join(build.paths.build_dir, "cancelled")

    async def _result(self, build: Build, state: str, job: Optional[dict], message: str) -> dict:
        if build.key in self._cancelled or os.path.exists(self._cancel_marker(build)):
            return {"status": "cancelled", "message": "cancelled"}
        result = self._read_result(build)
        if result is None and state == "complete":
            # The runner exited 0, so it wrote result.json: give this node's view of the volume time to see it.
            deadline = time.monotonic() + self.settings.result_grace
            while result is None and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                os.listdir(build.paths.build_dir)  # refresh the directory's cached entries (NFS)
                result = self._read_result(build)
        if result is not None:
            return result
        if state == "complete":
            message = (f"the build Job ended but left no result in {build.paths.build_dir}: is the volume mounted at "
                       f"{self.settings.root} in the Job as in this server (c.EnvManagerApp.root_dir)?")
        elif state == "failed":
            message = objects.job_failure_message(job)
            pod = self.pod_of(build.namespace, job["metadata"]["name"]) if job else None
            if pod is not None and objects.container_terminated(pod):
                message = f"{message}: {objects.pod_failure_message(pod)}"
        elif state == "gone":
            message = (f"the build Job {(build.handle or {}).get('job')} was deleted before it finished and left no "
                       "result; rebuild to try again")
        self._log_line(build, f"==> failed: {message}")
        return {"status": "failed", "message": message, "step": None, "exit_code": None}

    @staticmethod
    def _read_result(build: Build) -> Optional[dict]:
        try:
            with open(build.paths.result) as f:
                return json.load(f)
        except (FileNotFoundError, ValueError):
            return None

    @staticmethod
    def _log_line(build: Build, line: str) -> None:
        try:
            with open(build.paths.log, "a") as f:
                f.write(line + "\n")
        except OSError:
            pass

    async def _delete(self, ns: str, name: str) -> None:
        """Delete a Job and, in the foreground, its pods; a Job already gone is fine."""
        from kubernetes.client import V1DeleteOptions
        from kubernetes.client.exceptions import ApiException

        api = self.api
        try:
            await api.acall(f"delete Job {name}", api.batch.delete_namespaced_job, name, ns,
                            body=V1DeleteOptions(propagation_policy="Foreground"))
        except ApiException as e:
            if e.status != 404:
                raise EnvmgrError(503, "unavailable", f"deleting Job {name} failed: {describe(e)}") from None

    async def cancel(self, build: Build) -> None:
        handle = build.handle or {}
        if not handle.get("job"):
            return
        ns, name = handle["namespace"], handle["job"]
        self._cancelled.add(build.key)
        # On the shared root, so that any other server following this build reads it as cancelled too.
        try:
            atomic_write(self._cancel_marker(build), now_text())
        except OSError:
            pass
        await self._delete(ns, name)
        # Foreground deletion: the Job disappears once its pod has: wait for that (bounded).
        deadline = time.monotonic() + self.settings.cancel_timeout
        self._watching(ns)
        while time.monotonic() < deadline:
            changed = self.changed
            if self.job(ns, name) is None and self.pod_of(ns, name) is None:
                return
            try:
                await asyncio.wait_for(changed.wait(), max(0.1, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                break
        log.warning("Job %s/%s was deleted but is still terminating after %.0fs", ns, name, self.settings.cancel_timeout)

    def owns(self, handle: dict) -> bool:
        if handle.get("kind") != "kubernetes":
            return False
        try:
            return handle.get("cluster") == self.cluster
        except EnvmgrError:
            return False

    def is_running(self, build: Build) -> bool:
        """True while the Job exists (running, or ended with a status still to read) or cannot be looked up yet."""
        handle = build.handle or {}
        reflector = self._jobs.get(handle.get("namespace"))
        if reflector is None or not reflector.synced.is_set():
            return True  # not listed yet (the API is away): `wait` re-attaches when it answers
        return reflector.get(handle.get("job")) is not None

    async def stop(self) -> None:
        for follower in list(self._followers.values()):
            follower.stop()
        for reflector in list(self._jobs.values()) + list(self._pods.values()):
            reflector.stop()
        self._jobs.clear()
        self._pods.clear()
        if self._api is not None:
            await asyncio.to_thread(self._api.close)
            self._api = None


def now_text() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _timestamp(text: Optional[str]) -> Optional[float]:
    if not text:
        return None
    import datetime

    try:
        return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp()
    except ValueError:
        return None


# ---------------------------------------------------------------- jupyter envmgr render-job


def render_job_yaml(app, name: str, namespace: Optional[str] = None, revision: int = 1, gpu: int = 0) -> str:
    """The Job YAML a create of environment `name` would submit (nothing is submitted or written)."""
    from ..store import Store

    settings = settings_from_app(app)
    namespace = namespace or settings.namespaces[0]
    store = Store(settings.root)
    plan = os.path.join(store.build_dir(namespace, name, revision), "plan.json")
    with open(runner_module.__file__, "rb") as f:
        runner_path = os.path.join(settings.root, ".envmgr", objects.runner_file_name(f.read()))
    manifest = objects.job_manifest(
        settings.job, namespace=namespace, env_name=name, revision=revision,
        name=objects.job_name(name, revision, secrets.token_hex(3)), plan_path=plan, runner_path=runner_path, gpu=gpu,
    )
    return objects.to_yaml(manifest)


def builder_from_app(app) -> KubernetesBuilder:
    """The builder of `c.EnvManagerApp.backend = "kubernetes"`; also settles the namespaces the app offers.

    Namespaces: listed from the API when kubernetes_namespace_selector is set; else c.EnvManagerApp.namespaces
    when configured; else, in a pod, the pod's own namespace.
    """
    if "namespaces" not in app.config.get("EnvManagerApp", {}) and in_cluster() and own_namespace():
        app.namespaces = [own_namespace()]
    builder = KubernetesBuilder(settings_from_app(app))
    uid = os.getuid()
    if uid not in (0, app.kubernetes_run_as_user):
        log.warning("this server runs as UID %s but build pods as %s (c.EnvManagerApp.kubernetes_run_as_user): "
                    "they may not be able to read the build plans or write the environments", uid, app.kubernetes_run_as_user)
    namespaces = builder.namespaces()
    if namespaces != list(app.namespaces):
        app.namespaces = namespaces
    return builder


def app_from_config(config_file: Optional[str] = None):
    """An EnvManagerApp carrying the Jupyter server's configuration (jupyter_server_config.py/.json on the
    Jupyter config path, or `config_file`), without starting anything; for `jupyter envmgr render-job`."""
    from jupyter_core.application import JupyterApp
    from traitlets import Unicode as _Unicode

    from ..app import EnvManagerApp

    class ServerConfig(JupyterApp):
        name = "jupyter-server"
        config_file_name = _Unicode("jupyter_server_config")

    loader = ServerConfig()
    if config_file:
        loader.config_file = os.path.abspath(config_file)
    loader.load_config_file(suppress_errors=False)
    return EnvManagerApp(config=loader.config)
