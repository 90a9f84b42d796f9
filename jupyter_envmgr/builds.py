"""The builds of this server: launch a revision it holds the lease of, follow it, record its end; renew the
leases and take over revisions whose server is gone.

A build goes into a new `rev-N` prefix; only a successful one moves `current` and the kernelspec, so a
failed or cancelled update leaves the last ready revision serving. Several servers may share one root: a
revision is launched only by the server holding its lease, which renews it while the build is queued or
running. What a serving revision means for kernels is the manager's: `serve` writes the kernelspec before
the record says ready, `served` runs after (prune, audit), `unregister` removes a deleted one's.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import time
from typing import Awaitable, Callable, Optional

from . import lifecycle, recipes
from .builders.base import Build, Builder, read_result
from .errors import EnvmgrError
from .events import ChangeFeed
from .inuse import FILE as IN_USE_FILE
from .lifecycle import Status
from .placement import Placement
from .progress import LogProgress
from .records import Records, now
from .sharing import Sharing
from .spec import EnvSpec
from .store import Store, atomic_symlink, read_bytes


class Builds:
    def __init__(self, records: Records, builder: Builder, store: Store, recipe_book: "recipes.RecipeBook",
                 sharing: Sharing, feed: ChangeFeed, placement: Placement, settings, log: logging.Logger,
                 paths: Callable[[str, str, int], recipes.BuildPaths], background: Callable[..., asyncio.Task],
                 kernel_name: Callable[[str, str], str], serve: Callable[[dict], Awaitable],
                 served: Callable[[Build], None], unregister: Callable[[str, str], Awaitable], max_concurrent: int):
        self.records = records
        self.builder = builder
        self.store = store
        self.recipe_book = recipe_book
        self.sharing = sharing
        self.feed = feed
        self.placement = placement
        self.settings = settings
        self.server_id = settings.server_id
        self.log = log
        self.paths = paths
        self.background = background
        self.kernel_name, self.serve, self.served, self.unregister = kernel_name, serve, served, unregister
        self.active: dict = {}  # (ns, name) -> Build this server launches or follows
        self._cancelled: set = set()  # build keys a user cancelled
        self._slots = asyncio.Semaphore(max_concurrent)

    def lease(self) -> dict:
        return {"server": self.server_id, "expires": time.time() + self.settings.lease_seconds}

    def build(self, namespace: str, name: str, revision: int, spec: EnvSpec, handle: Optional[dict] = None) -> Build:
        return Build(namespace, name, revision, spec, self.paths(namespace, name, revision), self.settings.build_timeout,
                     handle, cluster=self.placement.cluster_of(namespace))

    def queue(self, namespace: str, name: str, revision: int, spec: EnvSpec, handle: Optional[dict] = None) -> Build:
        """Launch (or, with a handle, follow) a revision this server holds the lease of."""
        build = self.build(namespace, name, revision, spec, handle)
        self.active[(namespace, name)] = build
        build.task = self.background(self._run(build, attach=handle is not None))
        return build

    # ------------------------------------------------------------ cancel

    async def stop(self, build: Build) -> None:
        """Cancel a queued or running build and wait (bounded) until its record says so."""
        self._cancelled.add(build.key)
        if build.handle is None:  # still queued: nothing runs yet
            build.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await build.task
            with contextlib.suppress(EnvmgrError):
                await self._end(build, {"status": Status.CANCELLED})
            return
        await self.builder.cancel(build)
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(build.task), timeout=15)

    async def cancel_elsewhere(self, namespace: str, record: dict) -> bool:
        """Stop a build another server launched, where this server can reach it (same host or cluster)."""
        rev = lifecycle.revision_of(record, record["revision"])
        handle = rev.get("handle")
        if rev["status"] == Status.PENDING or handle is None:  # queued there: its server finds it cancelled
            with contextlib.suppress(EnvmgrError):
                await self.records.apply(namespace, record["name"], lifecycle.finished, rev["revision"], Status.CANCELLED, "cancelled", None, now())
            return True
        if not self.builder.owns(handle):
            return False
        build = self.build(namespace, record["name"], record["revision"], EnvSpec.from_dict(record), handle)
        await self.builder.cancel(build)
        with contextlib.suppress(EnvmgrError):
            await self.records.apply(namespace, record["name"], lifecycle.finished, build.revision, Status.CANCELLED, "cancelled", None, now())
        return True

    # ------------------------------------------------------------ one build

    async def _run(self, build: Build, attach: bool = False) -> None:
        try:
            if attach:
                await self._follow(build)
                return
            async with self._slots:
                if build.key in self._cancelled:
                    await self._end(build, {"status": Status.CANCELLED})
                    return
                await self.records.apply(build.namespace, build.name, lifecycle.started, build.revision,
                                         self.server_id, None, now())
                if self.settings.reuse_revisions and await self.sharing.copy_same_lock(build):
                    await self._end(build, {"status": Status.READY})
                    return
                await self.records.run(self._write_plan, build)
                handle = await self.builder.start(build)
                await self.records.apply(build.namespace, build.name, lifecycle.started, build.revision,
                                         self.server_id, handle, now())
                await self._follow(build)
        except asyncio.CancelledError:
            raise  # the server is stopping: the build goes on; a server re-attaches when the lease expires
        except EnvmgrError as e:
            if e.status == 404 or e.reason in ("leased", "not_active", "invalid_transition"):
                await self._abandon(build, e)
            else:
                await self._end_despite_errors(build, {"status": Status.FAILED, "message": e.message})
        except Exception as e:  # never leave a record warming: a full disk, a bug here
            self.log.exception("build %s failed in the server", build.key)
            await self._end_despite_errors(build, {"status": Status.FAILED, "message": one_line(f"the server could not run the build: {e}")})
        finally:
            if self.active.get((build.namespace, build.name)) is build:
                del self.active[(build.namespace, build.name)]
            self._cancelled.discard(build.key)

    async def _abandon(self, build: Build, why: EnvmgrError) -> None:
        """The record is gone (deleted) or another server owns the revision now: stop what runs here."""
        self.log.info("envmgr: leaving %s: %s", build.key, why.message)
        if build.handle is not None:
            with contextlib.suppress(Exception):
                await self.builder.cancel(build)

    def _write_plan(self, build: Build) -> None:
        """Blocking: the plan and inputs of a build, written by the server that launches it."""
        reuse = self._reusable_init(build)
        book = self.recipe_book.rooted(self.store.root, self.store.root_of(build.namespace))
        steps, env = book.steps(build.spec, build.paths, with_init=reuse is None)
        recipes.write_plan(build.spec, build.paths, steps, env, self.settings.build_timeout,
                           max_log_bytes=self.settings.max_log_bytes)
        if reuse is not None:
            shutil.copyfile(reuse, build.paths.init_env)

    def _reusable_init(self, build: Build) -> Optional[str]:
        """Blocking. With rerun_init_script off: the env file of the ready revision that already ran this script."""
        spec = build.spec
        if self.settings.rerun_init_script or not spec.init_script.strip():
            return None
        record = self.store.read(build.namespace, build.name)
        ready = record.get("ready_revision")
        rev = next((r for r in record.get("revisions", []) if r["revision"] == ready), None)
        if not rev or rev["inputs"].get("init_script") != spec.init_script:
            return None
        path = self.paths(build.namespace, build.name, ready).init_env
        return path if os.path.exists(path) else None

    async def _end_despite_errors(self, build: Build, result: dict, attempts: int = 8) -> None:
        """Record the end of a build even if the storage refuses for a while (full disk): retry with backoff."""
        for attempt in range(attempts):
            try:
                await self._end(build, result)
                return
            except EnvmgrError as e:
                if e.status not in (503, 507):
                    return
                self.log.warning("cannot record the end of %s yet (%s); retrying", build.key, e.message)
            await asyncio.sleep(min(30, 0.5 * 2 ** attempt))
        self.log.error("gave up recording the end of %s; the next server to hold its lease will", build.key)

    async def _follow(self, build: Build) -> None:
        follower = asyncio.ensure_future(self._follow_log(build))
        try:
            try:
                result = await asyncio.wait_for(self.builder.wait(build), timeout=build.timeout + 60)
            except asyncio.TimeoutError:
                await self.builder.cancel(build)
                result = {"status": Status.FAILED, "message": f"the build ran past its time limit ({build.timeout:.0f}s, c.EnvManagerApp.build_timeout)"}
        finally:
            follower.cancel()
        if build.key in self._cancelled:
            result = {"status": Status.CANCELLED}
        await self._end_despite_errors(build, result)

    async def _follow_log(self, build: Build, interval: float = 0.5) -> None:
        """Turn new log lines into progress and message on the record (read in a worker thread)."""
        steps = (await self.records.run(read_json, build.paths.plan)).get("steps", [])
        tracker = LogProgress([s["name"] for s in steps])
        offset = 0
        while True:
            await asyncio.sleep(interval)
            chunk = await self.records.run(read_bytes, build.paths.log, offset)
            complete = chunk[: chunk.rfind(b"\n") + 1]
            offset += len(complete)
            changed = False
            for line in complete.decode(errors="replace").splitlines():
                changed |= tracker.feed(line)
            if changed:
                try:
                    await self.records.apply(build.namespace, build.name, lifecycle.progressed, build.revision,
                                             tracker.progress, one_line(tracker.message), now())
                except EnvmgrError as e:
                    if e.status == 404:  # deleted while it builds: stop it
                        await self._abandon(build, e)
                        return

    async def _end(self, build: Build, result: dict) -> None:
        """Record how a build ended; a ready one serves from now on (link, kernelspec), then `served` follows.

        A ready revision's kernelspec is written before the record says ready, so whoever hears the
        event finds the kernel in the picker.
        """
        status = Status(result.get("status", Status.FAILED))
        ns, name, number = build.namespace, build.name, build.revision
        kname = self.kernel_name(ns, name)
        record = await self.records.read_for_change(ns, name)
        if not lifecycle.is_active(lifecycle.revision_of(record, number)["status"]):
            return  # another server recorded the end first
        if status is Status.READY:
            message = "ready"
            await self.records.run(_prepare_switch, build)
            serving = lifecycle.finished(record, number, status, message, kname, now())
            if serving.get("ready_revision") == number:
                await self.records.run(atomic_symlink, os.path.basename(build.paths.prefix), self.store.current_link(ns, name))
                await self.serve(serving)
        else:
            message = "cancelled" if status is Status.CANCELLED else one_line(result.get("message") or "the build failed")
            # A broken prefix serves nobody; give its space back first (a full disk needs it to record the end).
            await self.records.run(self.store.discard, build.paths.prefix, f"{ns}.{name}.failed")
        try:
            record = await self.records.apply(ns, name, lifecycle.finished, number, status, message, kname, now())
        except EnvmgrError as e:
            if e.status == 404:  # deleted while it built: its kernelspec goes too
                await self.unregister(ns, name)
                return
            if e.reason == "invalid_transition":
                return  # another server recorded the end first
            raise
        self.log.info("environment %s/%s revision %s: %s", ns, name, number, status)
        if status is Status.READY and record.get("ready_revision") == number:
            self.served(build)

    # ------------------------------------------------------------ leases

    async def keep_leases(self) -> None:
        """Renew the leases of this server's builds; take over revisions whose lease expired."""
        while True:
            await asyncio.sleep(min(5.0, self.settings.lease_seconds / 3))
            for (namespace, name), build in list(self.active.items()):
                try:
                    await self.records.apply(namespace, name, lifecycle.claim, build.revision, self.lease(), time.time())
                except EnvmgrError as e:
                    if e.status == 404 or e.reason == "leased":
                        if build.task:
                            build.task.cancel()
                        await self._abandon(build, e)
            for namespace in self.placement.namespaces:
                for record in await self.feed.fresh(namespace):
                    await self.adopt(namespace, record)

    async def adopt(self, namespace: str, record: dict) -> None:
        """Take over an active revision whose server is gone: launch it, follow it, or record its end."""
        name = record.get("name")
        if record.get("damaged") or not lifecycle.is_active(record.get("status")) or (namespace, name) in self.active:
            return
        number = record["revision"]
        rev = next((r for r in record.get("revisions", []) if r["revision"] == number), None)
        if rev is None or not lifecycle.lease_expired(rev, time.time()):
            return
        try:
            record = await self.records.apply(namespace, name, lifecycle.claim, number, self.lease(), time.time())
        except EnvmgrError:
            return  # another server was faster, or it ended
        rev = lifecycle.revision_of(record, number)
        spec = EnvSpec.from_dict({**EnvSpec.from_dict(record).to_dict(), **rev.get("inputs", {})})
        handle = rev.get("handle")
        if rev["status"] == Status.PENDING or handle is None:
            self.log.info("envmgr: launching %s/%s revision %s (its lease expired)", namespace, name, number)
            self.queue(namespace, name, number, spec)
            return
        build = self.build(namespace, name, number, spec, handle)
        if self.builder.owns(handle) and await self.records.run(self.builder.is_running, build):
            self.log.info("envmgr: re-attaching to %s/%s revision %s", namespace, name, number)
            self.queue(namespace, name, number, spec, handle)
        elif self.builder.owns(handle):
            await self._end_despite_errors(build, await self.records.run(
                read_result, build, "the build process ended while no server followed it and left no result; rebuild to try again"))

    async def reclaim(self, namespace: str, record: dict) -> None:
        """At start: this server's own builds (same server id) are followed again at once; others wait for their lease."""
        if not lifecycle.is_active(record.get("status")):
            return
        rev = next((r for r in record.get("revisions", []) if r["revision"] == record["revision"]), {})
        if (rev.get("lease") or {}).get("server") == self.server_id:
            rev["lease"]["expires"] = 0  # our own lease, from before the restart
            record = dict(record, revisions=[rev if r["revision"] == rev["revision"] else r for r in record["revisions"]])
        await self.adopt(namespace, record)


def holder(record: dict) -> str:
    """The server whose lease the record's newest revision carries."""
    rev = next((r for r in record.get("revisions", []) if r["revision"] == record.get("revision")), {})
    return (rev.get("lease") or {}).get("server", "unknown")


def one_line(text: str, limit: int = 300) -> str:
    """API.md: a message is one line of at most 300 characters."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    head = text[: text.find(": ") + 2] if 0 < text.find(": ") < 80 else ""  # "step install failed (exit 2): "
    return head + "…" + text[len(text) - (limit - len(head) - 1):]


def read_json(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _prepare_switch(build: Build) -> None:
    """Blocking, before a revision serves: the in-use file kernels lock (see inuse.py)."""
    with contextlib.suppress(FileNotFoundError):  # deleted meanwhile: recording the end answers 404
        with open(os.path.join(build.paths.prefix, IN_USE_FILE), "a"):
            pass
        os.utime(os.path.join(build.paths.prefix, IN_USE_FILE), (0, 0))  # no kernel yet: last use "never" (usage)

