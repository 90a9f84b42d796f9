"""Files on shared storage: atomic writes, the exclusive claim of a name, a bounded record lock, delete into trash.

Writes are atomic (temp + fsync + rename); a name is claimed by renaming a fully written staging
directory into place, so two servers on one root can never both create it. Everything here blocks:
`records.py` calls it from worker threads, never from the event loop.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import json
import os
import shutil
import tempfile
import time
import uuid
from typing import Callable, Iterator, Optional

from .errors import EnvmgrError, conflict, not_found
from .layout import RECORD, Layout
from .lifecycle import Status
from .spec import NAME_RE

#: How long a change waits for another thread or server holding the record lock.
LOCK_TIMEOUT = 5.0


def make_dir(path: str) -> None:
    """`path` in a directory that must exist: what a build writes never re-creates an environment that a
    delete renamed away meanwhile (a worker thread goes on after its build is cancelled)."""
    try:
        os.mkdir(path)
    except FileExistsError:
        pass
    except FileNotFoundError:
        raise EnvmgrError(404, "not_found", f"{os.path.dirname(path)} is gone (deleted meanwhile)") from None


@functools.lru_cache(maxsize=None)
def umask() -> int:
    """This process's umask (the service sets its own before anything is written): what others may do
    with what it writes. Read once, from /proc where it can be (os.umask alone cannot read it without
    setting it, a race with the worker threads that write)."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        with open("/proc/self/status") as f:
            return int(next(line for line in f if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def shared_dir_mode() -> int:
    """The mode of a directory readers must enter: what a plain mkdir would give (mkdtemp gives 0700)."""
    return 0o777 & ~umask()


def atomic_write(path: str, data: bytes | str, mode: int = 0o644) -> None:
    """Write a file so that readers see the old or the new content, never a part."""
    if isinstance(data, str):
        data = data.encode()
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        os.fchmod(fd, mode & ~umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_symlink(target: str, link: str) -> None:
    """Point `link` at `target` with a rename, so there is never a moment without a link."""
    tmp = f"{link}.tmp-{uuid.uuid4().hex[:8]}"
    os.symlink(target, tmp)
    os.replace(tmp, link)
    fsync_dir(os.path.dirname(link))


def storage_error(e: OSError, root: str) -> Optional[EnvmgrError]:
    """The API's answer to a storage fault: 507 when full, 503 when read-only or not permitted."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return EnvmgrError(507, "no_space", f"the storage root {root} is full ({e.strerror}); free space or delete "
                                            "environments (jupyter envmgr gc frees old revisions), then retry")
    if e.errno in (errno.EACCES, errno.EPERM) and e.filename and not _readable(os.fsdecode(e.filename)):
        return EnvmgrError(403, "forbidden", f"this server's account (uid {os.geteuid()}) may not read "
                                             f"{os.fsdecode(e.filename)}; ask the environment's owner or an administrator "
                                             "to make the root readable to you (its group and mode), or use the "
                                             "environment service (c.EnvManagerApp.service_url)")
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return EnvmgrError(503, "storage_unavailable", f"the storage root {root} cannot be written ({e.strerror}); "
                                                      "mount it read-write for this server's user, then retry")
    if e.errno in (errno.EIO, errno.ESTALE, errno.ENOTCONN):
        return EnvmgrError(503, "storage_unavailable", f"the storage root {root} is not reachable ({e.strerror}); "
                                                      "check the volume's mount, then retry")
    return None


def _readable(path: str) -> bool:
    """Whether this account may read `path` (or, when it does not exist, enter its nearest existing parent)."""
    while path and not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return os.access(path, os.R_OK | (os.X_OK if os.path.isdir(path) else 0))


def flock_bounded(fd: int, timeout: float, busy_message: str) -> None:
    """Take an exclusive flock, waiting at most `timeout` seconds; then 503 busy with `busy_message`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise EnvmgrError(503, "busy", busy_message) from None
            time.sleep(0.01)


def read_bytes(path: str, offset: int = 0) -> bytes:
    """What a file holds from `offset` on; nothing when it does not exist (yet)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read()
    except FileNotFoundError:
        return b""


class Damaged(Exception):
    """An entry of a namespace whose record cannot be read; `problem` says what is wrong."""

    def __init__(self, problem: str):
        super().__init__(problem)
        self.problem = problem


def secret_mode(has_secrets: bool) -> int:
    """Files that hold index credentials are readable by their owner only."""
    return 0o600 if has_secrets else 0o644


class Store(Layout):
    """Blocking file operations on the root (or the roots, one per cluster); paths come from `Layout`."""

    def __init__(self, root: str, lock_timeout: float = LOCK_TIMEOUT, roots: Optional[dict] = None):
        super().__init__(root, roots)
        self.lock_timeout = lock_timeout

    def ensure_layout(self, namespaces) -> None:
        for ns in namespaces:
            os.makedirs(self.envs_dir(ns), exist_ok=True)
        for root in self.all_roots:
            os.makedirs(self.cache_dir_of(root), exist_ok=True)
            os.makedirs(self.trash_dir_of(root), exist_ok=True)

    def writable(self) -> bool:
        """Whether this account may change the root: each root, or its envs/ where that exists already."""
        for root in self.all_roots:
            envs = os.path.join(root, "envs")
            target = envs if os.path.isdir(envs) else root
            if os.path.isdir(target) and not os.access(target, os.W_OK | os.X_OK):
                return False
        return True

    def create(self, namespace: str, name: str, record: dict, mode: int = 0o644) -> None:
        """Claim `name` with a complete record, or raise 409 if anybody has it."""
        parent = self.envs_dir(namespace)
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(dir=parent, prefix=".staging-")
        try:
            os.chmod(staging, shared_dir_mode())  # becomes the environment's directory: readers enter it
            for sub in ("logs", "builds", "resources"):
                os.mkdir(os.path.join(staging, sub))
            atomic_write(os.path.join(staging, RECORD), _dumps(record), mode)
            try:
                os.rename(staging, self.env_dir(namespace, name))
            except OSError as e:
                if e.errno in (17, 39):  # EEXIST, ENOTEMPTY: the name is taken
                    raise conflict("name_taken", f"an environment named {name!r} already exists in namespace {namespace!r}; pick another name") from None
                raise
            fsync_dir(parent)
        finally:
            if os.path.isdir(staging):
                shutil.rmtree(staging, ignore_errors=True)

    def read(self, namespace: str, name: str) -> dict:
        """The record; 404 when there is no such environment, `Damaged` when its entry is broken."""
        try:
            with open(self.record_path(namespace, name), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            if os.path.isdir(self.env_dir(namespace, name)):
                raise Damaged(f"its directory has no {RECORD}") from None
            raise not_found(name, namespace) from None
        except NotADirectoryError:
            raise not_found(name, namespace) from None
        try:
            record = json.loads(data)
        except (ValueError, RecursionError):
            raise Damaged(f"its {RECORD} is not valid JSON ({len(data)} bytes, truncated or overwritten)") from None
        if not isinstance(record, dict) or not isinstance(record.get("revisions", []), list):
            raise Damaged(f"its {RECORD} does not hold a record (a JSON object)")
        return record

    def checked(self, namespace: str, record: dict) -> dict:
        """The record as the API shows it: failed, saying so, when its serving revision's files are gone."""
        ready = record.get("ready_revision")
        if not isinstance(ready, int) or os.path.isdir(self.prefix(namespace, record["name"], ready)):
            return record
        return dict(record, status=Status.FAILED.value, damaged=True, message=(
            f"damaged storage entry: revision {ready} is missing its files (rev-{ready:04d}); "
            'rebuild it (POST .../actions {"action": "rebuild"}) or delete it'))

    def exists(self, namespace: str, name: str) -> bool:
        return os.path.isdir(self.env_dir(namespace, name))

    def names(self, namespace: str) -> list:
        """Entries of a namespace that can be environments (valid names, directories)."""
        with contextlib.suppress(FileNotFoundError):
            return sorted(e.name for e in os.scandir(self.envs_dir(namespace))
                          if NAME_RE.fullmatch(e.name) and e.is_dir(follow_symlinks=False))
        return []

    def list(self, namespace: str) -> list:
        """Every record of a namespace; damaged entries as failed placeholders (never hidden, never fatal)."""
        records = []
        for name in self.names(namespace):
            try:
                records.append(self.read(namespace, name))
            except Damaged as e:
                records.append(damaged_record(namespace, name, e.problem))
            except EnvmgrError:  # removed meanwhile
                continue
        return records

    def namespaces_on_disk(self) -> list:
        """Namespaces with an envs/ directory under their own root."""
        found = set()
        for root in self.all_roots:
            with contextlib.suppress(FileNotFoundError):
                found.update(n for n in os.listdir(os.path.join(root, "envs"))
                             if not n.startswith(".") and self.root_of(n) == root)
        return sorted(found)

    @contextlib.contextmanager
    def locked(self, namespace: str, name: str) -> Iterator[None]:
        """An exclusive lock on one environment across threads and servers (flock), waited for a bounded time.

        The lock file lives in logs/, which only a claimed environment has: a lock never creates
        the directory of a deleted environment again.
        """
        try:
            fd = os.open(self.lock_path(namespace, name), os.O_CREAT | os.O_RDWR, 0o644)
        except (FileNotFoundError, NotADirectoryError):
            if os.path.isdir(self.env_dir(namespace, name)):
                raise Damaged("its logs/ directory is missing") from None
            raise not_found(name, namespace) from None
        try:
            flock_bounded(fd, self.lock_timeout, f"{name!r} is being changed by another request or server "
                                                 f"(its lock was held for {self.lock_timeout:.0f}s); retry in a moment")
            yield
        finally:
            os.close(fd)

    def update(self, namespace: str, name: str, change: Callable[[dict], dict], mode: Callable[[dict], int] = lambda r: 0o644) -> dict:
        """Read-modify-write a record under its lock; `change` returns the new record."""
        with self.locked(namespace, name):
            record = change(self.read(namespace, name))
            atomic_write(self.record_path(namespace, name), _dumps(record), mode(record))
            return record

    def remove(self, namespace: str, name: str) -> str:
        """Rename an environment into trash/ (it vanishes from listings at once); returns where it went.

        Under the record lock, so no change of another thread or server lands in between; the files
        are removed later, off the event loop (`empty_trash`).
        """
        with contextlib.suppress(Damaged):
            with self.locked(namespace, name):
                return self.to_trash(self.env_dir(namespace, name), f"{namespace}.{name}")
        return self.to_trash(self.env_dir(namespace, name), f"{namespace}.{name}")  # no logs/: nothing can lock it

    def to_trash(self, path: str, label: str) -> str:
        """Rename `path` into the trash/ of its own root (a rename never crosses filesystems)."""
        trash = self.trash_dir_of(self.root_holding(path))
        os.makedirs(trash, exist_ok=True)
        target = os.path.join(trash, f"{label}-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(path, target)
        except FileNotFoundError:
            raise EnvmgrError(404, "not_found", f"{path} is gone") from None
        return target

    def discard(self, path: str, label: str) -> None:
        """Rename `path` into trash/ and remove it at once (a failed or partial prefix); gone already is fine."""
        with contextlib.suppress(EnvmgrError):
            shutil.rmtree(self.to_trash(path, label), ignore_errors=True)

    def empty_trash(self) -> int:
        """Remove what deletes and prunes renamed away; returns the number of entries removed."""
        removed = 0
        for root in self.all_roots:
            with contextlib.suppress(FileNotFoundError):
                for entry in os.scandir(self.trash_dir_of(root)):
                    (shutil.rmtree if entry.is_dir(follow_symlinks=False) else os.unlink)(entry.path)
                    removed += 1
        return removed

    def sweep(self, namespace: str, min_age: float = 600) -> None:
        """Finish what a crash interrupted: half-created staging dirs and half-removed envs.

        Only entries older than `min_age` seconds go, so a create in flight on another server is safe.
        """
        directory = self.envs_dir(namespace)
        with contextlib.suppress(FileNotFoundError):
            for entry in os.listdir(directory):
                path = os.path.join(directory, entry)
                if entry.startswith(".staging-") and time.time() - os.path.getmtime(path) > min_age:
                    shutil.rmtree(path, ignore_errors=True)


def damaged_record(namespace: str, name: str, problem: str) -> dict:
    """What the API shows of an entry whose record cannot be read: failed, saying what is damaged."""
    return {
        "name": name, "namespace": namespace, "manager": None, "python": None, "packages": "", "index_urls": [],
        "description": "", "labels": {}, "annotations": {}, "env_vars": {}, "gpu": 0, "storage": None,
        "status": Status.FAILED.value, "progress": 0.0, "revision": None, "ready_revision": None, "created": None,
        "updated": None, "owner": None, "kernel_name": None, "prefix": None, "damaged": True,
        "message": f"damaged storage entry: {problem}; delete it (DELETE .../environments/{name}) and create it again",
    }


def _dumps(record: dict) -> str:
    return json.dumps(record, indent=2, sort_keys=True) + "\n"
