"""Bytecode compiled once per source file and shared by every revision and environment that links it.

uv and rattler install packages as hard links from one cache on the root's filesystem, so the
`numpy/__init__.py` of two environments is one file (one inode). A timestamp `.pyc` records its source's
mtime and size, and the import system sets the code's file name to the importing path on load, so the
`.pyc` compiled for one link of a source is valid for every other link on the same interpreter (magic
number). The build's bytecode step links each source's `.pyc` from a cache under the root, compiles only
what the cache lacks (the environment's own interpreter, in parallel), then adds what it compiled.

An entry, per interpreter (`<cache tag>-<magic>`) and source file:
  <cache>/<tag>-<magic>/<ino % 256>/<ino>-<size>-<mtime_ns>.py    a hard link to the source itself: it holds
                                                                   the inode, so its number is never reused
                                                                   while the entry exists
  <cache>/<tag>-<magic>/<ino % 256>/<ino>-<size>-<mtime_ns>.pyc   the bytecode
An entry is used only when its `.py` is the very file being compiled (same device and inode) and the
`.pyc` header (magic, timestamp mode, mtime, size) matches that file. Entries are written by link and
rename (atomic; concurrent builds may race, either result is valid). `prune` drops entries whose source
nothing else links any more.

Standard library only: the build runs this file by its path with the environment's own interpreter
(`<prefix>/bin/python -I bytecode.py --help`), so a build image needs nothing of ours (a cluster gets a
content-addressed copy on its volume, like the runner).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time

#: Asked of the environment's interpreter: what names and validates its bytecode, and where packages go.
INFO = ("import importlib.util, json, sys, sysconfig; p = sysconfig.get_paths(); "
        "print(json.dumps([sys.implementation.cache_tag, importlib.util.MAGIC_NUMBER.hex(), p['purelib'], p['platlib']]))")
#: Run by the environment's interpreter on the files it is given (NUL-separated on stdin): timestamp .pyc
#: files (never hash-based, even under SOURCE_DATE_EPOCH), in worker processes when there are many.
COMPILE = """
import concurrent.futures, functools, os, py_compile, sys
files = [f for f in sys.stdin.buffer.read().decode("utf-8", "surrogateescape").split("\\0") if f]
one = functools.partial(py_compile.compile, doraise=False, quiet=1,
                        invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)
if len(files) < 64 or (os.cpu_count() or 1) < 2:
    list(map(one, files))
else:
    with concurrent.futures.ProcessPoolExecutor() as pool:
        list(pool.map(one, files, chunksize=32))
"""
HEADER = 16
_TOKEN = os.urandom(6).hex()  # temp names unique across hosts sharing the root (pids are not)


def _info() -> str:
    """What INFO prints, asked of this interpreter."""
    import io
    from contextlib import redirect_stdout

    out = io.StringIO()
    with redirect_stdout(out):
        exec(INFO, {})
    return out.getvalue()


def header(magic: bytes, st: os.stat_result) -> bytes:
    """The first 16 bytes of a valid timestamp .pyc of a source with these stats (PEP 552, flags 0)."""
    return magic + b"\0\0\0\0" + (int(st.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little") + \
        (st.st_size & 0xFFFFFFFF).to_bytes(4, "little")


def _valid(pyc: str, expected: bytes) -> bool:
    try:
        with open(pyc, "rb") as f:
            return f.read(HEADER) == expected
    except OSError:
        return False


def _link(src: str, dst: str) -> None:
    """`dst` becomes a hard link to `src`, atomically (a reader sees the old file or the new, never none)."""
    try:
        os.link(src, dst)
        return
    except FileExistsError:
        if os.path.samestat(os.stat(src), os.stat(dst)):
            return
    tmp = f"{dst}.{_TOKEN}.tmp"
    try:
        os.link(src, tmp)
        os.replace(tmp, dst)  # a no-op leaving `tmp` when a racing writer linked the same file meanwhile
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


class Cache:
    """The entries of one interpreter under `root` (None: no cache, every file is compiled)."""

    def __init__(self, root, tag: str, magic: bytes):
        self.dir = os.path.join(root, f"{tag}-{magic.hex()}") if root else None
        self.magic = magic

    def entry(self, st: os.stat_result) -> str:
        return os.path.join(self.dir, f"{st.st_ino % 256:02x}", f"{st.st_ino}-{st.st_size}-{st.st_mtime_ns}")

    def lookup(self, st: os.stat_result) -> str:
        """The cached .pyc compiled from the very file `st` describes, or ''."""
        entry = self.entry(st)
        try:
            pin = os.stat(entry + ".py")
        except OSError:
            return ""
        if (pin.st_dev, pin.st_ino) != (st.st_dev, st.st_ino):
            return ""
        return entry + ".pyc" if _valid(entry + ".pyc", header(self.magic, st)) else ""

    def add(self, source: str, st: os.stat_result, pyc: str) -> bool:
        """Put `pyc` (valid for `source`) into the cache: the pin first, then the bytecode."""
        entry = self.entry(st)
        try:
            os.makedirs(os.path.dirname(entry), exist_ok=True)
            _link(source, entry + ".py")
            _link(pyc, entry + ".pyc")
        except OSError:  # another filesystem, a cache we may not write, a file gone meanwhile: not shared
            return False
        return True


def sources(top: str):
    """(path, stat, whether it is the file itself, not a symlink) of each .py under `top`; __pycache__
    and symlinked directories skipped."""
    stack = [top]
    while stack:
        directory = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for e in entries:
            name = e.name
            if name.endswith(".py"):
                try:
                    yield e.path, e.stat(), not e.is_symlink()
                except OSError:
                    continue
            elif name != "__pycache__" and e.is_dir(follow_symlinks=False):
                stack.append(e.path)


def share(python: str, cache_root, dirs=None, log=print) -> dict:
    """Give every .py under `dirs` (default: the interpreter's site-packages) a valid .pyc, from the cache
    where it has one, compiled by `python` where not; then cache what was compiled. Returns counts."""
    if python == sys.executable:  # the environment's own interpreter runs this: ask it in-process
        info = json.loads(_info())
    else:
        info = json.loads(subprocess.run([python, "-I", "-c", INFO], capture_output=True, text=True, check=True,
                                         stdin=subprocess.DEVNULL).stdout)
    tag, magic = info[0], bytes.fromhex(info[1])
    counts = {"linked": 0, "kept": 0, "compiled": 0, "failed": 0, "cached": 0}
    if tag is None:  # an interpreter that writes no bytecode
        return counts
    cache = Cache(cache_root, tag, magic)
    dirs = [d for d in dict.fromkeys(dirs or info[2:]) if os.path.isdir(d)]
    suffix = f".{tag}.pyc"
    made = set()
    missing = []  # (source, stat, pyc, shared)
    for top in dirs:
        for source, st, itself in sources(top):
            folder, name = os.path.split(source)
            pycache = os.path.join(folder, "__pycache__")
            pyc = os.path.join(pycache, name[:-3] + suffix)
            shared = cache.dir is not None and itself and st.st_nlink > 1  # linked from a package cache
            cached = cache.lookup(st) if shared else ""
            if cached:
                if pycache not in made:
                    os.makedirs(pycache, exist_ok=True)
                    made.add(pycache)
                try:
                    _link(cached, pyc)
                    counts["linked"] += 1
                    continue
                except OSError:
                    pass
            if _valid(pyc, header(magic, st)):
                counts["kept"] += 1
                if shared and cache.add(source, st, pyc):
                    counts["cached"] += 1
                continue
            missing.append((source, st, pyc, shared))
    if missing:
        started = time.monotonic()
        subprocess.run([python, "-I", "-c", COMPILE], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       input="\0".join(m[0] for m in missing).encode("utf-8", "surrogateescape"))
        for source, st, pyc, shared in missing:
            if not _valid(pyc, header(magic, st)):
                counts["failed"] += 1  # a file that does not compile (deliberately broken test data)
                continue
            counts["compiled"] += 1
            if shared and cache.add(source, st, pyc):
                counts["cached"] += 1
        log(f"compiled {counts['compiled']} files in {time.monotonic() - started:.1f}s")
    return counts


def prune(cache_root: str) -> int:
    """Drop entries whose source no package cache or environment links any more, and their halves
    left by an interrupted write. Returns the bytes freed."""
    freed = 0
    if not os.path.isdir(cache_root):
        return 0
    for dirpath, _, filenames in os.walk(cache_root):
        names = set(filenames)
        for name in filenames:
            path = os.path.join(dirpath, name)
            if name.endswith(".tmp"):
                stale = _older_than(path, 3600)
            elif name.endswith(".py"):
                stale = _nlink(path) <= 1 or name + "c" not in names
            elif name.endswith(".pyc"):
                stale = name[:-1] not in names or _nlink(os.path.join(dirpath, name[:-1])) <= 1
            else:
                continue
            if stale:
                freed += _remove(path)
    return freed


def _nlink(path: str) -> int:
    try:
        return os.stat(path).st_nlink
    except OSError:
        return 0


def _older_than(path: str, seconds: float) -> bool:
    try:
        return os.stat(path).st_mtime < time.time() - seconds
    except OSError:
        return False


def _remove(path: str) -> int:
    try:
        st = os.stat(path)
        os.unlink(path)
    except OSError:
        return 0
    return st.st_blocks * 512 if st.st_nlink <= 1 else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bytecode.py",
                                     description="Bytecode at build: link cached .pyc files, compile the rest.")
    parser.add_argument("--python", default=sys.executable,
                        help="the environment's interpreter (it compiles, and its magic number keys the cache); "
                             "default: the one running this, which saves asking another")
    parser.add_argument("dirs", nargs="*", help="directories to compile (default: its site-packages)")
    parser.add_argument("--cache", default=None, help="the bytecode cache on the root's filesystem (none: compile all)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    counts = share(args.python, args.cache, args.dirs)
    print(f"bytecode: {counts['linked']} linked from the cache, {counts['compiled']} compiled, "
          f"{counts['kept']} already there, {counts['failed']} not compilable (imported from source), "
          f"{counts['cached']} added to the cache, in {time.monotonic() - started:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
