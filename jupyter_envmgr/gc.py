"""Housekeeping on the root: old revisions, orphan prefixes, crash leftovers, trash and unused cache.

Never touches what a kernel may use: the serving revision, the revision `current` points at, a
revision being built, or one a running kernel holds (`inuse.py`). Record changes go through
`records.py`; files go to trash/ first and are removed in a worker thread. Run by the server on a
schedule (c.EnvManagerApp.gc_interval) and on demand (`jupyter envmgr gc`); it reports what it freed.
"""
from __future__ import annotations

import contextlib
import os
import re
import subprocess
from dataclasses import dataclass, field
from typing import Iterable, Optional

from . import bytecode, lifecycle
from .errors import EnvmgrError
from .inuse import in_use
from .records import Records
from .store import Store

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


def protected(store: Store, namespace: str, record: dict) -> set:
    """Revision numbers a kernel or a build may be using (blocking: reads the link and in-use locks)."""
    keep = {record.get("ready_revision"), record.get("revision") if lifecycle.is_active(record.get("status")) else None}
    keep |= {r["revision"] for r in record.get("revisions", []) if lifecycle.is_active(r.get("status"))}
    link = store.current_link(namespace, record["name"])
    with contextlib.suppress(OSError):
        m = REV_RE.match(os.readlink(link))
        if m:
            keep.add(int(m[1]))
    keep |= {r["revision"] for r in record.get("revisions", [])
             if in_use(store.prefix(namespace, record["name"], r["revision"]))}
    return {n for n in keep if n}


def revisions_to_prune(store: Store, namespace: str, record: dict, keep: int) -> list:
    """All but the newest `keep` revisions, less the protected ones (blocking)."""
    safe = protected(store, namespace, record)
    numbers = sorted((r["revision"] for r in record.get("revisions", [])), reverse=True)
    return [n for i, n in enumerate(numbers) if i >= max(1, keep) and n not in safe]


def trash_revision_files(store: Store, namespace: str, name: str, number: int) -> None:
    """Rename a revision's prefix, build dir and log into trash/ (blocking, cheap: renames only)."""
    for path in (store.prefix(namespace, name, number), store.build_dir(namespace, name, number),
                 store.log_path(namespace, name, number)):
        with contextlib.suppress(EnvmgrError):
            store.to_trash(path, f"{namespace}.{name}.{os.path.basename(path)}")


async def prune_revisions(records: Records, namespace: str, name: str, keep: int) -> list:
    """Drop old revisions from the record (through `records`), then their files into trash/."""
    store = records.store
    record = await records.read_for_change(namespace, name)
    numbers = await records.run(revisions_to_prune, store, namespace, record, keep)
    if not numbers:
        return []
    await records.apply(namespace, name, lifecycle.pruned, numbers)
    for number in numbers:
        await records.run(trash_revision_files, store, namespace, name, number)
    return numbers


def orphan_paths(store: Store, namespace: str, record: dict) -> list:
    """Revision dirs, build dirs and logs that the record no longer lists (and nothing protects)."""
    listed = {r["revision"] for r in record.get("revisions", [])} | protected(store, namespace, record)
    env_dir = store.env_dir(namespace, record["name"])
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


async def collect(records: Records, keep_revisions: int, uv: Optional[str] = None, uv_cache_dirs: Iterable[str] = (),
                  min_age: float = 600, bytecode_cache_dirs: Iterable[str] = ()) -> Report:
    """One pass of housekeeping over every root; every blocking part runs in the records' worker threads.
    The cache dirs: one per root."""
    store = records.store
    report = Report()
    for namespace in await records.run(store.namespaces_on_disk):
        await records.run(store.sweep, namespace, min_age)
        for record in await records.list(namespace):
            name = record["name"]
            if record.get("damaged"):
                continue  # only a DELETE removes a damaged entry
            try:
                dropped = await prune_revisions(records, namespace, name, keep_revisions)
                report.revisions += [f"{namespace}/{name} revision {n}" for n in dropped]
                record = await records.read_for_change(namespace, name)
                for path in await records.run(orphan_paths, store, namespace, record):
                    await records.run(store.to_trash, path, f"{namespace}.{name}.orphan")
                    report.orphans.append(path)
            except EnvmgrError:  # deleted or busy meanwhile: next time
                continue
    # What this pass (and earlier deletes) put into the trash/ of every root.
    report.freed_bytes = sum([await records.run(size_of, store.trash_dir_of(root)) for root in store.all_roots])
    await records.empty_trash()
    for cache in uv_cache_dirs if uv else ():
        report.cache_bytes += await records.run(prune_cache, uv, cache)
    for cache in bytecode_cache_dirs:  # after uv's prune: bytecode of sources it dropped goes too
        report.cache_bytes += await records.run(bytecode.prune, cache)
    report.freed_bytes += report.cache_bytes
    return report
