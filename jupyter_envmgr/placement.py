"""Where a request lands: this server's clusters, the namespaces of each, and the 422s of `?cluster=` and
`?namespace=` (API.md). A namespace belongs to one cluster on a server; its builds and its root are that
cluster's."""
from __future__ import annotations

from typing import Optional

from .errors import invalid


class Placement:
    def __init__(self, clusters: list, default_namespace: str):
        #: [{"name", "namespaces"}], the default cluster first (what GET /info shows).
        self.clusters = clusters
        self.default_namespace = default_namespace
        self._cluster_of = {ns: c["name"] for c in clusters for ns in c["namespaces"]}
        #: Every namespace of every cluster, the default cluster's first.
        self.namespaces = list(self._cluster_of)

    def check_namespace(self, namespace: Optional[str]) -> str:
        namespace = namespace or self.default_namespace
        if not isinstance(namespace, str) or namespace not in self.namespaces:
            raise invalid("namespace", f"{str(namespace)[:64]!r} is not a namespace of this server; use one of {', '.join(self.namespaces)}")
        return namespace

    def check_cluster(self, cluster: Optional[str]) -> str:
        names = [c["name"] for c in self.clusters]
        if cluster in (None, ""):
            return names[0]
        if not isinstance(cluster, str) or cluster not in names:
            raise invalid("cluster", f"{str(cluster)[:64]!r} is not a cluster of this server; use one of {', '.join(names)}")
        return cluster

    def cluster_of(self, namespace: str) -> str:
        """The cluster a namespace belongs to: its builds go there, its root is that cluster's storage."""
        return self._cluster_of.get(namespace, self.clusters[0]["name"])

    def check_place(self, cluster: Optional[str], namespace: Optional[str]) -> str:
        """The namespace of a request's ?cluster= and ?namespace= (or body fields): a cluster without a namespace
        means its first one; a namespace alone, its own cluster; both must agree (422 naming the field)."""
        if cluster in (None, ""):
            return self.check_namespace(namespace)
        cluster = self.check_cluster(cluster)
        offered = next(c["namespaces"] for c in self.clusters if c["name"] == cluster)
        if namespace in (None, ""):
            return offered[0]
        if not isinstance(namespace, str) or namespace not in offered:
            raise invalid("namespace", f"{str(namespace)[:64]!r} is not a namespace of cluster {cluster!r}; "
                                       f"use one of {', '.join(offered)}")
        return namespace
