"""The lifecycle of environments: the state machine, and the only writer of records.

pending → warming → ready | failed | cancelled, one revision at a time per environment. A build
goes into a new `rev-N` prefix; only a successful one moves `current` and the kernelspec, so a
failed or cancelled update leaves the last ready revision serving.
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import shutil
from dataclasses import dataclass, field
from typing import Optional

from . import gc, recipes
from .builders.base import Build, Builder, read_result
from .errors import EnvmgrError, conflict, invalid
from .kernels import KernelRegistry, kernel_name
from .policy import Policy
from .progress import LogProgress
from .spec import (BUILD_INPUTS, EnvSpec, Offer, parse_create, parse_patch, redact_url, scrub, secrets_in)
from .store import Store, atomic_symlink

ACTIVE = ("pending", "warming")
INTERNAL_FIELDS = ("revisions",)


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Settings:
    """What the manager needs from the app's configuration."""

    build_timeout: float = 3600.0
    init_script_timeout: float = 600.0
    keep_revisions: int = 3
    default_python: str = ""
    default_namespace: str = "default"
    presets: list = field(default_factory=list)
    rerun_init_script: bool = True


class EnvironmentManager:
    def __init__(
        self,
        store: Store,
        builder: Builder,
        kernels: KernelRegistry,
        policy: Policy,
        offer: Offer,
        recipe_book: "recipes.RecipeBook",
        settings: Settings,
        log: Optional[logging.Logger] = None,
    ):
        self.store = store
        self.builder = builder
        self.kernels = kernels
        self.policy = policy
        self.offer = offer
        self.recipe_book = recipe_book
        self.settings = settings
        self.log = log or logging.getLogger("jupyter_envmgr")
        self._slots = asyncio.Semaphore(policy.max_concurrent_builds)
        self._builds: dict = {}  # (ns, name) -> Build, while pending or warming here
        self._cancelled: set = set()  # build keys a user cancelled
        self._tasks: set = set()
        self._create_lock = asyncio.Lock()
        self.changed = asyncio.Event()  # set on every record change; log followers wait on it

    # ------------------------------------------------------------ queries

    def info(self, version: str, backend: str) -> dict:
        return {
            "version": version,
            "backend": backend,
            "managers": list(self.offer.managers),
            "python_versions": sorted({".".join(v.split(".")[:2]) for v in self.offer.python_versions},
                                      key=lambda v: tuple(map(int, v.split(".")))),
            "namespaces": list(self.offer.namespaces),
            "storages": list(self.offer.storages),
            "presets": list(self.settings.presets),
            "base_packages": {m: list(p) for m, p in self.policy.base_packages.items()},
            "limits": self.policy.limits(),
        }

    def check_namespace(self, namespace: Optional[str]) -> str:
        namespace = namespace or self.settings.default_namespace
        if namespace not in self.offer.namespaces:
            raise invalid("namespace", f"{namespace!r} is not a namespace of this server; use one of {', '.join(self.offer.namespaces)}")
        return namespace

    def public(self, record: dict) -> dict:
        """The record as API.md shows it: no internals, no secrets."""
        out = {k: v for k, v in record.items() if k not in INTERNAL_FIELDS}
        out["index_urls"] = [redact_url(u) for u in record.get("index_urls", [])]
        out["base_packages"] = list(self.policy.base_packages.get(record.get("manager", "pip"), []))
        secrets = secrets_in(record.get("index_urls", []))
        if secrets and out.get("message"):
            out["message"] = scrub(out["message"], secrets)
        return out

    def list(self, namespace: str, label: Optional[str] = None, status: Optional[str] = None) -> list:
        records = self.store.list(namespace)
        if label:
            key, sep, value = label.partition("=")
            records = [r for r in records if key in r.get("labels", {}) and (not sep or r["labels"][key] == value)]
        if status:
            wanted = set(status.split(","))
            records = [r for r in records if r.get("status") in wanted]
        return [self.public(r) for r in records]

    def get(self, namespace: str, name: str) -> dict:
        return self.store.read(namespace, name)

    def spec_of(self, record: dict) -> EnvSpec:
        return EnvSpec.from_dict(record)

    def secrets(self, record: dict) -> list:
        urls = list(record.get("index_urls", []))
        for rev in record.get("revisions", []):
            urls += rev.get("inputs", {}).get("index_urls", [])
        return secrets_in(urls)

    def revisions(self, namespace: str, name: str) -> list:
        record = self.store.read(namespace, name)
        secrets = self.secrets(record)
        out = []
        for rev in record.get("revisions", []):
            paths = self.paths(namespace, name, rev["revision"])
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
                "lock": _read_text(paths.lock),
            })
        return out

    def lock_text(self, namespace: str, name: str) -> str:
        record = self.store.read(namespace, name)
        if not record.get("ready_revision"):
            raise conflict("not_ready", f"{name!r} has no ready revision yet, so there is no lock; wait for the build to finish")
        return _read_text(self.paths(namespace, name, record["ready_revision"]).lock)

    def export_spec(self, namespace: str, name: str) -> dict:
        """The inputs of the record, in the shape POST accepts (credentials redacted)."""
        record = self.store.read(namespace, name)
        spec = self.spec_of(record).to_dict()
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

    def is_active(self, namespace: str, name: str) -> bool:
        return (namespace, name) in self._builds

    # ------------------------------------------------------------ validation

    def validate(self, spec: EnvSpec) -> None:
        """Everything a spec must pass before anything is written (fields were checked by spec.py)."""
        if len(spec.packages.encode()) > self.policy.max_packages_bytes:
            raise invalid("packages", f"is larger than {self.policy.max_packages_bytes} bytes (c.EnvManagerApp.max_packages_bytes); trim it")
        self.policy.check_spec(spec)
        self.recipe_book.validate(spec)  # the manager-specific checks (environment.yaml parsing, ...)

    # ------------------------------------------------------------ commands

    async def create(self, body: dict, namespace: Optional[str], owner: str) -> dict:
        namespace = self.check_namespace(namespace or (body.get("namespace") if isinstance(body, dict) else None))
        spec = parse_create(body, self.offer, self._default_python, namespace)
        self.validate(spec)
        await self.builder.check_storage(namespace)
        async with self._create_lock:
            self.policy.check_count(sum(len(self.store.list(ns)) for ns in self.offer.namespaces))
            stamp = now()
            record = dict(
                spec.to_dict(),
                status="pending", message="queued", progress=0.0, revision=1, ready_revision=None,
                created=stamp, updated=stamp, owner=owner, kernel_name=None,
                prefix=self.store.current_link(namespace, spec.name),
                revisions=[_revision(1, spec, stamp)],
            )
            self.store.create(namespace, spec.name, record)
        self._launch(namespace, spec.name, 1, spec)
        return record

    def _default_python(self, values: dict) -> str:
        return self.recipe_book.pinned_python(values.get("manager", "pip"), values.get("packages", ""), self.offer.python_versions, self.settings.default_python) or self.settings.default_python

    async def patch(self, namespace: str, name: str, body: dict) -> tuple:
        """Returns (record, built): built is True when a new revision started."""
        record = self.store.read(namespace, name)
        spec = parse_patch(body, self.spec_of(record), self.public(record), self.offer)
        rebuild = spec.build_inputs() != self.spec_of(record).build_inputs()
        if rebuild:
            self.validate(spec)
            self._refuse_if_building(record)
            await self.builder.check_storage(namespace)
            return self._start_revision(namespace, name, spec), True
        changes = {k: v for k, v in spec.to_dict().items() if k not in BUILD_INPUTS}

        def apply(r):
            r.update(changes, updated=now())

        record = self.store.update(namespace, name, apply)
        if record.get("ready_revision") and "env_vars" in body:
            self._write_kernel(record)
        self._notify()
        return record, False

    async def action(self, namespace: str, name: str, body: dict, user: str = "") -> dict:
        if not isinstance(body, dict) or not isinstance(body.get("action"), str):
            raise EnvmgrError(400, "invalid_json", 'the body must be {"action": "rebuild" | "cancel" | "rollback", ...}')
        unknown = set(body) - {"action", "revision", "name"}
        if unknown:
            raise EnvmgrError(400, "unknown_field", f"unknown field(s) {', '.join(sorted(unknown))}; an action takes 'action' and, for rollback, 'revision', for clone, 'name'")
        action = body["action"]
        record = self.store.read(namespace, name)
        if action == "rebuild":
            self._refuse_if_building(record)
            spec = self.spec_of(record)
            self.validate(spec)
            await self.builder.check_storage(namespace)
            return self._start_revision(namespace, name, spec)
        if action == "cancel":
            return await self.cancel(namespace, name, user)
        if action == "rollback":
            return self.rollback(namespace, name, body.get("revision"))
        if action == "clone":
            return await self.clone(namespace, name, body.get("name"), user)
        raise invalid("action", f"{action!r} is not an action; use rebuild, cancel, rollback or clone")

    async def clone(self, namespace: str, name: str, new_name, owner: str) -> dict:
        """A new environment with the same inputs (credentials included, which an export redacts)."""
        spec = self.spec_of(self.store.read(namespace, name)).to_dict()
        spec["name"] = new_name
        return await self.create(spec, namespace, owner)

    def _refuse_if_building(self, record: dict) -> None:
        if record.get("status") in ACTIVE:
            raise conflict(
                "build_running",
                f"revision {record['revision']} of {record['name']!r} is still {record['status']}; "
                "wait for it or cancel it first (POST .../actions {\"action\": \"cancel\"})",
            )

    def _start_revision(self, namespace: str, name: str, spec: EnvSpec) -> dict:
        revision = {}

        def apply(r):
            self._refuse_if_building(r)
            number = max([x["revision"] for x in r.get("revisions", [])] + [0]) + 1
            stamp = now()
            r.update(spec.to_dict(), status="pending", message="queued", progress=0.0, revision=number, updated=stamp)
            r.setdefault("revisions", []).append(_revision(number, spec, stamp))
            revision["n"] = number

        record = self.store.update(namespace, name, apply)
        self._launch(namespace, name, revision["n"], spec)
        return record

    async def cancel(self, namespace: str, name: str, user: str = "") -> dict:
        build = self._builds.get((namespace, name))
        if build is None:
            record = self.store.read(namespace, name)
            raise conflict("not_building", f"{name!r} has no build to cancel (status {record.get('status')})")
        await self._stop_build(build)
        return self.store.read(namespace, name)

    async def _stop_build(self, build: Build) -> None:
        """Cancel a queued or running build and wait (bounded) until its record says so."""
        self._cancelled.add(build.key)
        if build.handle is None:  # still queued: nothing runs yet
            build.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await build.task
            self._finish(build, {"status": "cancelled"})
            return
        await self.builder.cancel(build)
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(build.task), timeout=15)

    def rollback(self, namespace: str, name: str, revision) -> dict:
        record = self.store.read(namespace, name)
        self._refuse_if_building(record)
        if isinstance(revision, bool) or not isinstance(revision, int):
            raise invalid("revision", "rollback needs the number of a ready revision, e.g. {\"action\": \"rollback\", \"revision\": 1}")
        rev = next((r for r in record.get("revisions", []) if r["revision"] == revision), None)
        ready = [r["revision"] for r in record.get("revisions", []) if r["status"] == "ready"]
        if rev is None or rev["status"] != "ready" or not os.path.isdir(self.store.prefix(namespace, name, revision)):
            raise invalid("revision", f"{revision} is not a kept ready revision of {name!r}; ready revisions: {ready or 'none'}")
        atomic_symlink(os.path.basename(self.store.prefix(namespace, name, revision)), self.store.current_link(namespace, name))

        def apply(r):
            r.update(rev["inputs"], status="ready", message=f"rolled back to revision {revision}", progress=1.0,
                     revision=revision, ready_revision=revision, updated=now())

        record = self.store.update(namespace, name, apply)
        self._write_kernel(record)
        self._notify()
        return record

    async def delete(self, namespace: str, name: str) -> None:
        self.store.read(namespace, name)  # 404 first
        build = self._builds.get((namespace, name))
        if build is not None:
            await self._stop_build(build)
        self.kernels.remove(namespace, name)
        self.store.remove(namespace, name)
        self._notify()

    # ------------------------------------------------------------ builds

    def _launch(self, namespace: str, name: str, revision: int, spec: EnvSpec, handle: Optional[dict] = None) -> Build:
        paths = self.paths(namespace, name, revision)
        build = Build(namespace, name, revision, spec, paths, self.settings.build_timeout, handle)
        if handle is None:
            reuse = self._reusable_init(namespace, name, spec)
            steps, env = self.recipe_book.steps(spec, paths, with_init=reuse is None)
            recipes.write_plan(spec, paths, steps, env, self.settings.build_timeout)
            if reuse is not None:
                shutil.copyfile(reuse, paths.init_env)
        self._builds[(namespace, name)] = build
        task = build.task = asyncio.ensure_future(self._run(build, attach=handle is not None))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._notify()
        return build

    async def _run(self, build: Build, attach: bool = False) -> None:
        try:
            if attach:
                await self._follow(build)
                return
            async with self._slots:
                if build.key in self._cancelled:
                    self._finish(build, {"status": "cancelled"})
                    return
                handle = await self.builder.start(build)
                self._set(build, status="warming", message="starting", progress=0.0, handle=handle, started=now())
                await self._follow(build)
        except asyncio.CancelledError:
            raise  # the server is stopping: the build goes on, the next start re-attaches
        except EnvmgrError as e:
            if e.status != 404:
                self._finish(build, {"status": "failed", "message": e.message})
        except Exception as e:  # never leave a record warming: a full disk, a bug here
            self.log.exception("build %s failed in the server", build.key)
            await self._finish_despite_errors(build, {"status": "failed", "message": f"the server could not run the build: {e}"})
        finally:
            if self._builds.get((build.namespace, build.name)) is build:
                del self._builds[(build.namespace, build.name)]
            self._cancelled.discard(build.key)
            self._notify()

    async def _finish_despite_errors(self, build: Build, result: dict, attempts: int = 8) -> None:
        """Record the end of a build even if the storage refuses for a while (full disk): retry with backoff."""
        for attempt in range(attempts):
            try:
                self._finish(build, result)
                return
            except OSError as e:
                self.log.warning("cannot record the end of %s yet (%s); retrying", build.key, e)
                await asyncio.sleep(min(30, 0.5 * 2 ** attempt))
        self.log.error("gave up recording the end of %s; the next start will", build.key)

    async def _follow(self, build: Build) -> None:
        follower = asyncio.ensure_future(self._follow_log(build))
        try:
            try:
                result = await asyncio.wait_for(self.builder.wait(build), timeout=build.timeout + 60)
            except asyncio.TimeoutError:
                await self.builder.cancel(build)
                result = {"status": "failed", "message": f"the build ran past its time limit ({build.timeout:.0f}s, c.EnvManagerApp.build_timeout)"}
        finally:
            follower.cancel()
        if build.key in self._cancelled:
            result = {"status": "cancelled"}
        await self._finish_despite_errors(build, result)

    async def _follow_log(self, build: Build, interval: float = 0.3) -> None:
        """Turn new log lines into progress and message on the record."""
        tracker = LogProgress([s["name"] for s in _plan_steps(build)])
        offset = 0
        while True:
            await asyncio.sleep(interval)
            try:
                with open(build.paths.log, "rb") as f:
                    f.seek(offset)
                    chunk = f.read()
            except FileNotFoundError:
                continue
            complete = chunk[: chunk.rfind(b"\n") + 1]
            offset += len(complete)
            changed = False
            for line in complete.decode(errors="replace").splitlines():
                changed |= tracker.feed(line)
            if changed:
                with contextlib.suppress(EnvmgrError):
                    self._set(build, progress=tracker.progress, message=tracker.message)

    def _set(self, build: Build, **changes) -> None:
        """Update the record and this build's revision entry, if the record still is about this build."""
        rev_fields = {k: changes.pop(k) for k in ("handle", "started") if k in changes}

        def apply(r):
            for rev in r.get("revisions", []):
                if rev["revision"] == build.revision:
                    rev.update(rev_fields)
                    if "status" in changes:
                        rev["status"] = changes["status"]
            if r.get("revision") == build.revision:
                r.update(changes, updated=now())

        self.store.update(build.namespace, build.name, apply)
        self._notify()

    def _finish(self, build: Build, result: dict) -> None:
        status = result.get("status", "failed")
        ns, name, number = build.namespace, build.name, build.revision
        if status == "ready":
            try:
                atomic_symlink(os.path.basename(build.paths.prefix), self.store.current_link(ns, name))
            except FileNotFoundError:  # deleted meanwhile
                return
            message = "ready"
        else:
            shutil.rmtree(build.paths.prefix, ignore_errors=True)  # a broken prefix serves nobody
            message = "cancelled" if status == "cancelled" else (result.get("message") or "the build failed")

        def apply(r):
            for rev in r.get("revisions", []):
                if rev["revision"] == number:
                    rev.update(status=status, message=message, finished=now())
            if r.get("revision") != number:
                return
            r.update(status=status, message=message, updated=now())
            if status == "ready":
                r.update(ready_revision=number, progress=1.0,
                         kernel_name=kernel_name(ns, name, self.settings.default_namespace))

        try:
            record = self.store.update(ns, name, apply)
        except EnvmgrError:  # deleted while it built
            return
        if status == "ready":
            self._write_kernel(record)
            self._prune(ns, name)
        self.log.info("environment %s/%s revision %s: %s", ns, name, number, status)
        self._notify()

    def _reusable_init(self, namespace: str, name: str, spec: EnvSpec) -> Optional[str]:
        """With rerun_init_script off: the env file of the ready revision that already ran this script."""
        if self.settings.rerun_init_script or not spec.init_script.strip():
            return None
        record = self.store.read(namespace, name)
        ready = record.get("ready_revision")
        rev = next((r for r in record.get("revisions", []) if r["revision"] == ready), None)
        if not rev or rev["inputs"].get("init_script") != spec.init_script:
            return None
        path = self.paths(namespace, name, ready).init_env
        return path if os.path.exists(path) else None

    def _kernel_env(self, record: dict) -> dict:
        """What a kernel of the ready revision gets: activation, init-script variables, the spec's env_vars."""
        paths = self.paths(record["namespace"], record["name"], record["ready_revision"])
        return {
            **_read_json(paths.activate_env),
            **recipes.read_env_file(paths.init_env),
            **record.get("env_vars", {}),
            "JUPYTER_ENVMGR_ENVIRONMENT": f"{record['namespace']}/{record['name']}",
        }

    def _write_kernel(self, record: dict) -> None:
        self.kernels.write(record, self._kernel_env(record))

    def _prune(self, namespace: str, name: str) -> None:
        """Drop revisions beyond keep_revisions; never current, the ready one or an active one."""
        gc.prune_revisions(self.store, namespace, name, self.settings.keep_revisions)

    def _notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    # ------------------------------------------------------------ start and stop

    async def start(self) -> None:
        """Reconcile every record with reality: re-attach, finish, re-queue or fail; resync kernels."""
        self.store.ensure_layout(self.offer.namespaces)
        await self.builder.prepare()
        self.kernels.install_magics()
        wanted = {}
        for namespace in self.offer.namespaces:
            self.store.sweep(namespace)
            for record in self.store.list(namespace):
                try:
                    record = self._reconcile(namespace, record)
                except Exception:  # one bad record must not stop the server
                    self.log.exception("could not reconcile %s/%s", namespace, record.get("name"))
                    continue
                if record.get("ready_revision"):
                    kname = kernel_name(namespace, record["name"], self.settings.default_namespace)
                    wanted[kname] = (record, self._kernel_env(record))
        self.kernels.resync(wanted)

    def _reconcile(self, namespace: str, record: dict) -> dict:
        if record.get("status") not in ACTIVE:
            return record
        name, number = record["name"], record["revision"]
        rev = next((r for r in record.get("revisions", []) if r["revision"] == number), {})
        spec = EnvSpec.from_dict({**self.spec_of(record).to_dict(), **rev.get("inputs", {})})
        handle = rev.get("handle")
        if record["status"] == "pending" or handle is None:
            self.log.info("re-queueing %s/%s revision %s", namespace, name, number)
            self._launch(namespace, name, number, spec)
        elif self.builder.owns(handle):
            build = Build(namespace, name, number, spec, self.paths(namespace, name, number), self.settings.build_timeout, handle)
            if self.builder.is_running(build):
                self.log.info("re-attaching to %s/%s revision %s", namespace, name, number)
                self._launch(namespace, name, number, spec, handle)
            else:
                self._finish(build, read_result(build, "the build process ended while the server was down and left no result; rebuild to try again"))
        return self.store.read(namespace, name)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.builder.stop()


def _revision(number: int, spec: EnvSpec, stamp: str) -> dict:
    return {"revision": number, "status": "pending", "message": "", "created": stamp, "finished": None,
            "inputs": spec.build_inputs()}


def _read_text(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def _read_json(path: str) -> dict:
    import json

    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return {}


def _plan_steps(build: Build) -> list:
    return _read_json(build.paths.plan).get("steps", [])
