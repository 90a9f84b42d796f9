"""The README is the manual of the configuration: every setting of EnvManagerApp is in it."""
import os

from jupyter_envmgr.app import EnvManagerApp
from jupyter_envmgr.auth import NamespaceAuthorizer
from jupyter_envmgr.service import EnvService

README = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()


def test_every_setting_is_documented():
    from jupyter_server.extension.application import ExtensionApp

    traits = set(EnvManagerApp.class_traits(config=True)) - set(ExtensionApp.class_traits(config=True))
    traits |= set(NamespaceAuthorizer.class_own_traits(config=True))
    traits |= set(EnvService.class_own_traits(config=True))
    missing = sorted(name for name in traits if f"`{name}`" not in README)
    assert not missing, f"settings missing from README.md: {missing}"
