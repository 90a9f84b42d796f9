"""Files shared between revisions: hard-linked re-creates, shared bytecode, and what each revision holds.

A create or rebuild whose resolved lock equals a ready revision's (same namespace, manager, python,
index URLs) needs no install: the ready prefix is copied as hard links, and only the few files that
name the prefix (bin/ scripts, activation scripts) are rewritten. Revisions built by uv already share
their packages' files with the uv cache on the root's filesystem; the bytecode each build compiles is
shared with the previous revision where the source is the very same file. Blocking functions: the
manager runs them in worker threads; `Sharing` is what the manager calls (it never imports the manager).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import stat
import time
from typing import Awaitable, Callable, Iterable, Optional

from . import recipes
from .builders.base import Build
from .inuse import FILE as IN_USE, in_use, last_used
from .lifecycle import Status
from .store import Store, make_dir

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)\s*$")


def pins(text: str) -> Optional[frozenset]:
    """The `name==version` lines of a lock (uv pip compile or freeze output), names normalized.

    None when any requirement is not a plain pin (a URL, a local path, an editable): such a lock does
    not say which files were installed, so it never matches another.
    """
    out = set()
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        m = PIN.match(line)
        if not m:
            return None
        out.add((re.sub(r"[-_.]+", "-", m[1]).lower(), m[2]))
    return frozenset(out) or None


def find_same_lock(wanted: frozenset, candidates: Iterable[tuple]) -> Optional[tuple]:
    """The first (prefix, lock path) among `candidates` whose prefix exists and whose lock has these pins."""
    for prefix, lock in candidates:
        try:
            with open(lock) as f:
                text = f.read()
        except OSError:
            continue
        if pins(text) == wanted and os.path.isfile(os.path.join(prefix, "pyvenv.cfg")):
            return prefix, lock
    return None


def link_copy(src: str, dst: str) -> int:
    """Copy the prefix `src` to `dst` as hard links; files that name `src` are rewritten. Returns files linked.

    `dst` must not exist. The in-use file is not copied (a kernel's lock on `src` must not show on `dst`).
    One `scandir` per directory and one stat per file (who owns it, before it is shared).
    """
    old, new = os.path.abspath(src).encode(), os.path.abspath(dst).encode()
    linked = 0
    os.mkdir(dst)  # never its parent: the environment may have been deleted meanwhile
    todo = [(src, dst, "")]
    while todo:
        source_dir, target_dir, rel = todo.pop()
        with os.scandir(source_dir) as entries:
            for entry in entries:
                target = os.path.join(target_dir, entry.name)
                if entry.is_symlink():
                    _copy_link(entry.path, target, old, new)
                elif entry.is_dir():
                    os.mkdir(target)
                    os.chmod(target, stat.S_IMODE(entry.stat().st_mode))
                    todo.append((entry.path, target, os.path.join(rel, entry.name)))
                elif rel == "" and entry.name == IN_USE:
                    continue
                elif _names_prefix(rel, entry.name) and _rewrite(entry.path, target, old, new):
                    continue
                elif _linkable(entry.stat(follow_symlinks=False)):
                    os.link(entry.path, target)
                    linked += 1
                else:
                    shutil.copy2(entry.path, target)
    return linked


def _linkable(st: os.stat_result) -> bool:
    """A hard link shares a file between revisions: only one this account owns and nobody else may write,
    so no user can change, through their own path to it, a byte that another environment runs."""
    return st.st_uid == os.geteuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _names_prefix(rel: str, name: str) -> bool:
    """Files that may hold the prefix's absolute path: scripts and activation in bin/, the venv config."""
    return rel == "bin" or name == "pyvenv.cfg" or name.endswith(".pth")


def _rewrite(path: str, target: str, old: bytes, new: bytes) -> bool:
    """Write `path` with `old` replaced by `new` when it contains it; False (nothing written) otherwise."""
    with open(path, "rb") as f:
        data = f.read()
    if old not in data:
        return False
    with open(target, "wb") as f:
        f.write(data.replace(old, new))
    shutil.copymode(path, target)
    return True


def _copy_link(path: str, target: str, old: bytes, new: bytes) -> None:
    dest = os.readlink(path)
    os.symlink(dest.replace(old.decode(), new.decode()) if dest.startswith(old.decode()) else dest, target)


def usage(prefixes: dict) -> list:
    """[{"revision", "bytes", "unique_bytes", "files"}] of {revision: prefix}.

    bytes: the disk the revision's files take (each inode once); unique_bytes: what deleting it would
    free (files no other path links: their link count is all inside this revision); files: regular files.
    """
    out = []
    for revision, prefix in sorted(prefixes.items()):
        inodes: dict = {}  # (dev, ino) -> [disk bytes, links seen here, st_nlink]
        files = 0
        for dirpath, dirnames, filenames in os.walk(prefix):
            for name in filenames:
                with contextlib.suppress(OSError):
                    st = os.lstat(os.path.join(dirpath, name))
                    if not stat.S_ISREG(st.st_mode):
                        continue
                    files += 1
                    entry = inodes.setdefault((st.st_dev, st.st_ino), [st.st_blocks * 512, 0, st.st_nlink])
                    entry[1] += 1
        out.append({
            "revision": revision,
            "bytes": sum(e[0] for e in inodes.values()),
            "unique_bytes": sum(e[0] for e in inodes.values() if e[1] >= e[2]),
            "files": files,
        })
    return out


class Sharing:
    """The manager's side of sharing: re-creates as hard-linked copies, bytecode shared after a build, usage.

    `run` runs blocking storage work in the records' worker threads, `fresh` answers the records of a
    namespace (the change feed's scan) and `paths` the paths of a revision: the manager's own, so this
    module needs nothing of the manager.
    """

    def __init__(self, store: Store, recipe_book: "recipes.RecipeBook", run: Callable[..., Awaitable],
                 fresh: Callable[[str], Awaitable[list]], paths: Callable[[str, str, int], "recipes.BuildPaths"],
                 log: logging.Logger):
        self.store = store
        self.recipe_book = recipe_book
        self.run = run
        self.fresh = fresh
        self.paths = paths
        self.log = log

    async def copy_same_lock(self, build: Build) -> bool:
        """A pip revision whose resolved lock equals a ready revision's: a hard-linked copy of it, no install.

        True when the prefix and lock are in place (the manager then records the revision ready); False
        (nothing left behind) and the build goes on as usual when there is no such revision, the spec
        runs an init script, or anything fails. The index is asked (the resolution that decides) while
        uv's cache alone resolves (`--offline`, milliseconds): when that is no ready revision's lock, the
        asking stops and the build installs; when it is, the copy is made meanwhile, so a re-create costs
        about one resolution.
        """
        spec = build.spec
        if spec.manager != "pip" or spec.init_script.strip():
            return False
        if "--hash" in spec.packages:  # hash-pinned: only an install verifies the archives against the hashes
            return False
        started = time.monotonic()
        copying = online = None
        try:
            candidates = await self._same_lock_candidates(build)
            if not candidates:
                return False
            source = await self.run(self._resolve_input, build)
            online = asyncio.ensure_future(self._resolve_lock(build, source))
            guess = await self._resolve_lock(build, source, offline=True)
            found = await self.run(find_same_lock, guess, candidates) if guess else None
            if found is None:  # what the cache resolves to matches no ready revision: install, asking the index once
                online.cancel()
                return False
            copying = asyncio.ensure_future(self.run(link_copy, found[0], build.paths.prefix))
            wanted = await online
            resolved = time.monotonic() - started
            if wanted is None:  # the build will say why; a copy begun meanwhile goes
                raise LookupError("uv pip compile found no resolution")
            if wanted != guess:  # the index has newer releases than the cache knew: install them
                raise LookupError("the index resolves to another lock than the cache")
            linked = await copying
            await self.run(self._copied, build, found, linked, resolved, time.monotonic() - started)
        except Exception as e:  # the copy is a shortcut: any trouble and the build installs as usual
            self.log.warning("envmgr: %s: no hard-linked copy (%s); installing", build.key, e)
            if copying is not None:
                with contextlib.suppress(Exception):
                    await copying
            await self.run(self.store.discard, build.paths.prefix, f"{build.namespace}.{build.name}.reuse")
            return False
        finally:
            if online is not None and not online.done():
                online.cancel()
            if copying is not None and not copying.done():  # a cancelled build: let the copy end before anything else
                with contextlib.suppress(Exception):
                    await asyncio.shield(copying)
        return True

    def _resolve_input(self, build: Build) -> str:
        """Blocking: the judged requirements and the base packages, as the file uv resolves."""
        from .recipes import pip as pip_recipe

        book = self.recipe_book
        text = pip_recipe.judged_requirements(book, build.spec) + "".join(f"{p}\n" for p in book.base_packages.get("pip", []))
        source = os.path.join(build.paths.build_dir, "resolve.in")
        make_dir(build.paths.build_dir)
        with open(source, "w") as f:
            f.write(text)
        return source

    async def _resolve_lock(self, build: Build, source: str, offline: bool = False) -> Optional[frozenset]:
        """The pins `uv pip compile` resolves `source` to (from the cache alone when offline), or None."""
        import uv

        book, spec = self.recipe_book, build.spec
        env = dict(os.environ, **recipes.uv_env(spec, book.tools))
        proc = await asyncio.create_subprocess_exec(
            uv.find_uv_bin(), "pip", "compile", "--python", book.tools.python_for(spec.python), "--no-header",
            "--no-annotate", "--quiet", *(["--offline"] if offline else []), source,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, stdin=asyncio.subprocess.DEVNULL, env=env)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            proc.kill()
            await proc.wait()
            raise
        return pins(out.decode(errors="replace")) if proc.returncode == 0 else None

    async def _same_lock_candidates(self, build: Build) -> list:
        """(prefix, lock) of the ready pip revisions of the namespace with the same python and indexes,
        this environment's own first."""
        spec, own, others = build.spec, [], []
        for record in await self.fresh(build.namespace):
            if (record.get("damaged") or record.get("manager") != "pip" or record.get("python") != spec.python
                    or list(record.get("index_urls") or []) != list(spec.index_urls)):
                continue
            mine = record.get("name") == build.name
            for rev in record.get("revisions", []):
                if rev.get("status") == Status.READY and not (mine and rev["revision"] == build.revision):
                    paths = self.paths(build.namespace, record["name"], rev["revision"])
                    (own if mine else others).append((paths.prefix, paths.lock))
        return own[::-1] + others  # the newest own revision first

    def _copied(self, build: Build, found: tuple, linked: int, resolved: float, took: float) -> None:
        """Blocking: the lock of the copied revision as this one's, and the log saying what happened."""
        source_prefix, source_lock = found
        shutil.copyfile(source_lock, build.paths.lock)
        with open(build.paths.log, "a") as log:
            log.write(f"==> reuse: the resolved lock equals that of {os.path.relpath(source_prefix, self.store.root)}: "
                      f"a hard-linked copy, nothing installed (resolved in {resolved:.2f}s)\n")
            log.write(f"==> done in {took:.2f}s ({linked} files linked)\n")

    def usage(self, namespace: str, name: str, numbers: list) -> tuple:
        """Blocking: (usage of each kept revision, last kernel start or None, revisions a kernel uses)."""
        prefixes = {n: self.store.prefix(namespace, name, n) for n in numbers}
        present = {n: p for n, p in prefixes.items() if os.path.isdir(p)}
        used = [t for t in (last_used(p) for p in present.values()) if t]  # 0: made at the switch, never used
        return usage(present), (max(used) if used else None), sum(1 for p in present.values() if in_use(p))
