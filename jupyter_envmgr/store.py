"""Records on shared storage: one env.json per environment, revisions beside it.

Layout (DESIGN.md): <root>/envs/<namespace>/<name>/{env.json, rev-N/, current -> rev-N, logs/rev-N.log, builds/rev-N/}.
Writes are atomic (temp + fsync + rename); a name is claimed by renaming a fully written
staging directory into place, so two servers on one root can never both create it.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import time
import uuid
from typing import Callable, Iterator, Optional

from .errors import conflict, not_found

RECORD = "env.json"


def atomic_write(path: str, data: bytes | str, mode: int = 0o644) -> None:
    """Write a file so that readers see the old or the new content, never a part."""
    if isinstance(data, str):
        data = data.encode()
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
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


class Store:
    def __init__(self, root: str):
        self.root = os.path.abspath(root)

    # ------------------------------------------------------------ paths

    def envs_dir(self, namespace: str) -> str:
        return os.path.join(self.root, "envs", namespace)

    def env_dir(self, namespace: str, name: str) -> str:
        return os.path.join(self.envs_dir(namespace), name)

    def record_path(self, namespace: str, name: str) -> str:
        return os.path.join(self.env_dir(namespace, name), RECORD)

    def prefix(self, namespace: str, name: str, revision: int) -> str:
        return os.path.join(self.env_dir(namespace, name), f"rev-{revision:04d}")

    def current_link(self, namespace: str, name: str) -> str:
        return os.path.join(self.env_dir(namespace, name), "current")

    def log_path(self, namespace: str, name: str, revision: int) -> str:
        return os.path.join(self.env_dir(namespace, name), "logs", f"rev-{revision:04d}.log")

    def build_dir(self, namespace: str, name: str, revision: int) -> str:
        return os.path.join(self.env_dir(namespace, name), "builds", f"rev-{revision:04d}")

    def resources_dir(self, namespace: str, name: str) -> str:
        return os.path.join(self.env_dir(namespace, name), "resources")

    @property
    def cache_dir(self) -> str:
        return os.path.join(self.root, "cache")

    # ------------------------------------------------------------ records

    def ensure_layout(self, namespaces) -> None:
        for ns in namespaces:
            os.makedirs(self.envs_dir(ns), exist_ok=True)
        os.makedirs(self.cache_dir, exist_ok=True)

    def create(self, namespace: str, name: str, record: dict) -> None:
        """Claim `name` with a complete record, or raise 409 if anybody has it."""
        parent = self.envs_dir(namespace)
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(dir=parent, prefix=".staging-")
        try:
            for sub in ("logs", "builds", "resources"):
                os.mkdir(os.path.join(staging, sub))
            atomic_write(os.path.join(staging, RECORD), _dumps(record))
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
        try:
            with open(self.record_path(namespace, name), "rb") as f:
                return json.loads(f.read())
        except FileNotFoundError:
            raise not_found(name, namespace) from None

    def exists(self, namespace: str, name: str) -> bool:
        return os.path.exists(self.record_path(namespace, name))

    def list(self, namespace: str) -> list:
        directory = self.envs_dir(namespace)
        records = []
        with contextlib.suppress(FileNotFoundError):
            for name in sorted(os.listdir(directory)):
                if name.startswith("."):
                    continue
                with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
                    records.append(self.read(namespace, name))
        return records

    def namespaces_on_disk(self) -> list:
        with contextlib.suppress(FileNotFoundError):
            return sorted(n for n in os.listdir(os.path.join(self.root, "envs")) if not n.startswith("."))
        return []

    @contextlib.contextmanager
    def locked(self, namespace: str, name: str) -> Iterator[None]:
        """An exclusive lock on one environment, held across servers sharing the root (flock)."""
        path = os.path.join(self.env_dir(namespace, name), "logs", ".lock")
        try:
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        except FileNotFoundError:
            raise not_found(name, namespace) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def update(self, namespace: str, name: str, change: Callable[[dict], Optional[dict]]) -> dict:
        """Read-modify-write a record under its lock; `change` edits the dict in place."""
        with self.locked(namespace, name):
            record = self.read(namespace, name)
            change(record)
            atomic_write(self.record_path(namespace, name), _dumps(record))
            return record

    def remove(self, namespace: str, name: str) -> None:
        """Remove an environment: rename it out of the way first so it vanishes from listings at once."""
        path = self.env_dir(namespace, name)
        trash = os.path.join(self.envs_dir(namespace), f".deleted-{name}-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(path, trash)
        except FileNotFoundError:
            raise not_found(name, namespace) from None
        shutil.rmtree(trash, ignore_errors=True)

    def sweep(self, namespace: str, min_age: float = 600) -> None:
        """Finish what a crash interrupted: half-created staging dirs and half-removed envs.

        Only entries older than `min_age` seconds go, so a create in flight on another server is safe.
        """
        directory = self.envs_dir(namespace)
        with contextlib.suppress(FileNotFoundError):
            for entry in os.listdir(directory):
                path = os.path.join(directory, entry)
                if entry.startswith((".staging-", ".deleted-")) and time.time() - os.path.getmtime(path) > min_age:
                    shutil.rmtree(path, ignore_errors=True)


def _dumps(record: dict) -> str:
    return json.dumps(record, indent=2, sort_keys=True) + "\n"
