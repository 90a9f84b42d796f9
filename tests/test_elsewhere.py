"""One environment, many places: `jupyter envmgr run` from a terminal and the `pod-spec` fragment
(elsewhere.py) give a program what the environment's kernels get, on the serving revision."""
import asyncio
import json
import os
import sys

import pytest
import yaml

from jupyter_envmgr import elsewhere

INIT = "import os\nopen(os.environ['ENVMGR_ENV_FILE'], 'w').write('FROM_INIT=set-by-init\\n')\n"
#: Run in the environment: what a training script would check.
PROBE = (
    "import fcntl, json, os, shutil, sys, envmgr_demo_pkg\n"
    "fd = os.open(os.path.join(sys.prefix, '.envmgr-in-use'), os.O_RDONLY)\n"
    "try:\n    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB); pinned = False\n"
    "except BlockingIOError:\n    pinned = True\n"
    "print(json.dumps({'version': envmgr_demo_pkg.__version__, 'prefix': sys.prefix, 'which': shutil.which('python'),\n"
    "                  'pinned': pinned, 'env': {k: os.environ.get(k) for k in ('TRAINING', 'FROM_INIT', 'JUPYTER_ENVMGR_REVISION', 'JUPYTER_ENVMGR_ENVIRONMENT')}}))\n"
    "sys.exit(int(sys.argv[1]))\n"
)


async def cli(*args):
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "jupyter_envmgr.cli", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode, out.decode(), err.decode()


async def test_run_and_pod_spec_use_the_serving_revision_as_kernels_do(api, envmgr_root, local_index, tmp_path):
    await api.create({"name": "trainer", "packages": "envmgr-demo-pkg==2.0\n", "index_urls": [local_index.url],
                      "env_vars": {"TRAINING": "yes"}, "init_script": INIT})
    record = await api.wait("trainer")
    assert record["status"] == "ready", record["message"]
    script = tmp_path / "train.py"
    script.write_text(PROBE)

    code, out, err = await cli("run", "--root", envmgr_root, "trainer", "--", "python", str(script), "7")
    assert code == 7, err  # the command's own exit status
    seen = json.loads(out)
    rev1 = os.path.join(envmgr_root, "envs", "default", "trainer", "rev-0001")
    assert seen["version"] == "2.0"  # a package only the environment has
    assert seen["prefix"] == rev1 and seen["which"] == os.path.join(rev1, "bin", "python")  # pinned, not current/
    assert seen["pinned"]  # GC sees the revision in use while the command runs
    assert seen["env"] == {"TRAINING": "yes", "FROM_INIT": "set-by-init", "JUPYTER_ENVMGR_REVISION": "1",
                           "JUPYTER_ENVMGR_ENVIRONMENT": "default/trainer"}
    code, out, err = await cli("run", "--root", envmgr_root, "trainer", "--", "no-such-command-here")
    assert code == 127 and "no-such-command-here" in err
    code, out, err = await cli("run", "--root", envmgr_root, "nobody", "--", "python", "-V")
    assert code == 1 and "no ready revision" in err

    code, out, err = await cli("pod-spec", "--root", envmgr_root, "--claim", "team-envs", "trainer", "--", "train.py", "--epochs", "3")
    assert code == 0, err
    fragment = yaml.safe_load(out)
    assert fragment["volumes"] == [{"name": "envmgr-root", "persistentVolumeClaim": {"claimName": "team-envs", "readOnly": True}}]
    (container,) = fragment["containers"]
    assert container["volumeMounts"] == [{"name": "envmgr-root", "mountPath": envmgr_root, "readOnly": True}]
    assert container["command"] == [os.path.join(rev1, "bin", "python")] and container["args"] == ["train.py", "--epochs", "3"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["TRAINING"] == "yes" and env["FROM_INIT"] == "set-by-init" and env["JUPYTER_ENVMGR_REVISION"] == "1"
    assert env["PATH"].split(":")[0] == os.path.join(rev1, "bin") and "PYTHONPATH" not in env
    code, out, err = await cli("pod-spec", "--root", envmgr_root, "--json", "trainer")
    local = json.loads(out)  # the local backend: no claim configured, the fragment says which to use
    assert "PersistentVolumeClaim of the storage" in local["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert "hostPath" not in out

    code, out, err = await cli("pod-spec", "--root", envmgr_root, "--claim", "team-envs", "--job", "train-1", "trainer", "--", "train.py")
    job = yaml.safe_load(out)
    assert (job["kind"], job["metadata"]["name"], job["metadata"]["namespace"]) == ("Job", "train-1", "default")
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["volumes"] == fragment["volumes"] and pod["securityContext"]["runAsNonRoot"]
    assert pod["containers"][0]["command"] == container["command"] and pod["containers"][0]["args"] == ["train.py"]

    # The same for the panel, from the server; after a rebuild it names the new revision.
    use = await api.ok("GET", "environments/trainer/pod-spec")
    assert use["revision"] == 1 and use["run"] == "jupyter envmgr run trainer -- python your_script.py"
    assert yaml.safe_load(use["yaml"]) == use["pod_spec"] and use["env"]["TRAINING"] == "yes"
    await api.ok("POST", "environments/trainer/actions", {"action": "rebuild"}, expect=(202,))
    assert (await api.wait("trainer"))["ready_revision"] == 2
    use = await api.ok("GET", "environments/trainer/pod-spec")
    assert use["revision"] == 2 and use["pod_spec"]["containers"][0]["command"][0].endswith("rev-0002/bin/python")
    assert (await api.call("GET", "environments/nobody/pod-spec"))[0] == 404


def test_pod_fragment_shape_and_clusters():
    use = {"namespace": "team", "name": "x", "revision": 3, "root": "/envs", "python": "/envs/envs/team/x/rev-0003/bin/python",
           "bin": "/envs/envs/team/x/rev-0003/bin", "env": {"A": "1"}}
    fragment = elsewhere.pod_fragment(use, "claim-a", "img:1", "/mnt/envs", ["-m", "train"])
    container = fragment["containers"][0]
    assert container["image"] == "img:1" and container["args"] == ["-m", "train"]
    assert container["volumeMounts"][0]["mountPath"] == "/mnt/envs"
    text = elsewhere.to_yaml(use, fragment, "claim-a")
    assert yaml.safe_load(text) == fragment and text.startswith("# Environment team/x, revision 3")

    from traitlets.config import Config

    from jupyter_envmgr.app import EnvManagerApp

    app = EnvManagerApp(config=Config(EnvManagerApp={
        "backend": "kubernetes", "root_dir": "/envs",
        "clusters": {"east": {"pvc_name": "east-envs", "mount_path": "/east"}, "west": {"namespaces": ["west-team"]}}}))
    assert elsewhere.cluster_storage(app, None) == ("east-envs", "/east")
    assert elsewhere.cluster_storage(app, "west") == ("jupyter-envmgr", "/envs")
    with pytest.raises(Exception, match="north"):
        elsewhere.cluster_storage(app, "north")
    app.backend = "local"
    assert elsewhere.cluster_storage(app, None) == (None, None)


def test_the_job_is_a_valid_batch_v1_job():
    """Every field is one the Kubernetes API knows: the client's models read it back unchanged."""
    kubernetes = pytest.importorskip("kubernetes")
    use = {"namespace": "team", "name": "x", "revision": 3, "root": "/envs", "python": "/envs/envs/team/x/rev-0003/bin/python",
           "bin": "/envs/envs/team/x/rev-0003/bin", "env": {"A": "1", "B": "two words"}}
    manifest = elsewhere.job(elsewhere.pod_fragment(use, "claim-a", "img:1", None, ["train.py"]), "train-1", "team", 1000, 100)
    api = kubernetes.client.ApiClient()
    model = api._ApiClient__deserialize(json.loads(json.dumps(manifest)), "V1Job")
    assert api.sanitize_for_serialization(model) == manifest


def test_variables_are_substituted_as_jupyter_client_does():
    """Conda activation writes PATH-like values as `<prefix>/...:${VAR}` and a literal `$` as `$$` (conda.py)."""
    use = {"namespace": "default", "name": "c", "revision": 1, "root": "/r", "python": "/r/p/bin/python", "bin": "/r/p/bin",
           "env": {"PATH": "/r/p/bin:/r/p/extra:${PATH}", "LD_LIBRARY_PATH": "/r/p/lib:${LD_LIBRARY_PATH}",
                   "PRICE": "$$5", "CONDA_PREFIX": "/r/p"}}
    env = elsewhere.command_env(use, {"PATH": "/usr/bin:/bin", "LD_LIBRARY_PATH": "/opt/lib", "HOME": "/home/u"})
    assert env["PATH"] == "/r/p/bin:/r/p/extra:/usr/bin:/bin" and env["LD_LIBRARY_PATH"] == "/r/p/lib:/opt/lib"
    assert env["PRICE"] == "$5" and env["HOME"] == "/home/u" and env["CONDA_PREFIX"] == "/r/p"
    pod = elsewhere.container_env(dict(use, env=dict(use["env"], ODD="a$(b)")))
    assert pod["PATH"] == "/r/p/bin:/r/p/extra:" + elsewhere.CONTAINER_PATH
    assert pod["LD_LIBRARY_PATH"] == "/r/p/lib" and pod["PRICE"] == "$5" and pod["ODD"] == "a$$(b)"
