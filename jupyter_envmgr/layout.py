"""Every path of the storage layout (DESIGN.md), pure: no I/O, so any module may use it.

<root>/envs/<namespace>/<name>/{env.json, rev-N/, current -> rev-N, logs/rev-N.log, builds/rev-N/, resources/}
<root>/trash/  <root>/cache/  <root>/jupyter/{kernels,lib}/
<root>/requests/<namespace>/<id>.json (requests for environments, env_requests.py)
"""
from __future__ import annotations

import os

RECORD = "env.json"


def rev_dir_name(revision: int) -> str:
    return f"rev-{revision:04d}"


class Layout:
    def __init__(self, root: str):
        self.root = os.path.abspath(root)

    def envs_dir(self, namespace: str) -> str:
        return os.path.join(self.root, "envs", namespace)

    def env_dir(self, namespace: str, name: str) -> str:
        return os.path.join(self.envs_dir(namespace), name)

    def record_path(self, namespace: str, name: str) -> str:
        return os.path.join(self.env_dir(namespace, name), RECORD)

    def lock_path(self, namespace: str, name: str) -> str:
        return os.path.join(self.env_dir(namespace, name), "logs", ".lock")

    def prefix(self, namespace: str, name: str, revision: int) -> str:
        return os.path.join(self.env_dir(namespace, name), rev_dir_name(revision))

    def current_link(self, namespace: str, name: str) -> str:
        return os.path.join(self.env_dir(namespace, name), "current")

    def log_path(self, namespace: str, name: str, revision: int) -> str:
        return os.path.join(self.env_dir(namespace, name), "logs", f"{rev_dir_name(revision)}.log")

    def build_dir(self, namespace: str, name: str, revision: int) -> str:
        return os.path.join(self.env_dir(namespace, name), "builds", rev_dir_name(revision))

    def resources_dir(self, namespace: str, name: str) -> str:
        return os.path.join(self.env_dir(namespace, name), "resources")

    def in_use_path(self, prefix: str) -> str:
        """A file that each running kernel of a revision holds a shared lock on (see kernels.py)."""
        return os.path.join(prefix, ".envmgr-in-use")

    @property
    def trash_dir(self) -> str:
        return os.path.join(self.root, "trash")

    @property
    def cache_dir(self) -> str:
        return os.path.join(self.root, "cache")

    def requests_dir(self, namespace: str) -> str:
        return os.path.join(self.root, "requests", namespace)

    def request_path(self, namespace: str, request_id: str) -> str:
        return os.path.join(self.requests_dir(namespace), f"{request_id}.json")
