"""Conda through a real server and channel: GET .../packages marks (requested from the match specs and the
pip sub-list, base, required_by from conda-meta and dist-info), and a base package that no channel has is
named as the always-installed package (issues 23.1 and 24)."""
from test_conda import env_yaml


async def test_conda_packages_are_marked(api, conda_channel):
    packages = env_yaml("envmgr-conda-demo=1.0", pip=["IPyKernel"])
    await api.create({"name": "conda-marked", "manager": "conda", "python": "3.11", "packages": packages})
    record = await api.wait("conda-marked")
    assert record["status"] == "ready", record["message"]
    listed = {p["name"]: p for p in (await api.ok("GET", "environments/conda-marked/packages"))["packages"]}
    assert {n for n, p in listed.items() if p["requested"]} == {"envmgr-conda-demo", "ipykernel"}
    assert {n for n, p in listed.items() if p["base"]} == {"python", "ipykernel"}
    assert listed["envmgr-conda-data"]["required_by"] == ["envmgr-conda-demo"]  # conda-meta depends
    assert "envmgr-conda-demo" in listed["python"]["required_by"]
    assert "ipykernel" in listed["traitlets"]["required_by"]  # dist-info Requires-Dist of the pip sub-list
    assert all(isinstance(p["required_by"], list) for p in listed.values())


async def test_a_base_package_missing_from_the_channel_is_named_as_one(api, conda_channel):
    """The test channel has no ipykernel: a file that does not list it gets it as a base package, and fails so."""
    await api.create({"name": "conda-no-base", "manager": "conda", "python": "3.11",
                      "packages": env_yaml("envmgr-conda-demo=1.0")})
    record = await api.wait("conda-no-base")
    message = record["message"]
    assert record["status"] == "failed", record
    assert message.startswith("ipykernel is not on the conda channels") and "always installed" in message, message
    assert "c.EnvManagerApp.base_packages" in message and "under 'pip:'" in message, message
    assert "check that name and version in environment.yaml" not in message, message
    assert len(message) <= 300
