"""Issue 24: a base package (always installed, never written by the user) that no channel or index has is named as
such, with what to do, instead of "check environment.yaml" for a package the user never wrote."""
import json
import os
import subprocess
import sys

from jupyter_envmgr import runner
from jupyter_envmgr.conda import CondaSettings, check
from jupyter_envmgr.policy import Policy
from jupyter_envmgr.recipes import BuildPaths, RecipeBook, Toolchain
from jupyter_envmgr.spec import EnvSpec

from test_messages import UV, one_line, venv  # noqa: F401 - venv: a real uv venv, that module's fixture

#: rattler's own words, as a build log has them
CONDA_TAIL = ["error: could not solve the environment:",
              "Cannot solve the request because of: No candidates were found for ipykernel *."]


def test_a_conda_base_package_no_channel_has_is_named_as_one():
    message = one_line(runner.summarize("conda", 1, CONDA_TAIL, ["ipykernel"]))
    assert message.startswith("ipykernel is not on the conda channels; it is always installed"), message
    assert "c.EnvManagerApp.base_packages" in message and "under 'pip:'" in message
    assert "check that name and version in environment.yaml" not in message


def test_a_package_the_file_names_keeps_the_usual_message():
    message = runner.summarize("conda", 1, CONDA_TAIL, [])  # ipykernel listed by the user: their file is at fault
    assert "no conda package matches ipykernel" in message and "environment.yaml" in message
    other = ["error: could not solve the environment:", "Cannot solve the request because of: No candidates were found for numpy *."]
    assert "no conda package matches numpy" in runner.summarize("conda", 1, other, ["python", "ipykernel"])


def test_a_pip_base_package_no_index_has_is_named_as_one(tmp_path, venv, local_index):  # noqa: F811
    """A real uv install through runner.py against a local index without ipykernel, its step carrying `base`."""
    python = os.path.join(venv, "bin", "python")
    plan = {"log": str(tmp_path / "build.log"), "result": str(tmp_path / "result.json"), "timeout": 120,
            "env": {"UV_INDEX_URL": local_index.url, "UV_HTTP_RETRIES": "0", "UV_NO_PROGRESS": "1", "NO_COLOR": "1",
                    "UV_CACHE_DIR": str(tmp_path / "cache"), "VIRTUAL_ENV": ""},
            "steps": [{"name": "install", "argv": [UV, "pip", "install", "--python", python, "envmgr-demo-pkg",
                                                   "ipykernel>=6"], "base": ["ipykernel>=6"]}]}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    subprocess.run([sys.executable, "-I", "-S", runner.__file__, str(tmp_path / "plan.json")], timeout=180)
    result = json.loads((tmp_path / "result.json").read_text())
    message = one_line(result["message"])
    assert result["status"] == "failed" and "not found in the package registry" in (tmp_path / "build.log").read_text()
    assert message.startswith("ipykernel is not on the package indexes; it is always installed"), message
    assert "index_urls" in message and "c.EnvManagerApp.base_packages" in message


def test_recipes_put_on_each_step_the_base_packages_the_spec_does_not_name(tmp_path):
    book = RecipeBook(Toolchain(uv="uv", python_for=str, uv_cache_dir=""), {"pip": ["ipykernel", "pandas>=2"]},
                      policy=Policy())
    paths = BuildPaths(prefix=str(tmp_path / "p"), build_dir=str(tmp_path / "b"), log=None, resources_dir=str(tmp_path))
    steps, _ = book.steps(EnvSpec(name="x", packages="six\nIPyKernel>=6.29\n"), paths)
    install = next(s for s in steps if s.name == "install")
    assert install.base == ["pandas>=2"]  # ipykernel is named by the spec itself

    settings = CondaSettings(channels=["https://host.example/conda-forge"])
    spec = EnvSpec(name="x", manager="conda", python="3.11",
                   packages="dependencies:\n  - numpy\n  - pip:\n    - ipykernel\n")
    assert check(spec, settings, Policy(), ["python", "ipykernel"]).added_base == []  # python is the record's pin
    spec = EnvSpec(name="x", manager="conda", python="", packages="dependencies:\n  - numpy\n")
    assert check(spec, settings, Policy(), ["python", "ipykernel"]).added_base == ["python", "ipykernel"]
