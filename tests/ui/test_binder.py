"""binder/example-environment.json is an environment definition this server accepts as it is."""
import json
import pathlib
import urllib.request

import pytest

pytestmark = pytest.mark.ui

EXAMPLE = pathlib.Path(__file__).parents[2] / "binder" / "example-environment.json"


def call(lab, method, path, body=None):
    request = urllib.request.Request(
        lab.url + "envmgr/api/" + path, method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"token {lab.token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.read()


def test_binder_example_is_accepted(lab):
    spec = json.loads(EXAMPLE.read_text())
    status, body = call(lab, "POST", "environments", spec)
    assert status == 202
    assert json.loads(body)["labels"] == spec["labels"]
    assert call(lab, "DELETE", f"environments/{spec['name']}")[0] == 204
