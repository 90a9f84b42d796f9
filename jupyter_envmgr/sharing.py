"""Files shared between revisions: hard-linked re-creates, shared bytecode, and what each revision holds.

A create or rebuild whose resolved lock equals a ready revision's (same namespace, manager, python,
index URLs) needs no install: the ready prefix is copied as hard links, and only the few files that
name the prefix (bin/ scripts, activation scripts) are rewritten. Revisions built by uv already share
their packages' files with the uv cache on the root's filesystem; the bytecode each build compiles is
shared with the previous revision where the source is the very same file. Blocking functions: the
manager runs them in worker threads.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
from typing import Iterable, Optional

from .inuse import FILE as IN_USE

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
    """
    old, new = os.path.abspath(src).encode(), os.path.abspath(dst).encode()
    linked = 0
    os.makedirs(dst)
    for dirpath, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        target_dir = dst if rel == "." else os.path.join(dst, rel)
        for name in list(dirnames):
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                _copy_link(path, os.path.join(target_dir, name), old, new)
                dirnames.remove(name)
            else:
                os.mkdir(os.path.join(target_dir, name))
                shutil.copymode(path, os.path.join(target_dir, name))
        for name in filenames:
            if rel == "." and name == IN_USE:
                continue
            path, target = os.path.join(dirpath, name), os.path.join(target_dir, name)
            if os.path.islink(path):
                _copy_link(path, target, old, new)
            elif _names_prefix(rel, name) and _rewrite(path, target, old, new):
                pass
            else:
                os.link(path, target)
                linked += 1
    return linked


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


def share_bytecode(prefix: str, others: Iterable[str]) -> int:
    """Replace each .pyc of `prefix` by a hard link to another revision's, where both compiled the very
    same source file (one inode: uv linked both from its cache). Returns the files shared.

    The bytes of two such .pyc differ only in the path recorded at compile time, which the import system
    replaces with the importing path (so tracebacks name the right revision); their header (source
    mtime and size) is the same, so the shared file is valid for both.
    """
    others = [o for o in others if o != prefix and os.path.isdir(o)]
    shared = 0
    if not others:
        return 0
    for dirpath, _, filenames in os.walk(prefix):
        if os.path.basename(dirpath) != "__pycache__":
            continue
        rel = os.path.relpath(dirpath, prefix)
        for name in filenames:
            if not name.endswith(".pyc"):
                continue
            source = os.path.join(os.path.dirname(dirpath), name.split(".", 1)[0] + ".py")
            try:
                mine = os.stat(source)
                pyc_stat = os.stat(os.path.join(dirpath, name))
            except OSError:
                continue
            if pyc_stat.st_nlink > 1:
                continue  # already shared
            for other in others:
                other_pyc = os.path.join(other, rel, name)
                other_source = os.path.join(other, os.path.dirname(rel), os.path.basename(source))
                try:
                    if os.stat(other_source).st_ino != mine.st_ino or not os.path.isfile(other_pyc):
                        continue
                except OSError:
                    continue
                _replace_with_link(other_pyc, os.path.join(dirpath, name))
                shared += 1
                break
    return shared


def _replace_with_link(src: str, path: str) -> None:
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    os.link(src, tmp)
    os.replace(tmp, path)


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
