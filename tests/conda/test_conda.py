"""Conda environments through a real server: py-rattler solves against a real local channel, links into
rev-N, uv adds the pip sub-list, and the kernel runs with what activation gives."""
import asyncio
import json
import os
import time

import pytest

from helpers import unique


def env_yaml(*deps, channels=("envmgr-test-channel",), pip=(), variables=None, name=None) -> str:
    lines = []
    if name:
        lines.append(f"name: {name}")
    if channels:
        lines.append("channels:")
        lines += [f"  - {c}" for c in channels]
    lines.append("dependencies:")
    lines += [f"  - {d}" for d in deps]
    if pip:
        lines.append("  - pip:")
        lines += [f"    - {p}" for p in pip]
    if variables:
        lines.append("variables:")
        lines += [f"  {k}: {v}" for k, v in variables.items()]
    return "\n".join(lines) + "\n"


def env_dirs(root: str) -> list:
    directory = os.path.join(root, "envs", "default")
    return [e for e in os.listdir(directory)] if os.path.isdir(directory) else []


async def read_log(api, name, **params) -> str:
    status, text = await api.call("GET", f"environments/{name}/log", **params)
    assert status == 200
    return text


async def test_conda_environment_lifecycle(api, envmgr_root, conda_channel):
    info = await api.ok("GET", "info")
    assert "conda" in info["managers"]
    assert info["base_packages"]["conda"] == ["python", "ipykernel"]

    packages = env_yaml("envmgr-conda-demo=1.0", pip=["ipykernel"], variables={"ENVMGR_YAML_VAR": "'from-yaml $HOME'"},
                        name="conda-env")
    created = await api.create({"name": "conda-env", "manager": "conda", "python": "3.11", "packages": packages})
    assert created["manager"] == "conda" and created["base_packages"] == ["python", "ipykernel"]
    record = await api.wait("conda-env")
    assert record["status"] == "ready", record["message"]
    assert record["ready_revision"] == 1 and record["progress"] == 1.0 and record["kernel_name"] == "envmgr-conda-env"
    rev1 = os.path.join(envmgr_root, "envs", "default", "conda-env", "rev-0001")
    assert os.readlink(record["prefix"]) == "rev-0001"
    assert os.path.isdir(os.path.join(rev1, "conda-meta"))
    # One package cache on the root: the linked files are hard links of the cache's.
    cached = os.path.join(envmgr_root, "cache", "conda-pkgs", "envmgr-conda-demo-1.0-py_0")
    assert os.path.isdir(cached)
    linked = os.path.join(rev1, "lib", "python3.11", "site-packages", "envmgr_conda_demo", "__init__.py")
    assert os.stat(linked).st_ino == os.stat(os.path.join(cached, "site-packages", "envmgr_conda_demo", "__init__.py")).st_ino

    log = await read_log(api, "conda-env")
    assert "==> [1/4] conda:" in log and "solved in" in log and "envmgr-conda-demo 1.0" in log
    assert "==> [2/4] pip:" in log and "==> [3/4] activate:" in log and "==> [4/4] seal:" in log
    assert "--> activate" in log and "--> lock" in log and "wrote the lock: 3 conda packages" in log
    assert "[envmgr-progress]" in log and "linked 3/3 packages" in log

    # The kernel runs in the prefix, imports the conda package, and has the activation's variables.
    code = ("import envmgr_conda_demo, os, sys, json; print(json.dumps({'v': envmgr_conda_demo.__version__, "
            "'prefix': sys.prefix, 'env': {k: os.environ.get(k) for k in ('ENVMGR_DEMO_HOME', 'ENVMGR_DEMO_FLAG', "
            "'ENVMGR_YAML_VAR', 'CONDA_PREFIX', 'PATH')}}))")
    out = json.loads(await api.run("envmgr-conda-env", code))
    assert out["v"] == "1.0" and out["prefix"] == os.path.join(os.path.dirname(record["prefix"]), "rev-0001")
    env = out["env"]
    assert env["ENVMGR_DEMO_HOME"] == os.path.join(rev1, "share", "envmgr-demo")  # from activate.d
    # variables: → conda-meta/state → the kernel, literally ('$' is not expanded at kernel start)
    assert env["ENVMGR_DEMO_FLAG"] == "on" and env["ENVMGR_YAML_VAR"] == "from-yaml $HOME"
    assert env["CONDA_PREFIX"] == rev1
    assert env["PATH"].startswith(os.path.join(rev1, "bin") + os.pathsep) and env["PATH"] != os.path.join(rev1, "bin") + os.pathsep
    with open(os.path.join(rev1, "conda-meta", "state")) as f:
        assert json.load(f)["env_vars"] == {"ENVMGR_YAML_VAR": "from-yaml $HOME"}

    # Packages: conda ones with their channel, pip ones with "pypi".
    listed = {p["name"]: p for p in (await api.ok("GET", "environments/conda-env/packages"))["packages"]}
    assert listed["envmgr-conda-demo"]["version"] == "1.0" and listed["envmgr-conda-demo"]["source"] == "envmgr-test-channel"
    assert listed["python"]["version"].startswith("3.11.") and listed["python"]["source"] == "envmgr-test-channel"
    assert listed["envmgr-conda-data"]["source"] == "envmgr-test-channel"
    assert listed["ipykernel"]["source"] == "pypi"

    # The export is the explicit lock: every conda package as URL#sha256, then the pip ones.
    status, lock = await api.call("GET", "environments/conda-env/export", format="requirements")
    assert status == 200 and "@EXPLICIT" in lock
    urls = [line for line in lock.splitlines() if line.startswith("http")]
    assert len(urls) == 3 and all("#sha256:" in u for u in urls)
    assert any("/noarch/envmgr-conda-demo-1.0-py_0.tar.bz2#sha256:" in u for u in urls)
    assert any(line.startswith("# pip ipykernel==") for line in lock.splitlines())

    # An update that cannot be solved fails revision 2 with the solver's explanation; revision 1 keeps serving.
    patched = await api.ok("PATCH", "environments/conda-env",
                           {"packages": env_yaml("envmgr-conda-demo=2.0", "envmgr-needs-missing", pip=["ipykernel"])},
                           expect=(202,))
    assert patched["revision"] == 2 and patched["ready_revision"] == 1
    record = await api.wait("conda-env")
    assert record["status"] == "failed" and record["ready_revision"] == 1 and record["revision"] == 2
    assert "envmgr-does-not-exist" in record["message"] and "envmgr-needs-missing" in record["message"], record["message"]
    assert "solve" in record["message"]
    log2 = await read_log(api, "conda-env", revision=2)
    assert "could not solve" in log2 and "envmgr-does-not-exist" in log2
    assert os.readlink(record["prefix"]) == "rev-0001"
    assert not os.path.exists(os.path.join(envmgr_root, "envs", "default", "conda-env", "rev-0002"))
    out = json.loads(await api.run("envmgr-conda-env", code))
    assert out["v"] == "1.0"

    # A good update switches to revision 2 and the kernel follows; the lock changes with it.
    await api.ok("PATCH", "environments/conda-env", {"packages": env_yaml("envmgr-conda-demo=2.0", pip=["ipykernel"])},
                 expect=(202,))
    record = await api.wait("conda-env")
    assert record["status"] == "ready" and record["ready_revision"] == 3, record["message"]
    out = json.loads(await api.run("envmgr-conda-env", code))
    assert out["v"] == "2.0" and out["env"]["CONDA_PREFIX"].endswith("rev-0003")
    assert out["env"]["ENVMGR_YAML_VAR"] is None
    revisions = (await api.ok("GET", "environments/conda-env/revisions"))["revisions"]
    assert [r["status"] for r in revisions] == ["ready", "failed", "ready"]
    assert "envmgr-conda-demo-1.0" in revisions[0]["lock"] and "envmgr-conda-demo-2.0" in revisions[2]["lock"]

    # Rollback brings back revision 1 with its own activation.
    await api.ok("POST", "environments/conda-env/actions", {"action": "rollback", "revision": 1}, expect=(202,))
    out = json.loads(await api.run("envmgr-conda-env", code))
    assert out["v"] == "1.0" and out["env"]["CONDA_PREFIX"] == rev1 and out["env"]["ENVMGR_YAML_VAR"] == "from-yaml $HOME"

    await api.ok("DELETE", "environments/conda-env", expect=(204,))
    specs = json.loads((await api.fetch("api", "kernelspecs", method="GET")).body)["kernelspecs"]
    assert "envmgr-conda-env" not in specs and "conda-env" not in env_dirs(envmgr_root)


async def test_unsatisfiable_create_fails_with_the_solver_explanation(api, envmgr_root):
    name = unique("nosolve")
    await api.create({"name": name, "manager": "conda", "python": "3.11",
                      "packages": env_yaml("envmgr-conda-demo>=99")})
    record = await api.wait(name)
    assert record["status"] == "failed" and record["ready_revision"] is None and record["kernel_name"] is None
    assert "no conda package matches envmgr-conda-demo >=99" in record["message"], record["message"]
    assert "\n" not in record["message"] and len(record["message"]) <= 300  # one line; the log has the rest
    log = await read_log(api, name)
    assert "could not solve the environment" in log and "envmgr-conda-demo" in log
    assert not os.path.exists(os.path.join(envmgr_root, "envs", "default", name, "rev-0001"))


@pytest.mark.parametrize("packages, status, words", [
    (env_yaml("envmgr-conda-demo", channels=["not-allowed-channel"]), 403, ["not-allowed-channel", "conda_channels"]),
    (env_yaml("envmgr-conda-demo", channels=["http://127.0.0.1:9/private"]), 403, ["127.0.0.1:9/private"]),
    (env_yaml("other-channel::envmgr-conda-demo"), 403, ["line 4", "other-channel"]),
    (env_yaml("https://files.example/noarch/x-1.0-0.conda"), 403, ["direct package URLs"]),
    (env_yaml("envmgr-conda-demo", pip=["--index-url http://127.0.0.1:9/simple"]), 403, ["pip sub-list", "option"]),
    (env_yaml("envmgr-conda-demo", pip=["not a requirement!!"]), 422, ["pip sub-list"]),
    ("dependencies:\n  - numpy\n  bad: [\n", 422, ["not valid YAML", "line"]),
    ("dependencies:\n  - numpy>>=2\n", 422, ["line 2", "numpy>>=2", "match spec"]),
    ("dependencies:\n  - python=3.12\n", 422, ["line 2", "python=3.12", "conflicts", "3.11"]),
    ("dependencies:\n  - {conda: [numpy]}\n", 422, ["pip:"]),
    ("- numpy\n", 422, ["mapping"]),
])
async def test_bad_environment_yaml_is_refused_before_anything_is_written(api, envmgr_root, conda_channel,
                                                                           packages, status, words):
    before = list(conda_channel.requests)
    code, body = await api.call("POST", "environments", {"name": "bad-env", "manager": "conda", "python": "3.11",
                                                         "packages": packages})
    assert code == status, body
    assert body["message"].startswith("packages: ")
    for word in words:
        assert word in body["message"], body["message"]
    assert "bad-env" not in env_dirs(envmgr_root)
    assert conda_channel.requests == before  # refused without asking any channel


async def test_patch_to_a_forbidden_channel_is_refused_and_changes_nothing(api, envmgr_root):
    name = unique("patchme")
    good = env_yaml("envmgr-conda-data")
    await api.create({"name": name, "manager": "conda", "python": "3.11", "packages": good})
    record = await api.wait(name)
    # envmgr-conda-data alone: python and ipykernel (a base package) are added; ipykernel is not in the
    # test channel, so the solve names it.
    assert record["status"] == "failed" and "ipykernel" in record["message"], record["message"]
    code, body = await api.call("PATCH", f"environments/{name}", {"packages": env_yaml("x", channels=["elsewhere"])})
    assert code == 403, body
    after = await api.get(name)
    assert after["revision"] == 1 and after["packages"] == good


@pytest.mark.parametrize("envmgr_overrides", [{"conda_solver": "micromamba"}])
async def test_conda_is_offered_only_when_its_solver_is_available(api, monkeypatch):
    # No micromamba on this machine's PATH: the server must not offer conda at all.
    info = await api.ok("GET", "info")
    assert info["managers"] == ["pip"]
    code, body = await api.call("POST", "environments", {"name": "no-conda", "manager": "conda",
                                                         "packages": "dependencies: [numpy]\n"})
    assert code == 422 and body["message"].startswith("manager: "), body


@pytest.mark.parametrize("envmgr_overrides", [{"allowed_conda_channels": ["envmgr-test-channel", "extra-channel"]}])
async def test_allow_list_admits_more_than_the_default_channels(api):
    # extra-channel is allowed (it need not exist to pass validation); an unlisted one is not.
    code, body = await api.call("POST", "environments", {"name": "allowed", "manager": "conda", "python": "3.11",
                                                         "packages": env_yaml("x", channels=["not-listed"])})
    assert code == 403 and "allowed_conda_channels" in body["message"], body
    created = await api.create({"name": "allowed", "manager": "conda", "python": "3.11",
                                "packages": env_yaml("envmgr-conda-demo", channels=["extra-channel"])})
    assert created["status"] in ("pending", "warming")
    record = await api.wait("allowed")
    assert record["status"] == "failed"  # the channel is allowed but is not there: the build says so


async def test_cancel_a_conda_build_mid_download(api, envmgr_root, conda_channel):
    """envmgr-conda-slow trickles out of the channel for 30 s: cancel while it downloads."""
    name = unique("cancel")
    await api.create({"name": name, "manager": "conda", "python": "3.11",
                      "packages": env_yaml("envmgr-conda-slow", pip=["ipykernel"])})
    deadline = time.monotonic() + 60
    while "solved in" not in await read_log(api, name):
        assert time.monotonic() < deadline, await read_log(api, name)
        await asyncio.sleep(0.1)
    record = await api.get(name)
    assert record["status"] == "warming"
    pid = record_pid(api, name)
    await api.ok("POST", f"environments/{name}/actions", {"action": "cancel"}, expect=(202,))
    record = await api.wait(name, timeout=30)
    assert record["status"] == "cancelled" and record["ready_revision"] is None and record["kernel_name"] is None
    assert not os.path.exists(os.path.join(envmgr_root, "envs", "default", name, "rev-0001"))
    assert pid and not alive(pid)


def record_pid(api, name):
    """The pid of the runner of the build, from the revision's handle in the stored record."""
    manager = api.serverapp.web_app.settings["envmgr_manager"]
    raw = manager.store.read("default", name)
    rev = next(r for r in raw["revisions"] if r["revision"] == raw["revision"])
    return (rev.get("handle") or {}).get("pid")


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("envmgr_overrides", [{"default_python": "3.12"}])
async def test_conda_file_pins_python_when_the_request_names_none(api, conda_channel):
    """No `python` in the request: the environment.yaml's pin decides, not the server's default."""
    created = await api.create({"name": "pinned", "manager": "conda", "packages": env_yaml("python=3.11")})
    assert created["python"] == "3.11"
    status, data = await api.call("POST", "environments", {"name": "clash", "manager": "conda", "python": "3.12",
                                                            "packages": env_yaml("python=3.11")})
    assert status == 422 and "python" in data["message"]
