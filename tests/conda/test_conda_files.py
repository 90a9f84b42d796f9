"""environment.yml files as people write them, built for real against the local channel: conda-lock's extra
keys are ignored with a note in the build log, pip-style extras are dropped as conda drops them, and a file's
python pin decides the python of a request that names none."""
import pytest

from test_conda import read_log


async def test_a_conda_lock_style_file_builds_with_notes_in_the_log(api):
    packages = (
        "name: locked-dev\n"
        "category: dev\n"
        "channels:\n  - envmgr-test-channel\n  - nodefaults\n"
        "dependencies:\n"
        "  - python>=3.11\n"
        "  - envmgr-conda-demo[extra]>=1.0  # pip-style extras in a conda spec\n"
        "  - pip:\n      - ipykernel\n"
        "platforms:\n  - linux-64\n  - osx-arm64\n"
    )
    created = await api.create({"name": "locked-dev", "manager": "conda", "packages": packages})
    assert created["python"].startswith("3.")
    record = await api.wait("locked-dev")
    assert record["status"] == "ready", record["message"]
    log = await read_log(api, "locked-dev")
    assert "note: environment.yaml line 2: key 'category' is ignored" in log
    assert "note: environment.yaml line 11: key 'platforms' is ignored" in log
    assert "is read as 'envmgr-conda-demo>=1.0'" in log and "[extra] is ignored" in log
    out = await api.run("envmgr-locked-dev", "import envmgr_conda_demo, sys; print(sys.version_info[:2])")
    assert out.strip() == str(tuple(int(p) for p in created["python"].split(".")[:2]))


@pytest.mark.parametrize("envmgr_overrides", [{"default_python": "3.11"}])
async def test_a_pin_no_offered_python_meets_is_refused_naming_the_line(api):
    status, data = await api.call("POST", "environments", {
        "name": "too-old", "manager": "conda",
        "packages": "channels:\n  - envmgr-test-channel\ndependencies:\n  - python=3.8\n"})
    assert status == 422 and data["field"] == "packages"
    assert "line 4: 'python=3.8' asks for a Python this server does not offer" in data["message"]
