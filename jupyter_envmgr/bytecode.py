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

Faster still for uv: uv links a wheel by linking every file of its unpacked copy in the package cache
(`archive-v0/<id>/`), so a `.pyc` placed there arrives with the source in every later install, at no cost
of ours. Once a distribution is compiled, its `.pyc` files are linked into its unpacked copy, and a marker
(`<dist-info>/envmgr-bytecode-<tag>-<magic>.json`, listing the distribution's top-level directories) goes
last into its dist-info. A later build finds the marker linked into its own dist-info and skips those
directories altogether. A marker counts only as a hard link (a copied install may carry stale bytecode).

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


class Archives:
    """uv's unpacked wheels (`<uv cache>/archive-v0`), which a later install links whole, bytecode included."""

    def __init__(self, root, tag: str, magic: bytes):
        self.root = root if root and os.path.isdir(root) else None
        self.marker = f"envmgr-bytecode-{tag}-{magic.hex()}.json"
        self.suffix = f".{tag}.pyc"
        self.magic = magic
        self._by_metadata = None

    def complete(self, top: str) -> set:
        """Top-level directories under site-packages `top` whose every file came with its bytecode."""
        done, pending = set(), set()
        for dist in _dist_infos(top):
            tops = self._marked(os.path.join(top, dist))
            if tops is None:
                pending.update(_record_tops(os.path.join(top, dist)))
            else:
                done.update(tops)
        return done - pending  # a directory another, uncompiled distribution also fills is walked

    def _marked(self, dist_info: str):
        try:
            with open(os.path.join(dist_info, self.marker)) as f:
                if os.fstat(f.fileno()).st_nlink < 2:
                    return None
                tops = json.load(f)["tops"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return [t for t in tops if isinstance(t, str)]

    def seed(self, top: str) -> int:
        """Link the bytecode of each distribution under `top` into its unpacked wheel, then mark it there.
        Returns how many distributions were marked."""
        if self.root is None:
            return 0
        marked = 0
        for dist in _dist_infos(top):
            if self._marked(os.path.join(top, dist)) is not None:
                continue
            try:
                st = os.stat(os.path.join(top, dist, "METADATA"))
            except OSError:
                continue
            archive = self._archive_of(st) if st.st_nlink > 1 else None
            if archive is not None and self._link_bytecode(archive, top):
                marked += 1
        return marked

    def _archive_of(self, st: os.stat_result):
        """(unpacked wheel dir, its dist-info name) whose METADATA is this very file, or None."""
        if self._by_metadata is None:
            self._by_metadata = {}
            for archive in _scandirs(self.root):
                for dist in _dist_infos(archive):
                    with contextlib.suppress(OSError):
                        meta = os.stat(os.path.join(archive, dist, "METADATA"))
                        self._by_metadata[(meta.st_dev, meta.st_ino)] = (archive, dist)
        return self._by_metadata.get((st.st_dev, st.st_ino))

    def _link_bytecode(self, archive, top: str) -> bool:
        """Every .py of the unpacked wheel gets the .pyc compiled for its link under `top`; then the marker.
        False (no marker) when a source there is not the very file installed here, or a link fails."""
        path, dist = archive
        tops = [e.name for e in _scandirs(path) if not e.name.endswith((".dist-info", ".data")) and e.name != "__pycache__"]
        try:
            for name in tops:
                for source, st, itself in sources(os.path.join(path, name)):
                    rel = os.path.relpath(source, path)
                    installed = os.path.join(top, rel)
                    if not itself or not os.path.samestat(st, os.stat(installed)):
                        return False
                    folder, base = os.path.split(rel)
                    pyc = os.path.join(top, folder, "__pycache__", base[:-3] + self.suffix)
                    if not _valid(pyc, header(self.magic, st)):
                        continue  # does not compile: imported from source, like here
                    os.makedirs(os.path.join(path, folder, "__pycache__"), exist_ok=True)
                    _link(pyc, os.path.join(path, folder, "__pycache__", base[:-3] + self.suffix))
            self._mark(os.path.join(path, dist), tops)
        except OSError:  # a cache we may not write, a file gone meanwhile: this one stays unmarked
            return False
        return True

    def _mark(self, dist_info: str, tops: list) -> None:
        """The marker, written whole or not at all."""
        tmp = os.path.join(dist_info, f".{self.marker}.{_TOKEN}.tmp")
        try:
            with open(tmp, "w") as f:
                json.dump({"tops": tops}, f)
            os.replace(tmp, os.path.join(dist_info, self.marker))
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _scandirs(path: str) -> list:
    try:
        return [e for e in os.scandir(path) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []


def _dist_infos(path: str) -> list:
    return [e.name for e in _scandirs(path) if e.name.endswith(".dist-info")]


def _record_tops(dist_info: str) -> set:
    """The top-level directories a distribution's RECORD lists (what it installed under site-packages)."""
    tops = set()
    with contextlib.suppress(OSError):
        with open(os.path.join(dist_info, "RECORD"), encoding="utf-8", errors="replace") as f:
            for line in f:
                first = line.split(",", 1)[0].replace("\\", "/").split("/", 1)
                if len(first) == 2 and first[0] not in ("", "..", "."):
                    tops.add(first[0])
    return tops


def sources(top: str, skip=frozenset()):
    """(path, stat, whether it is the file itself, not a symlink) of each .py under `top`; __pycache__,
    symlinked directories and the top-level directories in `skip` left out."""
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
            elif name != "__pycache__" and e.is_dir(follow_symlinks=False) and not (directory == top and name in skip):
                stack.append(e.path)


def share(python: str, cache_root, dirs=None, log=print, archives=None) -> dict:
    """Give every .py under `dirs` (default: the interpreter's site-packages) a valid .pyc, from the cache
    where it has one, compiled by `python` where not; then cache what was compiled, and link it into uv's
    unpacked wheels under `archives` (if given) for later installs. Returns counts."""
    if python == sys.executable:  # the environment's own interpreter runs this: ask it in-process
        info = json.loads(_info())
    else:
        info = json.loads(subprocess.run([python, "-I", "-c", INFO], capture_output=True, text=True, check=True,
                                         stdin=subprocess.DEVNULL).stdout)
    tag, magic = info[0], bytes.fromhex(info[1])
    counts = {"linked": 0, "kept": 0, "compiled": 0, "failed": 0, "cached": 0, "installed": 0, "seeded": 0}
    if tag is None:  # an interpreter that writes no bytecode
        return counts
    cache = Cache(cache_root, tag, magic)
    wheels = Archives(archives, tag, magic)
    dirs = [d for d in dict.fromkeys(dirs or info[2:]) if os.path.isdir(d)]
    suffix = f".{tag}.pyc"
    made = set()
    missing = []  # (source, stat, pyc, shared)
    for top in dirs:
        done = wheels.complete(top)
        counts["installed"] += len(done)
        for source, st, itself in sources(top, done):
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
    counts["seeded"] = sum(wheels.seed(top) for top in dirs)
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
    parser.add_argument("--archives", default=None,
                        help="uv's unpacked wheels (<uv cache>/archive-v0): compiled bytecode is linked in there too")
    args = parser.parse_args(argv)
    started = time.monotonic()
    counts = share(args.python, args.cache, args.dirs, archives=args.archives)
    print(f"bytecode: {counts['installed']} directories installed with theirs, {counts['linked']} files linked "
          f"from the cache, {counts['compiled']} compiled, {counts['kept']} already there, {counts['failed']} not "
          f"compilable (imported from source), {counts['cached']} added to the cache, {counts['seeded']} "
          f"distributions marked in uv's cache, in {time.monotonic() - started:.2f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
