"""Kubernetes builds: the same runner and plan as a local build, run by a batch/v1 Job on the shared volume.

How a build goes:
- `start` copies `runner.py` onto the volume (`<mount>/.envmgr/runner-<sha>.py`, content-addressed), points
  the plan's log at stdout, and creates a Job (manifest from `objects`, pure) in the build's cluster, whose
  container runs `python <runner> <plan>` with the cluster's claim mounted at its own path on this server, so
  every path in the plan holds.
- Per cluster and namespace, one reflector of Jobs and one of their pods (label
  `app.kubernetes.io/managed-by=jupyter-envmgr`). No polling loops: waiters wake up on watch events.
- The pod log is followed into the revision's log file (the manager reads progress from it, as for local builds).
- The result is the runner's `result.json` on the volume, or, when the runner could not write one, what the
  Job's conditions and the pod's container state say (deadline exceeded, OOMKilled, image not found...).
- `cancel` deletes the Job with propagationPolicy Foreground and waits (bounded) until it and its pod are gone.
- After a restart `prepare` lists the Jobs; `is_running` is True for a Job that still exists, and `wait`
  re-attaches to it, running or ended; a record whose Job is gone is finished by the manager from result.json.

A build goes to the cluster `build.cluster` names (the record's), else the first configured one.
"""
from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import logging
import os
import secrets
import time
from typing import Optional

from ... import runner as runner_module
from ...errors import EnvmgrError
from ...layout import namespace_roots
from ...store import atomic_write
from .. import base
from . import objects
from .client import KubeApi, describe
from .config import Cluster, active_deadline, clusters
from .logs import LogFollower
from .reflector import ClusterState, Signal

log = logging.getLogger("jupyter_envmgr.kubernetes")

#: How long a completed Job's result.json may take to show on this node (NFS attribute caches).
RESULT_GRACE = 30.0
#: How long a cancel waits for the Job and its pod to be gone.
CANCEL_TIMEOUT = 60.0


class KubernetesBuilder(base.Builder):
    """`config` is the object carrying the traits (EnvManagerApp): read where used, never copied."""

    kind = "kubernetes"

    def __init__(self, config):
        self.config = config
        self.signal = Signal()  # one for every cluster's watches: waiters check what they wait for
        self._clusters = {c.name: ClusterState(config, c, self.signal) for c in clusters(config)}
        self._followers: dict = {}  # build key -> LogFollower
        self._cancelled: set = set()

    @property
    def changed(self) -> asyncio.Event:
        """Set (and replaced) whenever a watched Job or pod changed; wait on it, then look again."""
        return self.signal.changed

    # ------------------------------------------------------------ configuration

    @property
    def default_cluster(self) -> str:
        return next(iter(self._clusters))

    def state(self, name: Optional[str] = None) -> ClusterState:
        """A cluster by name (the default one for None); 422 for a name that is not configured."""
        found = self._clusters.get(name or self.default_cluster)
        if found is None:
            raise EnvmgrError(422, "invalid_field", f"cluster: no cluster {name!r}; use one of "
                              f"{', '.join(self._clusters)} (GET /envmgr/api/info lists them)", field="cluster")
        return found

    def cluster(self, name: Optional[str] = None) -> Cluster:
        """The cluster a record names (None: the default); 422 naming the field for one not configured. Its
        `mount_path` is where its claim is mounted here: the root of its records, revisions and kernelspecs."""
        return self.state(name).cluster

    def _of(self, build: base.Build) -> ClusterState:
        return self.state((build.handle or {}).get("cluster") or getattr(build, "cluster", None))

    def clusters(self) -> list:
        """`/info` `clusters`: [{"name", "namespaces"}], the default first."""
        return [s.cluster.public() for s in self._clusters.values()]

    def interpreters(self) -> dict:
        """{version: interpreter as the build pod sees it}; uv-managed versions map to themselves."""
        if self.config.kubernetes_python_interpreters:
            return dict(self.config.kubernetes_python_interpreters)
        return {v: v for v in self.config.kubernetes_python_versions}

    def toolchain(self):
        """Executables and interpreters as the build pod sees them: the image's uv and python, never this
        server's (a build-side program such as the conda step runs on the image's interpreter)."""
        from ... import pythons
        from ...recipes import Toolchain

        found = self.interpreters()
        extra = {}
        if not self.config.kubernetes_python_interpreters:
            # Base interpreters must be on the volume: uv installs them under <root>/python, never the image's.
            extra = {"UV_PYTHON_DOWNLOADS": "automatic", "UV_PYTHON_PREFERENCE": "only-managed"}
        mount = self.state().cluster.mount_path
        return Toolchain(
            uv=self.config.kubernetes_uv,
            python_for=lambda v: pythons.pick(found, v),
            uv_cache_dir=self.config.uv_cache_dir,
            python_install_dir=os.path.join(mount, "python"),
            extra_env=extra,
            python=self.config.kubernetes_python,
            bytecode_cache_dir=os.path.join(mount, "cache", "bytecode"),
            bytecode_program=self.bytecode_program(mount),
        )

    def namespaces(self) -> list:
        """The default cluster's namespaces: listed by label selector when configured, else the configured ones."""
        state = self.state()
        configured = list(state.cluster.namespaces)
        selector = self.config.kubernetes_namespace_selector
        if not selector:
            return configured
        try:
            data = state.api.call("list namespaces", state.api.core.list_namespace, label_selector=selector)
        except Exception as e:
            log.warning("could not list namespaces (%s); using c.EnvManagerApp.namespaces", describe(e))
            return configured
        names = sorted(n["metadata"]["name"] for n in data.get("items") or [])
        if names:
            cluster = state.cluster
            state.cluster = Cluster(cluster.name, cluster.context, cluster.config_file, tuple(names),
                                    cluster.pvc_name, cluster.mount_path)
        return list(state.cluster.namespaces)

    def namespace_roots(self) -> dict:
        """{namespace: the mount path of its cluster's claim}, the default cluster's first (see layout.py)."""
        return namespace_roots({s.cluster.name: (s.cluster.mount_path, s.cluster.namespaces) for s in self._clusters.values()})

    def storages(self) -> list:
        return [{"name": s.cluster.pvc_name, "path": s.cluster.mount_path, "access_mode": "ReadWriteMany"}
                for s in self._clusters.values()]

    def info(self) -> dict:
        state = self.state()
        return {"cluster": state._api.host if state._api else None, "pvc": state.cluster.pvc_name,
                "image": self.config.kubernetes_image}

    # ------------------------------------------------------------ watches

    async def prepare(self) -> None:
        """At server start, before records are reconciled: list this server's Jobs in every cluster and namespace."""
        pairs = [(s, ns) for s in self._clusters.values() for ns in s.cluster.namespaces]
        results = await asyncio.gather(*(s.synced(ns) for s, ns in pairs), return_exceptions=True)
        for (s, ns), ok in zip(pairs, results):
            if ok is not True:
                log.warning("the Jobs of namespace %s in cluster %s could not be listed yet; builds there are "
                            "re-attached when they are", ns, s.cluster.name)

    # ------------------------------------------------------------ storage

    async def check_storage(self, namespace: Optional[str] = None, cluster: Optional[str] = None) -> None:
        from kubernetes.client.exceptions import ApiException

        state = self.state(cluster)
        api = state.api
        pvc = state.cluster.pvc_name
        for ns in [namespace] if namespace else state.cluster.namespaces:
            try:
                claim = await api.acall(f"get PersistentVolumeClaim {pvc} in {ns}",
                                        api.core.read_namespaced_persistent_volume_claim, pvc, ns)
            except ApiException as e:
                if e.status == 404:
                    raise EnvmgrError(422, "invalid_field", f"storage: there is no PersistentVolumeClaim {pvc!r} in "
                                      f"namespace {ns!r} of cluster {state.cluster.name!r}; create it (deploy/pvc.yaml) "
                                      "or set the cluster's pvc_name (c.EnvManagerApp.kubernetes_pvc_name)") from None
                if e.status in (401, 403):
                    raise EnvmgrError(503, "unavailable", f"the server may not read PersistentVolumeClaim {pvc!r} in "
                                      f"namespace {ns!r} ({describe(e)}); grant the Role of deploy/rbac.yaml") from None
                raise EnvmgrError(503, "unavailable", f"reading PersistentVolumeClaim {pvc!r} in {ns!r} failed: {describe(e)}") from None
            problem = objects.pvc_problem(claim, ns)
            if problem:
                raise EnvmgrError(422, "invalid_field", problem)

    # ------------------------------------------------------------ builds

    @staticmethod
    def runner_path(mount_path: str) -> str:
        with open(runner_module.__file__, "rb") as f:
            source = f.read()
        path = os.path.join(mount_path, ".envmgr", objects.runner_file_name(source))
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            atomic_write(path, source, mode=0o644)
        return path

    @staticmethod
    def bytecode_program(mount_path: str, write: bool = False) -> str:
        """bytecode.py (standard library only) on the volume, content-addressed like the runner, so a pip
        build's bytecode step needs nothing of ours in the image."""
        from ... import bytecode

        with open(bytecode.__file__, "rb") as f:
            source = f.read()
        path = os.path.join(mount_path, ".envmgr", f"bytecode-{hashlib.sha256(source).hexdigest()[:12]}.py")
        if write and not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            atomic_write(path, source, mode=0o644)
        return path

    def manifest(self, build: base.Build, name: str, cluster: Cluster) -> dict:
        self.bytecode_program(cluster.mount_path, write=True)
        return objects.job_manifest(
            self.config, claim=cluster.pvc_name, mount_path=cluster.mount_path, active_deadline=active_deadline(self.config),
            namespace=build.namespace, env_name=build.name, revision=build.revision, name=name,
            plan_path=build.paths.plan, runner_path=self.runner_path(cluster.mount_path), gpu=int(build.spec.gpu or 0),
        )

    @staticmethod
    def plan_to_stdout(build: base.Build) -> None:
        """The Job's runner writes its log to stdout (the pod log); the server copies it into paths.log."""
        with open(build.paths.plan) as f:
            plan = json.load(f)
        if plan.get("log") is not None:
            plan["log"] = None
            atomic_write(build.paths.plan, json.dumps(plan, indent=2), mode=0o600)

    @staticmethod
    def _adoptable(state: ClusterState, build: base.Build) -> Optional[dict]:
        """A running Job of this very revision, left by a server that stopped before it saved the handle."""
        reflector = state.jobs.get(build.namespace)
        for job in reflector.values() if reflector else []:
            meta = job["metadata"]
            lab = meta.get("labels") or {}
            if (lab.get(objects.LABEL_NAME) == build.name and lab.get(objects.LABEL_REVISION) == str(build.revision)
                    and (meta.get("annotations") or {}).get(objects.ANNOTATION_PLAN) == build.paths.plan
                    and not meta.get("deletionTimestamp") and objects.job_state(job) == "running"):
                return job
        return None

    @staticmethod
    def _handle(state: ClusterState, job: dict) -> dict:
        meta = job["metadata"]
        return {"kind": "kubernetes", "cluster": state.cluster.name, "namespace": meta["namespace"],
                "job": meta["name"], "uid": meta.get("uid")}

    async def start(self, build: base.Build) -> dict:
        from kubernetes.client import V1Job
        from kubernetes.client.exceptions import ApiException

        state = self._of(build)
        api = state.api
        await state.synced(build.namespace)
        job = self._adoptable(state, build)
        if job is None:
            base.clear_result(build)
            try:
                os.unlink(self._cancel_marker(build))
            except FileNotFoundError:
                pass
            await asyncio.to_thread(self.plan_to_stdout, build)
            name = objects.job_name(build.name, build.revision, secrets.token_hex(3))
            manifest = await asyncio.to_thread(self.manifest, build, name, state.cluster)
            try:
                job = await api.acall(f"create Job {name}", api.batch.create_namespaced_job, build.namespace, V1Job.from_dict(manifest))
            except ApiException as e:
                if e.status != 409:
                    raise EnvmgrError(503 if e.status in (401, 403) else 422, "job_refused",
                                      f"Kubernetes refused the build Job: {describe(e)}") from None
                # An earlier attempt of this very create went through before its answer was lost: it is ours.
                job = await api.acall(f"get Job {name}", api.batch.read_namespaced_job, name, build.namespace)
            state.jobs[build.namespace].put(job)
            log.info("created Job %s/%s in cluster %s for %s/%s revision %s", build.namespace, name,
                     state.cluster.name, build.namespace, build.name, build.revision)
        else:
            log.info("adopted running Job %s for %s/%s revision %s", job["metadata"]["name"], build.namespace, build.name, build.revision)
        build.handle = self._handle(state, job)
        self._follow(build)
        return build.handle

    def _follow(self, build: base.Build) -> LogFollower:
        follower = self._followers.get(build.key)
        if follower is None or follower.job != build.handle["job"]:
            state = self._of(build)
            follower = LogFollower(state, state.api, build.handle["namespace"], build.handle["job"], build.paths.log)
            self._followers[build.key] = follower
        return follower

    async def wait(self, build: base.Build) -> dict:
        handle = build.handle or {}
        state = self._of(build)
        ns, name = handle.get("namespace", build.namespace), handle.get("job")
        await state.synced(ns, timeout=build.timeout + 60)  # the watch retries until the API answers
        follower = self._follow(build)
        try:
            job_state, job, message = await self._until_ended(state, build, ns, name)
            await follower.finish(timeout=RESULT_GRACE)
            return await self._result(state, build, job_state, job, message)
        finally:
            follower.stop()
            self._followers.pop(build.key, None)
            self._cancelled.discard(build.key)

    async def _until_ended(self, state: ClusterState, build: base.Build, ns: str, name: str) -> tuple:
        """(state, job, message) once the Job has a terminal condition, is gone, or its pod cannot start."""
        start_timeout = self.config.kubernetes_start_timeout
        job = state.job(ns, name)
        created = _timestamp((job or {}).get("metadata", {}).get("creationTimestamp")) or time.time()
        start_deadline = created + start_timeout
        while True:
            changed = self.changed
            job = state.job(ns, name)
            if job is None:
                if await self._gone(state, ns, name):
                    return "gone", None, ""
                continue
            ended = objects.job_state(job)
            if ended != "running":
                return ended, job, ""
            pod = state.pod_of(ns, name)
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
                    await self._delete(state, ns, name)
                    if reason in objects.FATAL_WAITING:
                        return "stuck", job, f"the build pod cannot start: {why}"
                    return "stuck", job, (f"the build pod did not start within {start_timeout:.0f}s "
                                          f"(c.EnvManagerApp.kubernetes_start_timeout): {why}")
                timeout = max(0.1, start_deadline - time.time())
            try:
                await asyncio.wait_for(changed.wait(), timeout)
            except asyncio.TimeoutError:
                pass

    async def _gone(self, state: ClusterState, ns: str, name: str) -> bool:
        """The cache has no such Job: confirm with a read (a new Job may not be in the cache yet)."""
        from kubernetes.client.exceptions import ApiException

        api = state.api
        try:
            job = await api.acall(f"get Job {name}", api.batch.read_namespaced_job, name, ns)
        except ApiException as e:
            if e.status == 404:
                return True
            # 401/403 and the like: an API server warming up after a restart; the build's own time-out bounds this.
            log.warning("reading Job %s failed (%s); waiting for the watch", name, describe(e))
            await self._pause(api)
            return False
        except EnvmgrError:  # the API is away: wait for the watch to come back
            await self._pause(api)
            return False
        state.jobs[ns].put(job)
        return False

    async def _pause(self, api: KubeApi) -> None:
        """Until the next watch event, or one API call's patience."""
        changed = self.changed
        try:
            await asyncio.wait_for(changed.wait(), api.patience())
        except asyncio.TimeoutError:
            pass

    @staticmethod
    def _cancel_marker(build: base.Build) -> str:
        return os.path.join(build.paths.build_dir, "cancelled")

    async def _result(self, state: ClusterState, build: base.Build, ended: str, job: Optional[dict], message: str) -> dict:
        if build.key in self._cancelled or os.path.exists(self._cancel_marker(build)):
            return {"status": "cancelled", "message": "cancelled"}
        result = self._read_result(build)
        if result is None and ended == "complete":
            # The runner exited 0, so it wrote result.json: give this node's view of the volume time to see it.
            deadline = time.monotonic() + RESULT_GRACE
            while result is None and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                os.listdir(build.paths.build_dir)  # refresh the directory's cached entries (NFS)
                result = self._read_result(build)
        if result is not None:
            return result
        if ended == "complete":
            message = (f"the build Job ended but left no result in {build.paths.build_dir}: is the volume mounted at "
                       f"{state.cluster.mount_path} in the Job as in this server?")
        elif ended == "failed":
            message = objects.job_failure_message(job)
            pod = state.pod_of(build.namespace, job["metadata"]["name"]) if job else None
            if pod is not None and objects.container_terminated(pod):
                message = f"{message}: {objects.pod_failure_message(pod)}"
        elif ended == "gone":
            message = (f"the build Job {(build.handle or {}).get('job')} was deleted before it finished and left no "
                       "result; rebuild to try again")
        self._log_line(build, f"==> failed: {message}")
        return {"status": "failed", "message": message, "step": None, "exit_code": None}

    @staticmethod
    def _read_result(build: base.Build) -> Optional[dict]:
        try:
            with open(build.paths.result) as f:
                return json.load(f)
        except (FileNotFoundError, ValueError):
            return None

    @staticmethod
    def _log_line(build: base.Build, line: str) -> None:
        try:
            with open(build.paths.log, "a") as f:
                f.write(line + "\n")
        except OSError:
            pass

    @staticmethod
    async def _delete(state: ClusterState, ns: str, name: str) -> None:
        """Delete a Job and, in the foreground, its pods; a Job already gone is fine."""
        from kubernetes.client import V1DeleteOptions
        from kubernetes.client.exceptions import ApiException

        api = state.api
        try:
            await api.acall(f"delete Job {name}", api.batch.delete_namespaced_job, name, ns,
                            body=V1DeleteOptions(propagation_policy="Foreground"))
        except ApiException as e:
            if e.status != 404:
                raise EnvmgrError(503, "unavailable", f"deleting Job {name} failed: {describe(e)}") from None

    async def cancel(self, build: base.Build) -> None:
        handle = build.handle or {}
        if not handle.get("job"):
            return
        state = self._of(build)
        ns, name = handle["namespace"], handle["job"]
        self._cancelled.add(build.key)
        # On the shared root, so that any other server following this build reads it as cancelled too.
        try:
            await asyncio.to_thread(atomic_write, self._cancel_marker(build), now_text())
        except OSError:
            pass
        await self._delete(state, ns, name)
        # Foreground deletion: the Job disappears once its pod has: wait for that (bounded).
        deadline = time.monotonic() + CANCEL_TIMEOUT
        state.watching(ns)
        while time.monotonic() < deadline:
            changed = self.changed
            if state.job(ns, name) is None and state.pod_of(ns, name) is None:
                return
            try:
                await asyncio.wait_for(changed.wait(), max(0.1, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                break
        log.warning("Job %s/%s was deleted but is still terminating after %.0fs", ns, name, CANCEL_TIMEOUT)

    def owns(self, handle: dict) -> bool:
        return handle.get("kind") == "kubernetes" and handle.get("cluster") in self._clusters

    def is_running(self, build: base.Build) -> bool:
        """True while the Job exists (running, or ended with a status still to read) or cannot be looked up yet."""
        handle = build.handle or {}
        reflector = self._of(build).jobs.get(handle.get("namespace"))
        if reflector is None or not reflector.synced.is_set():
            return True  # not listed yet (the API is away): `wait` re-attaches when it answers
        return reflector.get(handle.get("job")) is not None

    async def stop(self) -> None:
        for follower in list(self._followers.values()):
            follower.stop()
        for state in self._clusters.values():
            await state.stop()


def now_text() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _timestamp(text: Optional[str]) -> Optional[float]:
    if not text:
        return None
    try:
        return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp()
    except ValueError:
        return None
