"""Every path of the storage layout (DESIGN.md), pure: no I/O, so any module may use it.

<root>/envs/<namespace>/<name>/{env.json, rev-N/, current -> rev-N, logs/rev-N.log, builds/rev-N/, resources/}
<root>/trash/  <root>/cache/  <root>/jupyter/{kernels,lib}/
<root>/requests/<namespace>/<id>.json (requests for environments, env_requests.py)

A server may have several roots, one per cluster (each cluster's claim is mounted at its own path), and a
namespace belongs to exactly one cluster: `roots` maps each namespace to its root, so every path of an
environment follows from its namespace, and trash/ and cache/ stay on the filesystem of what they hold.
"""
from __future__ import annotations

import os
from typing import Optional

RECORD = "env.json"


def rev_dir_name(revision: int) -> str:
    return f"rev-{revision:04d}"


def namespace_roots(clusters: dict) -> dict:
    """{namespace: root} of {cluster: (root, namespaces)}; a namespace named by two clusters is a ValueError."""
    roots, owner = {}, {}
    for cluster, (root, namespaces) in clusters.items():
        for namespace in namespaces:
            if namespace in owner:
                raise ValueError(f"namespace {namespace!r} is in clusters {owner[namespace]!r} and {cluster!r}; on one "
                                 "server a namespace belongs to one cluster (c.EnvManagerApp.clusters)")
            owner[namespace], roots[namespace] = cluster, os.path.abspath(root)
    return roots


def relocate(path: str, old_root: str, new_root: str) -> str:
    """`path` moved from under `old_root` to the same place under `new_root`; a path elsewhere stays."""
    if not path:
        return path
    rel = os.path.relpath(os.path.abspath(path), old_root)
    return path if rel == ".." or rel.startswith(".." + os.sep) else os.path.normpath(os.path.join(new_root, rel))


class Layout:
    """Paths under `root` (the default namespace's), or under the root `roots` maps a namespace to."""

    def __init__(self, root: str, roots: Optional[dict] = None):
        self.root = os.path.abspath(root)
        self.roots = {ns: os.path.abspath(r) for ns, r in (roots or {}).items()}

    def root_of(self, namespace: str) -> str:
        return self.roots.get(namespace, self.root)

    @property
    def all_roots(self) -> list:
        """Every root, the default first."""
        return list(dict.fromkeys([self.root, *self.roots.values()]))

    def root_holding(self, path: str) -> str:
        """The root `path` lies under (the deepest, when roots nest); the default root for any other path."""
        path = os.path.abspath(path)
        inside = [r for r in self.all_roots if path == r or path.startswith(r.rstrip(os.sep) + os.sep)]
        return max(inside, key=len, default=self.root)

    def root_of_fault(self, e: OSError) -> str:
        """The root a storage fault happened under (its file's), for a message that names the right volume."""
        return self.root_holding(e.filename) if isinstance(e.filename, str) else self.root

    def namespaces_of(self, root: str) -> list:
        """The namespaces whose environments `root` holds (configured ones)."""
        return [ns for ns, r in self.roots.items() if r == root]

    def envs_dir(self, namespace: str) -> str:
        return os.path.join(self.root_of(namespace), "envs", namespace)

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
        return self.trash_dir_of(self.root)

    def trash_dir_of(self, root: str) -> str:
        return os.path.join(root, "trash")

    @property
    def cache_dir(self) -> str:
        return self.cache_dir_of(self.root)

    def cache_dir_of(self, root: str) -> str:
        return os.path.join(root, "cache")

    def kernels_dir_of(self, root: str) -> str:
        """Kernelspecs of the root's environments: every server that mounts the root finds them there."""
        return os.path.join(root, "jupyter", "kernels")

    def lib_dir_of(self, root: str) -> str:
        return os.path.join(root, "jupyter", "lib")

    def requests_dir(self, namespace: str) -> str:
        return os.path.join(self.root_of(namespace), "requests", namespace)

    def request_path(self, namespace: str, request_id: str) -> str:
        return os.path.join(self.requests_dir(namespace), f"{request_id}.json")
