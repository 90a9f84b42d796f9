"""Namespaces as scopes: which users and groups may read or write the environments of a namespace.

A jupyter_server Authorizer, so the decision is the server's own and every route asks it: the
handlers ask about the resource `envmgr:<namespace>` besides `envmgr`. Enable it with

    c.ServerApp.authorizer_class = "jupyter_envmgr.auth.NamespaceAuthorizer"
    c.NamespaceAuthorizer.namespace_access = {
        "team-a": {"read": ["group:analysts"], "write": ["alice"]},
        "*": {"read": ["*"], "write": []},          # every namespace not listed
    }
"""
from __future__ import annotations

from jupyter_server.auth.authorizer import Authorizer
from traitlets import Dict

RESOURCE_PREFIX = "envmgr:"


def scope(namespace: str) -> str:
    return RESOURCE_PREFIX + namespace


def principals(user) -> set:
    """The names a rule may use for this user: the username, 'group:<g>' for each group, and '*'."""
    names = {"*"}
    username = getattr(user, "username", None) or getattr(user, "name", None)
    if username:
        names.add(username)
    groups = list(getattr(user, "groups", None) or [])
    hub_user = getattr(user, "hub_user", None) or {}
    groups += list(hub_user.get("groups", []) if isinstance(hub_user, dict) else [])
    names.update(f"group:{g}" for g in groups)
    return names


class NamespaceAuthorizer(Authorizer):
    namespace_access = Dict(
        config=True,
        help="""{namespace: {"read": [...], "write": [...]}}; entries are usernames, "group:<name>" or "*".
        Write implies read. The "*" key applies to namespaces not listed; with neither, a namespace is open
        to every user the server lets in. Other resources are not restricted by this authorizer.""",
    )

    def is_authorized(self, handler, user, action, resource) -> bool:
        if not resource.startswith(RESOURCE_PREFIX):
            return True
        namespace = resource[len(RESOURCE_PREFIX):]
        rule = self.namespace_access.get(namespace, self.namespace_access.get("*"))
        if rule is None:
            return True
        who = principals(user)
        writers = set(rule.get("write", []))
        if action == "read":
            return bool(who & (writers | set(rule.get("read", []))))
        return bool(who & writers)
