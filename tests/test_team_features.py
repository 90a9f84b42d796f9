"""What data teams expect: presets, base packages, init scripts, source installs, sharing, scopes, housekeeping."""
import asyncio
import json
import os
import subprocess
import sys

import pytest

from helpers import make_wheel
from jupyter_server.auth.identity import IdentityProvider, User

from jupyter_envmgr.auth import NamespaceAuthorizer

PRESETS = [{"name": "demo-set", "manager": "pip", "packages": "envmgr-demo-pkg\nenvmgr-extra-pkg\n"}]


def cli(server, *args):
    return subprocess.run([sys.executable, "-m", "jupyter_envmgr.cli", "--url", f"http://127.0.0.1:{server.port}/",
                           "--token", server.token, *args], capture_output=True, text=True, timeout=300)


def test_presets_merge_without_duplicates_and_base_packages_apart(servers, local_index):
    server = servers("presets", presets=PRESETS)
    info = server.client.info()
    assert info["presets"] == PRESETS and info["base_packages"]["pip"] == ["ipykernel"]
    made = cli(server, "create", "preset-env", "envmgr-demo-pkg==2.0", "--preset", "demo-set", "--index-url", local_index.url, "--wait")
    assert made.returncode == 0, made.stderr
    record = server.client.get("preset-env")
    assert record["packages"] == "envmgr-demo-pkg==2.0\nenvmgr-extra-pkg\n"  # the request's pin wins, no duplicate
    assert record["base_packages"] == ["ipykernel"] and "ipykernel" not in record["packages"]
    unknown = cli(server, "create", "x-env", "--preset", "nope")
    assert unknown.returncode == 1 and "demo-set" in unknown.stderr


@pytest.mark.parametrize("envmgr_overrides", [{"rerun_init_script": False}])
async def test_init_script_runs_once_when_rebuilds_reuse_it(api):
    script = (
        "import os\n"
        "res = os.environ['ENVMGR_RESOURCES_DIR']\n"
        "open(os.path.join(res, 'runs.txt'), 'a').write('run\\n')\n"
        "open(os.environ['ENVMGR_ENV_FILE'], 'w').write(f'TORCH_HOME={res}/torch\\n')\n"
    )
    await api.create({"name": "init-once", "packages": "", "init_script": script})
    record = await api.wait("init-once")
    assert record["status"] == "ready", record["message"]
    await api.ok("POST", "environments/init-once/actions", {"action": "rebuild"}, expect=(202,))
    assert (await api.wait("init-once"))["ready_revision"] == 2
    out = await api.run("envmgr-init-once", "import os; print(os.environ['TORCH_HOME']); print(open(os.path.join(os.path.dirname(os.environ['TORCH_HOME']), 'runs.txt')).read().count('run'))")
    home, runs = out.split()
    assert home.endswith("/resources/torch") and runs == "1"


@pytest.fixture
def source_dir(tmp_path):
    allowed = tmp_path / "sources"
    (allowed / "envmgr-editable").mkdir(parents=True)
    name, data = make_wheel("envmgr-local-pkg", "4.2")
    (allowed / name).write_bytes(data)
    project = allowed / "envmgr-editable"
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n'
        '[project]\nname = "envmgr-editable"\nversion = "0.1"\n'
        '[tool.hatch.build.targets.wheel]\npackages = ["envmgr_editable"]\n'
    )
    (project / "envmgr_editable").mkdir()
    (project / "envmgr_editable" / "__init__.py").write_text("WHERE = __file__\n")
    return allowed, allowed / name, project


@pytest.fixture
def envmgr_overrides(request, tmp_path):
    return getattr(request, "param", {}) or ({"allowed_source_dirs": [str(tmp_path / "sources")]} if "source" in request.node.name else {})


async def test_source_install_archive_and_editable(api, source_dir, tmp_path):
    allowed, wheel, project = source_dir
    outside = tmp_path / "elsewhere.whl"
    outside.write_bytes(wheel.read_bytes())
    status, data = await api.call("POST", "environments", {"name": "src-bad", "packages": f"{outside}\n"})
    assert status == 403 and "allowed_source_dirs" in data["message"]
    status, data = await api.call("POST", "environments", {"name": "src-bad", "packages": "-e /etc\n"})
    assert status == 403 and "allowed_source_dirs" in data["message"]
    await api.create({"name": "src-ok", "packages": f"{wheel}\n-e {project}\n"})
    record = await api.wait("src-ok", timeout=300)
    assert record["status"] == "ready", record["message"]
    out = await api.run("envmgr-src-ok", "import envmgr_local_pkg, envmgr_editable; print(envmgr_local_pkg.__version__, envmgr_editable.WHERE)")
    version, where = out.split()
    assert version == "4.2" and where.startswith(str(project))  # editable: imported from the source dir


async def test_clone_keeps_inputs_and_owner_is_the_user(api, local_index):
    secret = local_index.url.replace("http://", "http://u:hidden@")
    await api.create({"name": "original", "packages": "envmgr-demo-pkg\n", "index_urls": [secret], "labels": {"k": "v"}})
    await api.wait("original")
    me = "alice"
    assert (await api.get("original"))["owner"] == me
    clone = await api.ok("POST", "environments/original/actions", {"action": "clone", "name": "copied"}, expect=(202,))
    assert clone["name"] == "copied" and clone["labels"] == {"k": "v"} and clone["owner"] == me
    record = await api.wait("copied")
    assert record["status"] == "ready", record["message"]  # the credentials came along, unredacted inside
    assert "hidden" not in json.dumps(record)
    status, data = await api.call("POST", "environments/original/actions", {"action": "clone", "name": "copied"})
    assert status == 409


class Alice(IdentityProvider):
    """Token-authenticated requests are alice, of group analysts (as an identity provider such as JupyterHub's says)."""

    async def get_user(self, handler):
        user = await super().get_user(handler)
        if user is None:
            return None
        alice = User(username="alice", name="Alice")
        alice.groups = ["analysts"]
        return alice


class Scoped(NamespaceAuthorizer):
    """Write on team-a (by group), read on team-b, nothing on team-c."""


@pytest.fixture
def jp_server_config(envmgr_config, request):
    config = {"ServerApp": {"jpserver_extensions": {"jupyter_envmgr": True}, "identity_provider_class": Alice},
              "EnvManagerApp": envmgr_config}
    if "scopes" in request.node.name:
        envmgr_config["namespaces"] = ["default", "team-a", "team-b", "team-c"]
        config["ServerApp"]["authorizer_class"] = Scoped
        config["Scoped"] = {"namespace_access": {
            "team-a": {"write": ["group:analysts"]}, "team-b": {"read": ["alice"], "write": ["group:admins"]},
            "team-c": {"read": ["someone-else"]},
        }}
    return config


async def test_scopes_limit_what_a_user_sees_and_writes(api, envmgr_root):
    info = await api.ok("GET", "info")
    assert info["namespaces"] == ["default", "team-a", "team-b"]
    await api.create({"name": "mine", "packages": ""}, namespace="team-a")
    assert (await api.wait("mine", namespace="team-a"))["kernel_name"] == "envmgr-team-a.mine"
    assert (await api.call("GET", "environments", namespace="team-b"))[0] == 200
    status, data = await api.call("POST", "environments", {"name": "theirs", "packages": ""}, namespace="team-b")
    assert status == 403 and "team-b" in data["message"]
    status, data = await api.call("POST", "environments", {"name": "theirs", "packages": "", "namespace": "team-b"})
    assert status == 403
    assert (await api.call("GET", "environments", namespace="team-c"))[0] == 403
    assert (await api.call("GET", "environments/mine", namespace="team-c"))[0] == 403
    assert (await api.call("DELETE", "environments/mine", namespace="team-b"))[0] == 403
    assert not os.path.exists(os.path.join(envmgr_root, "envs", "team-b", "theirs"))


def test_gc_keeps_what_kernels_use(servers, local_index):
    server = servers("gc", keep_revisions=10, gc_interval=0)
    client = server.client
    client.create({"name": "busy", "packages": "envmgr-demo-pkg==1.0\n", "index_urls": [local_index.url]})
    assert client.wait("busy", timeout=180)["status"] == "ready"
    for version in ("2.0", "1.0"):
        client.update("busy", {"packages": f"envmgr-demo-pkg=={version}\n"})
        assert client.wait("busy", timeout=180)["status"] == "ready"
    client.update("busy", {"packages": "envmgr-no-such-package-for-gc\n"})
    assert client.wait("busy", timeout=180)["status"] == "failed"
    env_dir = os.path.join(servers.root, "envs", "default", "busy")
    os.makedirs(os.path.join(env_dir, "rev-0099", "bin"))  # an orphan, as a crash could leave

    async def scenario():
        async with client.kernel("envmgr-busy") as kernel:
            before = await kernel.execute("import envmgr_demo_pkg; print(envmgr_demo_pkg.__version__)")
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "jupyter_envmgr.cli", "gc", "--root", servers.root, "--keep", "1",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await proc.communicate()
            after = await kernel.execute("import json, envmgr_demo_pkg; print(envmgr_demo_pkg.__version__)")
            return proc.returncode, out.decode(), err.decode(), before, after

    code, out, err, before, after = asyncio.run(scenario())
    assert code == 0, err
    assert before.strip() == after.strip() == "1.0"  # the running kernel did not notice
    assert "removed orphan" in out and "freed" in out
    kept = sorted(d for d in os.listdir(env_dir) if d.startswith("rev-"))
    assert kept == ["rev-0003"]  # the ready one; the failed 4 left no prefix; 1, 2 and the orphan went
    assert [r["revision"] for r in client.revisions("busy")] == [3, 4]
    assert os.readlink(os.path.join(env_dir, "current")) == "rev-0003"
    assert asyncio.run(client.run_code("envmgr-busy", "import envmgr_demo_pkg; print(envmgr_demo_pkg.__version__)")).strip() == "1.0"


@pytest.mark.parametrize("envmgr_overrides", [{"gc_interval": 0.5}])
async def test_scheduled_gc_removes_orphans(api, envmgr_root):
    await api.create({"name": "tidy", "packages": ""})
    assert (await api.wait("tidy"))["status"] == "ready"
    env_dir = os.path.join(envmgr_root, "envs", "default", "tidy")
    orphan = os.path.join(env_dir, "rev-0042")
    os.makedirs(os.path.join(orphan, "bin"))
    for _ in range(600):  # a pass also prunes the tests' shared uv cache: seconds on a busy machine
        if not os.path.exists(orphan):
            break
        await asyncio.sleep(0.1)
    assert not os.path.exists(orphan)
    assert os.path.isdir(os.path.join(env_dir, "rev-0001"))  # the ready one stays
    out = await api.run("envmgr-tidy", "print('still fine')")
    assert out.strip() == "still fine"
