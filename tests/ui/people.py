"""Two people on one `jupyter lab` for the browser tests of requests, loaded by the server subprocess
(tests/ui is on its PYTHONPATH): the server's token is walt, who may write namespaces default and team;
$ENVMGR_TEST_READER_TOKEN is rita, who may only read them, given as the token of a request or as the
cookie `envmgr-test-person` (JupyterLab sends the server's token from its page config with every
request, so a browser is told apart by its cookie, as a hub tells users apart)."""
import os

from jupyter_server.auth.identity import IdentityProvider, User
from traitlets import default

from jupyter_envmgr.auth import NamespaceAuthorizer


class TwoPeople(IdentityProvider):
    async def get_user_token(self, handler):
        reader = os.environ["ENVMGR_TEST_READER_TOKEN"]
        if reader in (self.get_token(handler), handler.get_cookie("envmgr-test-person")):
            return User(username="rita", name="Rita")
        user = await super().get_user_token(handler)
        return None if user is None else User(username="walt", name="Walt")


class TeamAccess(NamespaceAuthorizer):
    @default("namespace_access")
    def _team(self):
        return {"default": {"read": ["*"], "write": ["walt"]}, "team": {"read": ["rita"], "write": ["walt"]}}
