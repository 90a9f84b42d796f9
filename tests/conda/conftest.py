"""Fixtures of the conda tests: a real conda channel made and indexed here, served on 127.0.0.1.

The channel (a `python` package cut from this interpreter, small noarch packages) is built once and
kept between runs under ~/.cache/jupyter-envmgr-tests/conda (or $ENVMGR_TEST_CONDA_CACHE), keyed by
its recipe version and the interpreter; one http server serves it for the whole session.
"""
from __future__ import annotations

import os
import pwd

import pytest

from conda_channel import ChannelServer, cached_channel

# Resolved at import, before pytest-jupyter points $HOME at a temporary dir.
CONDA_CACHE = os.environ.get("ENVMGR_TEST_CONDA_CACHE") or os.path.join(
    pwd.getpwuid(os.getuid()).pw_dir, ".cache", "jupyter-envmgr-tests", "conda"
)
CHANNEL_NAME = "envmgr-test-channel"


@pytest.fixture(scope="session")
def conda_channel():
    """The served test channel: `.url` (full URL), `.alias` (what its name resolves under), `.requests`."""
    os.makedirs(CONDA_CACHE, exist_ok=True)
    server = ChannelServer(cached_channel(CONDA_CACHE))
    server.alias = server.url.rsplit("/", 1)[0]
    server.name = CHANNEL_NAME
    yield server
    server.close()


@pytest.fixture
def envmgr_config(envmgr_config, conda_channel):
    """The server resolves channel names under the test server (a private mirror, as an admin would set)."""
    return {"conda_channel_alias": conda_channel.alias, "conda_channels": [CHANNEL_NAME], **envmgr_config}
