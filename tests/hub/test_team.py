"""The team case on a real JupyterHub (issue 22)."""
import pytest

import hubkit

pytestmark = pytest.mark.slow


def test_hub_smoke(hub):
    for user in hubkit.USERS:
        info = hub.client(user).info()
        print(user, info.get("service"))
    print(hub.service_client("bob").info())
