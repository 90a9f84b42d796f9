"""Housekeeping on the root: old revisions, orphan prefixes, crash leftovers and unused cache entries.

Never touches what a kernel may use: the revision `current` points at, the ready revision, or a
revision being built. Run by the server on a schedule (c.EnvManagerApp.gc_interval) and on demand
(`jupyter envmgr gc`); it reports what it freed.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Optional

from .errors import EnvmgrError
from .store import Store

ACTIVE = ("pending", "warming")
REV_RE = re.compile(r"^rev-(\d+)(\.log)?$")


@dataclass
class Report:
    revisions: list = field(default_factory=list)  # "ns/name rev N" dropped from records
    orphans: list = field(default_factory=list)  # paths removed that no record listed
    cache_bytes: int = 0
    freed_bytes: int = 0

    def to_dict(self) -> dict:
        return {"revisions": self.revisions, "orphans": self.orphans,
                "cache_bytes": self.cache_bytes, "freed_bytes": self.freed_bytes}

    def summary(self) -> str:
        return (f"freed {self.freed_bytes / 1e6:.1f} MB: {len(self.revisions)} old revisions, "
                f"{len(self.orphans)} orphans, {self.cache_bytes / 1e6:.1f} MB of unused cache")


def size_of(path: str) -> int:
    """Bytes under `path`, each inode counted once (hard links into the cache are free)."""
    seen, total = set(), 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(dirpath, name))
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_size
    return total


def protected(record: dict, current_target: Optional[str]) -> set:
    """Revision numbers a kernel or a build may be using."""
    keep = {record.get("ready_revision")}
    if record.get("status") in ACTIVE:
        keep.add(record.get("revision"))
    keep |= {r["revision"] for r in record.get("revisions", []) if r.get("status") in ACTIVE}
    m = REV_RE.match(current_target or "")
    if m:
        keep.add(int(m[1]))
    return {n for n in keep if n}


def prune_revisions(store: Store, namespace: str, name: str, keep: int) -> list:
    """Drop all but the newest `keep` revisions from the record and the disk; returns the numbers."""
    dropped: list = []
    link = store.current_link(namespace, name)

    def apply(record):
        target = os.readlink(link) if os.path.islink(link) else None
        safe = protected(record, target)
        revs = sorted(record.get("revisions", []), key=lambda x: x["revision"], reverse=True)
        kept = [r for i, r in enumerate(revs) if i < max(1, keep) or r["revision"] in safe]
        dropped.extend(r["revision"] for r in revs if r not in kept)
        record["revisions"] = sorted(kept, key=lambda x: x["revision"])

    store.update(namespace, name, apply)
    for number in dropped:
        remove_revision_files(store, namespace, name, number)
    return dropped


def remove_revision_files(store: Store, namespace: str, name: str, number: int) -> None:
    shutil.rmtree(store.prefix(namespace, name, number), ignore_errors=True)
    shutil.rmtree(store.build_dir(namespace, name, number), ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(store.log_path(namespace, name, number))


def orphan_paths(store: Store, namespace: str, name: str) -> list:
    """Revision dirs, build dirs and logs that the record no longer lists (and nothing protects)."""
    record = store.read(namespace, name)
    link = store.current_link(namespace, name)
    listed = {r["revision"] for r in record.get("revisions", [])} | protected(record, os.readlink(link) if os.path.islink(link) else None)
    env_dir = store.env_dir(namespace, name)
    found = []
    for sub in ("", "builds", "logs"):
        directory = os.path.join(env_dir, sub)
        with contextlib.suppress(FileNotFoundError):
            for entry in os.listdir(directory):
                m = REV_RE.match(entry)
                if m and int(m[1]) not in listed and not os.path.islink(os.path.join(directory, entry)):
                    found.append(os.path.join(directory, entry))
    return found


def prune_cache(uv: str, cache_dir: str) -> int:
    """`uv cache prune`: entries no environment links to any more. Returns the bytes freed."""
    if not os.path.isdir(cache_dir):
        return 0
    before = size_of(cache_dir)
    subprocess.run([uv, "cache", "prune"], env=dict(os.environ, UV_CACHE_DIR=cache_dir, NO_COLOR="1"),
                   capture_output=True, timeout=600)
    return max(0, before - size_of(cache_dir))


def collect(store: Store, keep_revisions: int, uv: Optional[str] = None, uv_cache_dir: Optional[str] = None,
            min_age: float = 600) -> Report:
    report = Report()
    for namespace in store.namespaces_on_disk():
        before = size_of(store.envs_dir(namespace))
        store.sweep(namespace, min_age=min_age)
        for record in store.list(namespace):
            name = record["name"]
            try:
                dropped = prune_revisions(store, namespace, name, keep_revisions)
                report.revisions += [f"{namespace}/{name} revision {n}" for n in dropped]
                with store.locked(namespace, name):
                    for path in orphan_paths(store, namespace, name):
                        (shutil.rmtree if os.path.isdir(path) else os.unlink)(path)
                        report.orphans.append(path)
            except EnvmgrError:  # deleted meanwhile
                continue
        report.freed_bytes += max(0, before - size_of(store.envs_dir(namespace)))
    if uv and uv_cache_dir:
        report.cache_bytes = prune_cache(uv, uv_cache_dir)
        report.freed_bytes += report.cache_bytes
    return report
