"""`jupyter envmgr service`: the one writer of a team's root, in a process and account of its own.

It is a jupyter_server process that loads only this extension and answers only its routes: the same
handlers, manager and builders as the embedded default. Who calls is decided here, never in a user's
own server: from a JupyterHub token or OAuth cookie (the hub's user name and groups) when the hub
started it or gave it a token, or from the tokens of its own configuration when it runs alone.
Every other jupyter_server resource (kernels, contents, terminals) is refused, so no caller runs
code as the service's account.
"""
from __future__ import annotations

import hmac
import os
import sys
from dataclasses import dataclass, field
from urllib.parse import urlparse

from jupyter_server.auth.identity import IdentityProvider, User
from jupyter_server.serverapp import ServerApp
from tornado import web
from traitlets import Dict, Int, List, Unicode, default

from .auth import RESOURCE_PREFIX, NamespaceAuthorizer

RESOURCE = "envmgr"


@dataclass
class ServiceUser(User):
    """A caller as the service knows it: a hub (or configured) user name and its groups."""

    groups: list = field(default_factory=list)


class ServiceAuthorizer(NamespaceAuthorizer):
    """The service's own rules: envmgr routes by namespace, nothing else at all.

    A namespace that no rule (and no "*" rule) names is readable by every caller and writable by
    none: the service denies by default, where the embedded server trusts its one user."""

    def is_authorized(self, handler, user, action, resource) -> bool:
        if resource == RESOURCE:
            return True
        if not resource.startswith(RESOURCE_PREFIX):
            return False  # kernels, contents, terminals, ... of the service's account: never
        namespace = resource[len(RESOURCE_PREFIX):]
        if namespace not in self.namespace_access and "*" not in self.namespace_access:
            return action == "read"
        return super().is_authorized(handler, user, action, resource)


def _bearer(handler) -> str:
    header = handler.request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() in ("token", "bearer") else ""


class TokenIdentityProvider(IdentityProvider):
    """Standalone: callers present one of the tokens of `c.EnvService.tokens` (Authorization: token T)."""

    need_token = False

    def get_user(self, handler):
        token = _bearer(handler)
        service = self.parent
        if not token:
            return None
        for known, name in service.tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                handler._token_authenticated = True
                groups = sorted(g for g, members in service.groups.items() if name in members)
                return ServiceUser(username=name, name=name, display_name=name, groups=groups)
        return None

    def validate_security(self, app, ssl_options=None):
        if not self.parent.tokens:
            app.log.warning("jupyter envmgr service: no c.EnvService.tokens and no JupyterHub: nobody can call it")


def _hub_identity_provider():
    """JupyterHub's own identity provider for servers (hub token or OAuth cookie, scope check), made to
    answer with the caller's name and groups."""
    from jupyterhub.singleuser.extension import JupyterHubIdentityProvider

    class HubIdentityProvider(JupyterHubIdentityProvider):
        async def get_user(self, handler):
            hub_user = await super().get_user(handler)
            if hub_user is None:
                if _bearer(handler):  # said here, before jupyter_server's xsrf check calls it "_xsrf missing"
                    scope = f"access:services!service={os.environ.get('JUPYTERHUB_SERVICE_NAME', '<name>')}"
                    raise web.HTTPError(403, f"the token is not a JupyterHub token with {scope}: the user needs "
                                             "that scope (a role), and a single-user server's token must ask "
                                             "for it too (the server role or c.Spawner.server_token_scopes)")
                return None
            model = hub_user.hub_user
            return ServiceUser(username=model["name"], name=model["name"], display_name=model["name"],
                               groups=list(model.get("groups") or []))

    return HubIdentityProvider


class EnvService(ServerApp):
    """The environment service: a Jupyter server that holds the root and runs the builds."""

    name = "jupyter-envmgr-service"
    description = __doc__

    tokens = Dict(
        Unicode(), config=True,
        help="""Standalone (no JupyterHub): {token: user name}. A caller presenting `Authorization: token T`
        is that user; a notebook server forwards with c.EnvManagerApp.service_token. Keep the file that
        sets this readable by the service's account only.""",
    )
    groups = Dict(
        List(Unicode()), config=True,
        help="""Standalone: {group: [user names]}, the groups that `group:<name>` in
        c.NamespaceAuthorizer.namespace_access means. With JupyterHub, the hub's groups are used.""",
    )
    umask = Int(
        0o022, config=True,
        help="""The service's umask: what notebook users may do with what it writes on the root. 0o022 (the
        default): everyone may read, only the service writes. 0o027 with the root's directories in a group
        (and setgid): only that group may read. Never writable by notebook users.""",
    )

    @default("config_file_name")
    def _config_file_name(self):
        return "jupyter_server_config"  # the settings a server would read, from the Jupyter config path

    def find_server_extensions(self):
        """This extension only: nothing a server's config enables (JupyterLab, ...) runs in the writer."""
        self.jpserver_extensions = {"jupyter_envmgr": True}

    def init_configurables(self):
        if os.environ.get("JUPYTERHUB_API_TOKEN"):
            self.identity_provider_class = _hub_identity_provider()
        else:
            self.identity_provider_class = TokenIdentityProvider
        self.authorizer_class = ServiceAuthorizer
        self.terminals_enabled = False
        os.umask(self.umask)  # before anything is written: builds inherit it
        super().init_configurables()

    def init_webapp(self):
        super().init_webapp()
        if os.environ.get("JUPYTERHUB_API_TOKEN"):
            # As jupyterhub-singleuser does: the hub's identity provider replaces check_xsrf_cookie with one
            # that tornado would call before the caller is known (so a POST with a valid hub token got
            # "'_xsrf' argument missing"); jupyter_server's prepare() still checks it, after get_user.
            self.web_app.settings["xsrf_cookies"] = False


def hub_settings() -> list:
    """Started by a hub: where to listen and under which prefix, from the environment it gives."""
    args = []
    url = os.environ.get("JUPYTERHUB_SERVICE_URL")
    if url:
        parsed = urlparse(url)
        args += [f"--ServerApp.ip={parsed.hostname or '127.0.0.1'}", f"--ServerApp.port={parsed.port or 80}"]
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX")
    if prefix:
        args.append(f"--ServerApp.base_url={prefix}")
    return args


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    for flag in ("--config", "--ip", "--port"):  # `--config FILE` as well as `--config=FILE`
        if flag in argv and argv.index(flag) + 1 < len(argv):
            i = argv.index(flag)
            argv[i:i + 2] = [f"{flag}={argv[i + 1]}"]
    base = ["--ServerApp.allow_unauthenticated_access=False", "--ServerApp.open_browser=False",
            "--ServerApp.port_retries=0"]
    EnvService.launch_instance(base + hub_settings() + argv)
    return 0
