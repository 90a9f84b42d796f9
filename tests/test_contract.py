"""The contract itself: the shipped OpenAPI document matches the served routes; auth guards every route."""
import json
import os
import re

import pytest
import yaml
from jupyter_server.auth.authorizer import Authorizer

import jupyter_envmgr
from jupyter_envmgr.handlers import route_table

OPENAPI = os.path.join(os.path.dirname(jupyter_envmgr.__file__), "openapi.yaml")
DOC = yaml.safe_load(open(OPENAPI))


def served_paths(serverapp) -> dict:
    """Paths as the running server routes them: {"/envmgr/api/...{name}": {methods}}."""
    found = {}

    def walk(rules):
        for rule in rules:
            if hasattr(rule.target, "rules"):
                walk(rule.target.rules)
                continue
            pattern = getattr(rule.matcher, "regex", None)
            if pattern is None or "envmgr/api" not in pattern.pattern:
                continue
            path = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern.pattern.rstrip("$"))
            found[path] = {m for m in ("get", "post", "patch", "delete", "put") if m in rule.target.__dict__}

    walk(serverapp.web_app.default_router.rules)
    return found


def test_openapi_matches_served_routes(jp_serverapp):
    served = served_paths(jp_serverapp)
    documented = {path: {m for m in ops if m in ("get", "post", "patch", "delete", "put")} for path, ops in DOC["paths"].items()}
    # base_url of pytest-jupyter is /a@b/; compare the part after it.
    served = {p[p.index("/envmgr/"):]: m for p, m in served.items()}
    assert served == documented
    assert len(route_table()) == len(documented)


def test_openapi_is_valid_openapi():
    from openapi_spec_validator import validate

    validate(DOC)


async def test_unauthenticated_requests_are_refused(http_server_client, jp_base_url, envmgr_root):
    http = http_server_client  # the test server's client, without the token jp_fetch adds
    base = f"{jp_base_url}envmgr/api/"
    for method, path, body in [
        ("GET", "info", None), ("GET", "environments", None),
        ("POST", "environments", json.dumps({"name": "sneaky", "packages": ""})),
        ("DELETE", "environments/sneaky", None),
    ]:
        resp = await http.fetch(base + path, method=method, body=body, raise_error=False, allow_nonstandard_methods=True)
        assert resp.code == 403, (method, path, resp.code)
    assert not os.path.exists(os.path.join(envmgr_root, "envs", "default", "sneaky"))


class ReadOnlyAuthorizer(Authorizer):
    """Lets everyone read envmgr, nobody write it."""

    def is_authorized(self, handler, user, action, resource):
        return not (resource == "envmgr" and action != "read")


@pytest.fixture
def jp_server_config(envmgr_config):
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_envmgr": True}, "authorizer_class": ReadOnlyAuthorizer},
        "EnvManagerApp": envmgr_config,
    }


async def test_denying_authorizer_refuses_writes(api, envmgr_root):
    assert (await api.call("GET", "environments"))[0] == 200
    status, data = await api.call("POST", "environments", {"name": "nope", "packages": ""})
    assert status == 403 and data["message"]
    assert (await api.call("DELETE", "environments/nope"))[0] == 403
    assert (await api.call("POST", "environments/nope/actions", {"action": "rebuild"}))[0] == 403
    assert not os.path.exists(os.path.join(envmgr_root, "envs", "default", "nope"))
