"""Orchestration: requests become lifecycle transitions (through `records`) and builds (`builds.py`);
a serving revision becomes a kernelspec on this server, whichever server built it.

Nothing here blocks the event loop: storage work runs in the records' worker threads.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from typing import Optional

from . import gc, lifecycle, recipes, resolve, sharing
from .builders.base import Build, Builder
from .builds import Builds, holder, read_json
from .errors import EnvmgrError, conflict, invalid
from .events import ChangeFeed
from .kernels import KernelRegistry
from .lifecycle import Status
from .placement import Placement
from .policy import Policy
from .records import Records, now, secrets_of
from .spec import BUILD_INPUTS, EnvSpec, Offer, parse_create, parse_patch, redact_url, scrub
from .store import Store, atomic_symlink, read_bytes

INTERNAL_FIELDS = ("revisions", "damaged")


def notes(record: dict, backend: str) -> list:
    """What a client should know about how this server treats the record's fields: a gpu count is accepted
    everywhere (a spec moves between backends), but only the kubernetes backend acts on it, so say so."""
    gpu = record.get("gpu") or 0
    if gpu and backend == "local":
        return [f"gpu {gpu} does nothing on this server's local backend: builds and kernels run on this machine "
                "and use whatever GPUs it has; on the kubernetes backend each build asks for that many GPUs "
                "(c.EnvManagerApp.kubernetes_gpu_resource) to preload GPU packages"]
    return []


@dataclass
class Settings:
    """What the manager needs from the app's configuration (the app's traits hold the defaults)."""

    build_timeout: float
    init_script_timeout: float
    keep_revisions: int
    default_python: str
    default_namespace: str
    rerun_init_script: bool
    max_log_bytes: int
    lease_seconds: float
    presets: list
    server_id: str  # who holds a lease: the same after a restart on the same host and port
    reuse_revisions: bool


class EnvironmentManager:
    def __init__(self, store: Store, builder: Builder, kernels: KernelRegistry, policy: Policy, offer: Offer,
                 recipe_book: "recipes.RecipeBook", settings: Settings, log: Optional[logging.Logger] = None):
        self.store = store
        self.builder = builder
        self.kernels = kernels
        self.policy = policy
        self.offer = offer
        self.recipe_book = recipe_book
        self.settings = settings
        self.log = log or logging.getLogger("jupyter_envmgr")
        self.placement = Placement(builder.clusters() or [{"name": "local", "namespaces": list(offer.namespaces)}],
                                   settings.default_namespace)
        self.namespaces = self.placement.namespaces
        self.records = Records(store, on_change=self._publish)
        self.feed = ChangeFeed(store, self.namespaces, self.records.run, self.public, log=self.log)
        self.feed.listen(self._follow_switches)
        self.sharing = sharing.Sharing(store, recipe_book, self.records.run, self.feed.fresh, self.paths, self.log)
        self.builds = Builds(self.records, builder, store, recipe_book, self.sharing, self.feed, self.placement, settings,
                             self.log, self.paths, self._background, kernel_name=kernels.name, serve=self._write_kernel,
                             served=self._served, unregister=self._unregister, max_concurrent=policy.max_concurrent_builds)
        self._kernel_revisions: dict = {}  # (ns, name) -> (ready revision, env_vars) of the kernelspec written
        self._tasks: set = set()
        self._create_lock = asyncio.Lock()
        self._list_cache: dict = {}  # (ns, label, status, feed version) -> (body, etag)
        self.started = asyncio.Event()  # set once `start` has reconciled the root
        self.auditor = None  # audit.Auditor when an advisory database is configured
        self.usage_book = None  # usage.UsageBook: who runs kernels on which revision

    # ------------------------------------------------------------ queries

    def info(self, version: str, backend: str) -> dict:
        versions = sorted({".".join(v.split(".")[:2]) for v in self.offer.python_versions},
                          key=lambda v: tuple(map(int, v.split("."))))
        return {
            "version": version,
            "backend": backend,
            "managers": list(self.offer.managers),
            "python_versions": versions,
            "default_python": self.settings.default_python or None,
            "namespaces": list(self.placement.clusters[0]["namespaces"]),  # the default cluster's
            "clusters": self.placement.clusters,
            "storages": list(self.offer.storages),
            "presets": list(self.settings.presets),
            "base_packages": {m: list(p) for m, p in self.policy.base_packages.items()},
            "limits": self.policy.limits(),
        }

    def public(self, record: dict) -> dict:
        """The record as API.md shows it: no internals, no secrets."""
        out = {k: v for k, v in record.items() if k not in INTERNAL_FIELDS}
        out["cluster"] = self.placement.cluster_of(record.get("namespace"))  # where its root is, on this server
        out["index_urls"] = [redact_url(u) for u in record.get("index_urls") or []]
        out["base_packages"] = list(self.policy.base_packages.get(record.get("manager") or "pip", []))
        out["notes"] = notes(record, self.builder.kind)
        secrets = secrets_of(record)
        if secrets and out.get("message"):
            out["message"] = scrub(out["message"], secrets)
        return out

    async def list_json(self, namespace: str, label: Optional[str] = None, status: Optional[str] = None) -> tuple:
        """The list route's body and its ETag: records as clients see them, serialized once per change.

        The body of each (namespace, filters) is kept until the namespace changes, so 50 panels
        listing 1,000 environments cost the loop little more than the socket writes.
        """
        unknown = sorted(set((status or "").split(",")) - {s.value for s in Status} - {""})
        if unknown:
            raise invalid("status", f"{unknown[0][:64]!r} is not a status; use one or more of "
                                    f"{', '.join(s.value for s in Status)}, comma-separated")
        entries = await self.feed.fresh_entries(namespace)
        cache_key = (namespace, label, status, self.feed.versions.get(namespace, 0))
        cached = self._list_cache.get(cache_key)
        if cached is None:
            body = self._list_body(entries, label, status)
            cached = (body, '"' + hashlib.sha1(body.encode()).hexdigest() + '"')
            self._list_cache = {k: v for k, v in self._list_cache.items() if k[3] == cache_key[3] and k[0] == namespace}
            self._list_cache[cache_key] = cached
        return cached

    def _list_body(self, entries: list, label: Optional[str], status: Optional[str]) -> str:
        if label:
            key, sep, value = label.partition("=")
            entries = [e for e in entries if key in (e.record.get("labels") or {}) and (not sep or e.record["labels"][key] == value)]
        if status:
            wanted = set(status.split(","))
            entries = [e for e in entries if e.record.get("status") in wanted]
        return '{"environments": [' + ", ".join(e.text for e in entries) + "]}"

    async def list(self, namespace: str, label: Optional[str] = None, status: Optional[str] = None) -> list:
        return json.loads((await self.list_json(namespace, label, status))[0])["environments"]

    async def get(self, namespace: str, name: str) -> dict:
        return await self.records.read(namespace, name)

    def spec_of(self, record: dict) -> EnvSpec:
        return EnvSpec.from_dict(record)

    secrets = staticmethod(secrets_of)

    async def revisions(self, namespace: str, name: str) -> list:
        record = await self.records.read_for_change(namespace, name)
        secrets = secrets_of(record)
        locks = await self.records.run(lambda: {r["revision"]: _read_text(self.paths(namespace, name, r["revision"]).lock)
                                                for r in record.get("revisions", [])})
        out = []
        for rev in record.get("revisions", []):
            inputs = dict(rev.get("inputs", {}))
            inputs["index_urls"] = [redact_url(u) for u in inputs.get("index_urls", [])]
            out.append({
                "revision": rev["revision"],
                "status": rev["status"],
                "message": scrub(rev.get("message", ""), secrets),
                "created": rev.get("created"),
                "finished": rev.get("finished"),
                "current": rev["revision"] == record.get("ready_revision"),
                "inputs": inputs,
                "lock": locks[rev["revision"]],
            })
        return out

    async def lock_text(self, namespace: str, name: str) -> str:
        record = await self.records.read_for_change(namespace, name)
        if not record.get("ready_revision"):
            raise conflict("not_ready", f"{name!r} has no ready revision yet, so there is no lock; wait for the build to finish")
        return await self.records.run(_read_text, self.paths(namespace, name, record["ready_revision"]).lock)

    async def export_spec(self, namespace: str, name: str) -> dict:
        """The inputs of the record, in the shape POST accepts (credentials redacted)."""
        spec = self.spec_of(await self.records.read_for_change(namespace, name)).to_dict()
        spec["index_urls"] = [redact_url(u) for u in spec["index_urls"]]
        if not spec["init_script"]:
            del spec["init_script"]
        return spec

    def paths(self, namespace: str, name: str, revision: int) -> recipes.BuildPaths:
        s = self.store
        return recipes.BuildPaths(
            prefix=s.prefix(namespace, name, revision),
            build_dir=s.build_dir(namespace, name, revision),
            log=s.log_path(namespace, name, revision),
            resources_dir=s.resources_dir(namespace, name),
        )

    # ------------------------------------------------------------ validation

    def validate(self, spec: EnvSpec) -> None:
        """Everything a spec must pass before anything is written (fields were checked by spec.py)."""
        if len(spec.packages.encode()) > self.policy.max_packages_bytes:
            raise invalid("packages", f"is larger than {self.policy.max_packages_bytes} bytes (c.EnvManagerApp.max_packages_bytes); trim it")
        self.policy.check_spec(spec)
        self.recipe_book.validate(spec)  # the manager-specific checks (environment.yaml parsing, ...)

    # ------------------------------------------------------------ commands

    async def create(self, body: dict, namespace: Optional[str], owner: str, dry_run: bool = False) -> dict:
        body_ns = body.get("namespace") if isinstance(body, dict) else None
        namespace = self.placement.check_place(body.pop("cluster", None) if isinstance(body, dict) else None, namespace or body_ns)
        cluster = self.placement.cluster_of(namespace)
        spec = parse_create(body, self.offer, self._default_python, namespace)
        self.validate(spec)
        await self.builder.check_storage(namespace, cluster)
        async with self._create_lock:
            counts = [len(await self.feed.fresh(ns)) for ns in self.namespaces]
            self.policy.check_count(sum(counts))
            if spec.name in {r["name"] for r in await self.feed.fresh(namespace)}:
                raise conflict("name_taken", f"an environment named {spec.name!r} already exists in namespace {namespace!r}; pick another name")
            await self._check_kernel_name(namespace, spec.name)
            record = lifecycle.new_record(dict(spec.to_dict(), cluster=cluster), spec.build_inputs(), owner,
                                          self.store.current_link(namespace, spec.name), self.builds.lease(), now())
            if dry_run:
                return record
            await self.records.create(namespace, spec.name, record)
        self.builds.queue(namespace, spec.name, 1, spec)
        return record

    async def _check_kernel_name(self, namespace: str, name: str) -> None:
        """409 when an environment of another cluster already has the kernel name this one would get: each
        cluster's first namespace has short names (`envmgr-NAME`), and this server's picker shows both roots."""
        kernel = self.kernels.name(namespace, name)
        for other in self.namespaces:
            if other != namespace and self.kernels.name(other, name) == kernel and \
                    name in {r["name"] for r in await self.feed.fresh(other)}:
                raise conflict("name_taken", f"an environment named {name!r} already exists in namespace {other!r} of cluster "
                                             f"{self.placement.cluster_of(other)!r}, and both would be kernel {kernel!r}; pick another name")

    def _default_python(self, values: dict) -> str:
        return self.recipe_book.pinned_python(values.get("manager", "pip"), values.get("packages", ""), self.offer.python_versions, self.settings.default_python) or self.settings.default_python

    async def patch(self, namespace: str, name: str, body: dict, dry_run: bool = False) -> tuple:
        """Returns (record, built): built is True when a new revision started (or would, in a dry run)."""
        record = await self.records.read_for_change(namespace, name)
        if isinstance(body, dict) and "cluster" in body and body["cluster"] != self.placement.cluster_of(namespace):
            raise invalid("cluster", "an environment stays on the cluster it was created on; clone it to another")
        spec = parse_patch({k: v for k, v in body.items() if k != "cluster"} if isinstance(body, dict) else body,
                           self.spec_of(record), self.public(record), self.offer)
        if spec.build_inputs() != self.spec_of(record).build_inputs():
            self.validate(spec)
            lifecycle.refuse_if_active(record)
            await self.builder.check_storage(namespace, self.placement.cluster_of(namespace))
            if dry_run:
                return await self.preview(namespace, name, record, spec), True
            return await self._start_revision(namespace, name, spec), True
        changes = {k: v for k, v in spec.to_dict().items() if k not in BUILD_INPUTS}
        if dry_run:
            return lifecycle.metadata_changed(record, changes, now()), False
        record = await self.records.apply(namespace, name, lifecycle.metadata_changed, changes, now())
        if record.get("ready_revision") and "env_vars" in body:
            await self._write_kernel(record)
        return record, False

    async def action(self, namespace: str, name: str, body: dict, user: str = "", dry_run: bool = False) -> tuple:
        """Returns (record, HTTP status): 202, or 200 for a pin that changed only metadata and for dry runs."""
        if not isinstance(body, dict) or not isinstance(body.get("action"), str):
            raise EnvmgrError(400, "invalid_json", 'the body must be {"action": "rebuild" | "cancel" | "rollback" | "clone" | "pin", ...}')
        unknown = set(body) - {"action", "revision", "name"}
        if unknown:
            raise EnvmgrError(400, "unknown_field", f"unknown field(s) {', '.join(sorted(map(str, unknown)))[:200]}; an action takes 'action' and, for rollback, 'revision', for clone, 'name'")
        action = body["action"]
        if dry_run and action not in ("rebuild", "pin"):
            raise invalid("dry_run", f"only rebuild and pin take ?dry_run=1, not {action[:64]!r}")
        record = await self.records.read_for_change(namespace, name)
        if action == "rebuild":
            lifecycle.refuse_if_active(record)
            spec = self.spec_of(record)
            self.validate(spec)
            await self.builder.check_storage(namespace, self.placement.cluster_of(namespace))
            if dry_run:
                return await self.preview(namespace, name, record, spec), 200
            return await self._start_revision(namespace, name, spec), 202
        if action == "pin":
            return await self.pin(namespace, name, record, dry_run)
        if action == "cancel":
            return await self.cancel(namespace, name), 202
        if action == "rollback":
            return await self.rollback(namespace, name, body.get("revision")), 202
        if action == "clone":
            return await self.clone(namespace, name, body.get("name"), user), 202
        raise invalid("action", f"{action[:64]!r} is not an action; use rebuild, cancel, rollback, clone or pin")

    async def pin(self, namespace: str, name: str, record: dict, dry_run: bool = False) -> tuple:
        """The serving lock's versions of the requested packages become `==` pins: a metadata-only change (200)
        when the serving revision already is what the pinned spec asks for, else a new revision (202)."""
        from . import changes

        lifecycle.refuse_if_active(record)
        serving = record.get("ready_revision")
        if not serving:
            raise conflict("not_ready", f"{name!r} has no ready revision yet, so there is nothing to pin; wait for the build to finish")
        lock = changes.parse_lock(await self.records.run(_read_text, self.paths(namespace, name, serving).lock))
        spec = self.spec_of(record)
        pinned = dataclasses.replace(spec, packages=resolve.pinned_packages(spec, lock))
        self.validate(pinned)
        inputs = next((r.get("inputs") or {} for r in record.get("revisions", []) if r["revision"] == serving), {})
        same = {k: v for k, v in pinned.build_inputs().items() if k != "packages"} == \
            {k: v for k, v in inputs.items() if k != "packages" and k in pinned.build_inputs()}
        if same and changes.satisfied(resolve.requested_pins(pinned), lock):
            if dry_run:
                return lifecycle.metadata_changed(record, {"packages": pinned.packages}, now()), 200
            return await self.records.apply(namespace, name, lifecycle.metadata_changed, {"packages": pinned.packages}, now()), 200
        await self.builder.check_storage(namespace, self.placement.cluster_of(namespace))
        if dry_run:
            return await self.preview(namespace, name, record, pinned), 200
        return await self._start_revision(namespace, name, pinned), 202

    async def preview(self, namespace: str, name: str, record: dict, spec: EnvSpec) -> dict:
        """A dry run that would build: the record as it would be, plus API.md's `changes` (the spec resolved
        now, off the loop, against the serving revision's lock). Writes nothing."""
        from . import changes

        book = self.recipe_book.rooted(self.store.root, self.store.root_of(namespace))
        new = await resolve.resolve(book, spec)
        old, old_python, old_spec = {}, None, None
        serving = record.get("ready_revision")
        if serving:
            old = changes.parse_lock(await self.records.run(_read_text, self.paths(namespace, name, serving).lock))
            inputs = next((r.get("inputs") or {} for r in record.get("revisions", []) if r["revision"] == serving), {})
            old_python = inputs.get("python")
            old_spec = dataclasses.replace(spec, packages=inputs.get("packages", ""))
        out = lifecycle.start_revision(record, spec.to_dict(), spec.build_inputs(), self.builds.lease(), now())
        out["changes"] = changes.diff(old, new, resolve.requested_names(spec),
                                      resolve.requested_names(old_spec) if old_spec else set(), old_python, spec.python)
        return out

    async def clone(self, namespace: str, name: str, new_name, owner: str) -> dict:
        """A new environment with the same inputs (credentials included, which an export redacts)."""
        record = await self.records.read_for_change(namespace, name)
        spec = self.spec_of(record).to_dict()
        spec["name"] = new_name
        return await self.create(spec, namespace, owner)

    async def _start_revision(self, namespace: str, name: str, spec: EnvSpec) -> dict:
        args = (spec.to_dict(), spec.build_inputs(), self.builds.lease(), now())
        record = await self.records.apply(namespace, name, lifecycle.start_revision, *args)
        self.builds.queue(namespace, name, record["revision"], spec)
        return record

    async def cancel(self, namespace: str, name: str) -> dict:
        build = self.builds.active.get((namespace, name))
        if build is None:
            record = await self.records.read_for_change(namespace, name)
            if not lifecycle.is_active(record.get("status")):
                raise conflict("not_building", f"{name!r} has no build to cancel (status {record.get('status')})")
            if not await self.builds.cancel_elsewhere(namespace, record):
                raise conflict("not_building", f"the build of {name!r} runs on another server ({holder(record)}); cancel it there")
            return await self.records.read(namespace, name)
        await self.builds.stop(build)
        return await self.records.read(namespace, name)

    async def rollback(self, namespace: str, name: str, revision) -> dict:
        record = await self.records.read_for_change(namespace, name)
        lifecycle.refuse_if_active(record)
        if isinstance(revision, bool) or not isinstance(revision, int):
            raise invalid("revision", "rollback needs the number of a ready revision, e.g. {\"action\": \"rollback\", \"revision\": 1}")
        ready = [r["revision"] for r in record.get("revisions", []) if r["status"] == Status.READY]
        prefix = self.store.prefix(namespace, name, revision)
        if revision not in ready or not await self.records.run(os.path.isdir, prefix):
            raise invalid("revision", f"{revision} is not a kept ready revision of {name!r}; ready revisions: {ready or 'none'}")
        record = await self.records.apply(namespace, name, lifecycle.rolled_back, revision, now())
        await self.records.run(atomic_symlink, os.path.basename(prefix), self.store.current_link(namespace, name))
        await self._write_kernel(record)
        return record

    async def delete(self, namespace: str, name: str) -> None:
        """Stop any build, rename the environment into trash/, then unregister its kernel.

        The rename happens under the record lock, so once it is done no build of this environment
        starts or writes its record again (every later change answers 404). A failed rename keeps
        the kernel registered.
        """
        record = await self.records.read(namespace, name)  # 404 first; a damaged entry may be deleted
        build = self.builds.active.get((namespace, name))
        if build is not None:
            await self.builds.stop(build)
        elif lifecycle.is_active(record.get("status")) and not record.get("damaged"):
            await self.builds.cancel_elsewhere(namespace, record)
        await self.records.remove(namespace, name)
        await self._unregister(namespace, name)
        self._background(self.records.empty_trash())

    def _background(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------ serving revisions: kernelspecs

    def _kernel_env(self, record: dict) -> dict:
        """Blocking. What a kernel of the ready revision gets: activation, init-script variables, env_vars."""
        paths = self.paths(record["namespace"], record["name"], record["ready_revision"])
        return {
            **read_json(paths.activate_env),
            **recipes.read_env_file(paths.init_env),
            **record.get("env_vars", {}),
            "JUPYTER_ENVMGR_ENVIRONMENT": f"{record['namespace']}/{record['name']}",
        }

    async def _write_kernel(self, record: dict) -> None:
        key = (record["namespace"], record["name"])
        self._kernel_revisions[key] = _kernel_key(record)
        await self.records.run(lambda: self.kernels.write(record, self._kernel_env(record)))

    def _follow_switches(self, namespace: str, name: str, record: Optional[dict]) -> None:
        """Another server switched a revision, changed env_vars or deleted: bring this server's kernelspecs along."""
        if not self.started.is_set():
            return  # the start's own resync writes every kernelspec once
        key = (namespace, name)
        if record is None:
            if self._kernel_revisions.pop(key, None) is not None:
                self._background(self.records.run(self.kernels.remove, namespace, name))
            return
        if record.get("damaged") or not isinstance(record.get("ready_revision"), int):
            return
        if self._kernel_revisions.get(key) != _kernel_key(record):
            self._background(self._write_kernel(record))

    async def _unregister(self, namespace: str, name: str) -> None:
        self._kernel_revisions.pop((namespace, name), None)
        await self.records.run(self.kernels.remove, namespace, name)

    def _served(self, build: Build) -> None:
        """After a revision started serving: prune old ones, audit the new lock (neither on the build's path)."""
        self._background(self._prune(build.namespace, build.name))
        if self.auditor is not None:
            self._background(self._audit(build))

    async def _audit(self, build: Build) -> None:
        """Check the new lock against the advisory database, after the switch: never on the build's path."""
        from . import audit

        try:
            await self.records.run(audit.audit_revision, self.auditor, build.revision, build.paths.lock, build.paths.log)
        except Exception as e:  # an absent or slow database leaves the environment ready
            self.log.warning("envmgr: auditing %s failed: %s", build.key, e)

    async def _prune(self, namespace: str, name: str) -> None:
        """Drop revisions beyond keep_revisions; never the serving, an active or a kernel's one."""
        with contextlib.suppress(EnvmgrError):
            await gc.prune_revisions(self.records, namespace, name, self.settings.keep_revisions)
            await self.records.empty_trash()

    def _publish(self, namespace: str, name: str, record: Optional[dict]) -> None:
        self.feed.publish(namespace, name, record)

    # ------------------------------------------------------------ start and stop

    async def start(self) -> None:
        """Reconcile every record with reality: re-attach, finish, re-queue; resync kernels; watch the root."""
        try:
            if await self.records.run(self.store.writable):
                await self._reconcile_root()
            else:  # a reader of a team's root: list, read and start kernels; every change is refused by the storage
                self.log.warning("envmgr: this server's account (uid %d) cannot write the root %s: environments are "
                                 "read-only here; a team's root is written by the environment service "
                                 "(c.EnvManagerApp.service_url)", os.geteuid(), ", ".join(self.store.all_roots))
        except Exception:  # the extension always starts; each route then answers what is wrong (503, ...)
            self.log.exception("envmgr: reconciling the root %s failed", ", ".join(self.store.all_roots))
        finally:  # requests wait for this
            self._background(self.feed.watch())
            self._background(self.builds.keep_leases())
            self.started.set()

    async def _reconcile_root(self) -> None:
        await self.records.run(self.store.ensure_layout, self.namespaces)
        await self.builder.prepare()
        await self.records.run(self.kernels.install_magics)
        for namespace in self.namespaces:
            await self.records.run(self.store.sweep, namespace)
        wanted, keep = {}, []
        for namespace in self.namespaces:
            for record in await self.feed.fresh(namespace):
                kname = self.kernels.name(namespace, record["name"])
                if record.get("damaged"):
                    keep.append(kname)  # kept until the entry is deleted
                    continue
                try:
                    await self.builds.reclaim(namespace, record)
                except Exception:  # one bad record must not stop the server
                    self.log.exception("could not reconcile %s/%s", namespace, record.get("name"))
                if isinstance(record.get("ready_revision"), int):
                    self._kernel_revisions[(namespace, record["name"])] = _kernel_key(record)
                    wanted[kname] = record
        await self.records.run(self._resync_kernels, wanted, keep)

    def _resync_kernels(self, wanted: dict, keep: list) -> None:
        self.kernels.resync({k: (r, self._kernel_env(r)) for k, r in wanted.items()}, keep)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.builder.stop()
        self.records.close()

    # ------------------------------------------------------------ shared files (sharing.py)

    async def usage(self, namespace: str, name: str, running_kernels: int = 0) -> dict:
        """GET .../usage: disk per kept revision, last kernel start, running kernels (API.md)."""
        record = await self.records.read_for_change(namespace, name)
        numbers = [r["revision"] for r in record.get("revisions", [])]
        revisions, last, held = await self.records.run(self.sharing.usage, namespace, name, numbers)
        stamp = datetime.datetime.fromtimestamp(last, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if last else None
        kernels, recent = await self.records.run(self.usage_book.read, namespace, name) if self.usage_book else ([], [])
        return {"revisions": revisions, "last_used": stamp, "running_kernels": max(running_kernels, held, len(kernels)),
                "kernels": kernels, "recent": recent}

    async def report_usage(self, caller: Optional[str], reporter: str, uses: list, heartbeat: float) -> int:
        """POST /envmgr/api/usage: a notebook server's running kernels (or a job's start), by `caller`."""
        if self.usage_book is None:
            return 0
        return await self.records.run(self.usage_book.report, caller, reporter, uses, heartbeat)


def _kernel_key(record: dict) -> tuple:
    return (record.get("ready_revision"), json.dumps(record.get("env_vars", {}), sort_keys=True))


def _read_text(path: str) -> str:
    return read_bytes(path).decode(errors="replace")
