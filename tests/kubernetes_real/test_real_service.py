"""The environment service on a real control plane, and a notebook server that only reads.

`jupyter envmgr service` (standalone, with a token) runs the real KubernetesBuilder as deploy/rbac.yaml's
ServiceAccount: an environment created through it is built by a Job of the real Job controller and becomes
ready. A jupyter server with `c.EnvManagerApp.service_url` runs as another Unix user (`nobody`), for whom the
root is read-only, as it is for a notebook pod that mounts the claim `readOnly: true`: it lists the
environment, has it in /api/kernelspecs, runs code in its kernel, and a delete through it is done by the
service. Needs root (to run the reader as another user); skips with the reason otherwise.
"""
from __future__ import annotations

import errno
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import jupyter_envmgr
import pytest
from jupyter_envmgr.client import ClientError, EnvmgrClient
from jupyter_envmgr.demo import free_port
from helpers import grant_traverse, restore_modes
from kubernetes import client

pytestmark = pytest.mark.slow

READER = "nobody"
VENV_BIN = os.path.dirname(os.path.abspath(sys.executable))


def wait(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (ClientError, OSError) as e:
            last = e
        assert time.monotonic() < deadline, f"{what}: not after {timeout}s (last: {last!r})"
        time.sleep(interval)


class Process:
    """A server process of this test, in a session of its own, ended by its process group."""

    def __init__(self, argv: list, base: str, env: dict, **kwargs):
        self.log_path = os.path.join(base, "server.log")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         start_new_session=True, **kwargs)

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def alive(self) -> bool:
        assert self.proc.poll() is None, f"exited with {self.proc.returncode}:\n{self.log()[-4000:]}"
        return True

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def clean_env(**extra) -> dict:
    """This machine's environment without anything that would make a server a hub's (or reach a cluster)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JUPYTERHUB_", "JUPYTER_", "KUBERNETES_")) and k not in ("KUBECONFIG", "JPY_API_TOKEN")}
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}"
    return {**env, **extra}


@pytest.fixture
def reader_user():
    if os.geteuid() != 0:
        pytest.skip("the reader's read-only view of the root is another Unix user's: run as root (CI does)")
    return pwd.getpwnam(READER)


@pytest.fixture
def service(tmp_path, kube_namespace, kube_config):
    """`jupyter envmgr service` with backend kubernetes, standalone: one token, for alice, who may write the
    test's namespace."""
    base = str(tmp_path / "service")
    os.makedirs(os.path.join(base, "config"))
    token, port = "svc-" + secrets.token_hex(16), free_port()
    config_file = os.path.join(base, "envmgr_service_config.json")
    with open(config_file, "w") as f:
        json.dump({
            "ServerApp": {"allow_root": True},  # CI runs as root; a deployment runs it as its own account
            "EnvManagerApp": kube_config,
            "EnvService": {"tokens": {token: "alice"}},
            "NamespaceAuthorizer": {"namespace_access": {kube_namespace: {"read": ["*"], "write": ["alice"]}}},
        }, f)
    env = clean_env(JUPYTER_CONFIG_DIR=os.path.join(base, "config"), JUPYTER_DATA_DIR=os.path.join(base, "data"),
                    JUPYTER_RUNTIME_DIR=os.path.join(base, "runtime"))
    process = Process([shutil.which("jupyter", path=VENV_BIN), "envmgr", "service", "--config", config_file,
                       "--ip", "127.0.0.1", "--port", str(port)], base, env)
    try:
        url = f"http://127.0.0.1:{port}/"
        api = EnvmgrClient(url, token, kube_namespace)
        wait(lambda: process.alive() and api.info(), 90, "the service answers")
        # Its manager reconciles the records once it answers; a create before that may be queued twice.
        wait(lambda: process.alive() and "jupyter_envmgr: root" in process.log(), 60, "the service started its manager")
        process.url, process.token, process.api = url, token, api
        yield process
    finally:
        process.stop()


@pytest.fixture
def reader(tmp_path, reader_user, envmgr_root, service, kube_namespace):
    """A notebook server as `nobody`, forwarding to the service with alice's token, on the same root."""
    base = str(tmp_path / "reader")
    for sub in ("", "config", "data", "runtime"):
        os.makedirs(os.path.join(base, sub), exist_ok=True)
        os.chown(os.path.join(base, sub), reader_user.pw_uid, reader_user.pw_gid)
    token, port = "nb-" + secrets.token_hex(16), free_port()
    with open(os.path.join(base, "config", "jupyter_server_config.json"), "w") as f:
        json.dump({
            "ServerApp": {"jpserver_extensions": {"jupyter_envmgr": True}, "open_browser": False, "ip": "127.0.0.1",
                          "port": port, "port_retries": 0, "root_dir": base},
            "IdentityProvider": {"token": token},
            "EnvManagerApp": {"root_dir": envmgr_root, "user_kernelspecs": False, "service_url": service.url,
                              "service_token": service.token},
        }, f)
    os.chmod(os.path.join(base, "config", "jupyter_server_config.json"), 0o644)
    changed = grant_traverse([envmgr_root, base, os.path.realpath(sys.executable), VENV_BIN,
                              os.path.dirname(os.path.abspath(jupyter_envmgr.__file__))])
    env = clean_env(HOME=base, USER=READER, LOGNAME=READER, JUPYTER_CONFIG_DIR=os.path.join(base, "config"),
                    JUPYTER_DATA_DIR=os.path.join(base, "data"), JUPYTER_RUNTIME_DIR=os.path.join(base, "runtime"))
    process = Process([sys.executable, "-m", "jupyter_server"], base, env, cwd=base, user=reader_user.pw_uid,
                      group=reader_user.pw_gid, extra_groups=[])
    try:
        process.api = EnvmgrClient(f"http://127.0.0.1:{port}/", token, kube_namespace)
        process.url, process.token = f"http://127.0.0.1:{port}/", token
        wait(lambda: process.alive() and process.api.info(), 90, "the reader answers")
        yield process
    finally:
        process.stop()
        restore_modes(changed)


#: Run as the reader: try to create a file in argv[1]; print the errno (0: it was written).
WRITE_PROBE = """
import os, sys
try:
    open(os.path.join(sys.argv[1], "written-by-the-reader"), "w").close()
except OSError as e:
    print(e.errno)
else:
    print(0)
"""


def as_reader(user, code: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], user=user.pw_uid, group=user.pw_gid, extra_groups=[],
                          env=clean_env(HOME="/"), cwd="/", capture_output=True, text=True, timeout=60)


def kernelspecs(server) -> dict:
    req = urllib.request.Request(server.url + "api/kernelspecs", headers={"Authorization": f"token {server.token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)["kernelspecs"]


def uid_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("Uid:")).split()[1])


async def test_service_builds_on_the_real_plane_and_a_reader_uses_it(service, reader, reader_user, control_plane,
                                                                   kube_namespace, envmgr_root, local_index):
    assert uid_of(reader.proc.pid) == reader_user.pw_uid != os.geteuid()
    info = reader.api.info()
    assert info["backend"] == "kubernetes" and info["namespaces"] == [kube_namespace], info  # the service's
    assert info["service"] == {"url": service.url, "reachable": True}, info

    name = "via-service"
    service.api.create({"name": name, "packages": "envmgr-demo-pkg==1.0\n", "index_urls": [local_index.url]})
    record = service.api.wait(name, timeout=240)
    assert record["status"] == "ready", record["message"]
    assert record["owner"] == "alice"
    ready_at = time.monotonic()
    # Built by the real Job controller, as the service's ServiceAccount.
    [job] = client.BatchV1Api(control_plane.client()).list_namespaced_job(kube_namespace).items
    assert job.metadata.labels["app.kubernetes.io/managed-by"] == "jupyter-envmgr" and job.status.succeeded == 1

    # The reader's view of the root is read-only: its account cannot write the root or the environment.
    env_dir = os.path.join(envmgr_root, "envs", kube_namespace, name)
    for target in (envmgr_root, env_dir, os.path.join(envmgr_root, "jupyter", "kernels")):
        done = as_reader(reader_user, WRITE_PROBE, target)
        assert done.stdout.split() == [str(errno.EACCES)], (target, done.stdout, done.stderr)
    # ...yet it lists the environment, ready, from the service, and has its kernel, read from the root.
    listed = wait(lambda: [r for r in reader.api.list() if r["name"] == name and r["status"] == "ready"], 10,
                  "the reader lists it ready")
    assert listed[0]["kernel_name"] == record["kernel_name"]
    wait(lambda: record["kernel_name"] in kernelspecs(reader), 10, "the reader's /api/kernelspecs has it")
    seen = time.monotonic() - ready_at
    assert seen < 10, seen
    # Its kernel starts as the reader's user, from the read-only revision.
    out = await reader.api.run_code(record["kernel_name"],
                                    "import os, envmgr_demo_pkg; print(envmgr_demo_pkg.__version__, os.getuid())")
    assert out.split() == ["1.0", str(reader_user.pw_uid)], out
    # Nothing on the root belongs to the reader: every byte there is the service's (or its builds').
    owned = [os.path.join(d, f) for d, dirs, files in os.walk(envmgr_root) for f in dirs + files
             if os.lstat(os.path.join(d, f)).st_uid == reader_user.pw_uid]
    assert owned == []

    # A change through the reader is the service's: forwarded with the reader's token, done by the writer.
    reader.api.delete(name)
    wait(lambda: not os.path.exists(env_dir), 30, "the environment deleted by the service")
    wait(lambda: record["kernel_name"] not in kernelspecs(reader), 10, "its kernel gone from the reader's picker")
    assert [r["name"] for r in service.api.list()] == []


DEPLOY = os.path.join(os.path.dirname(__file__), "..", "..", "deploy")


def deploy_docs(name: str, namespace: str) -> list:
    import yaml

    with open(os.path.join(DEPLOY, name)) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
    return docs


def test_the_real_authorizer_lets_only_the_service_create_jobs(control_plane, kube_namespace):
    """deploy/rbac.yaml as the real RBAC authorizer reads it (applied by the kube_namespace fixture): the service's
    ServiceAccount may create Jobs; the one notebook pods run as (z2jh-values.yaml: the namespace's default) may
    not, nor read a Secret or create a pod. And service.yaml's objects pass the real API's validation."""
    import yaml

    with open(os.path.join(DEPLOY, "z2jh-values.yaml")) as f:
        notebook_account = yaml.safe_load(f)["singleuser"].get("serviceAccountName") or "default"
    authz = client.AuthorizationV1Api(control_plane.client())

    def allowed(account: str, verb: str, resource: str, group: str = "") -> bool:
        spec = client.V1SubjectAccessReviewSpec(
            user=f"system:serviceaccount:{kube_namespace}:{account}",
            groups=["system:serviceaccounts", f"system:serviceaccounts:{kube_namespace}", "system:authenticated"],
            resource_attributes=client.V1ResourceAttributes(namespace=kube_namespace, verb=verb, group=group,
                                                            resource=resource))
        return authz.create_subject_access_review(client.V1SubjectAccessReview(spec=spec)).status.allowed

    assert allowed("jupyter-envmgr", "create", "jobs", "batch")
    assert allowed("jupyter-envmgr", "get", "pods", "") is False  # exactly its verbs: list/watch, not get
    assert notebook_account != "jupyter-envmgr"
    for verb, resource, group in (("create", "jobs", "batch"), ("create", "pods", ""), ("get", "secrets", ""),
                                  ("list", "pods", "")):
        assert not allowed(notebook_account, verb, resource, group), (verb, resource)

    # The service's ConfigMap, Deployment, Service and NetworkPolicy, created with dryRun=All: validated
    # (selectors against the template's labels, ports, security context) and admitted, nothing stored.
    from kubernetes import utils

    api = control_plane.client()
    for doc in deploy_docs("service.yaml", kube_namespace):
        [created] = utils.create_from_dict(api, doc, dry_run="All")
        assert created.metadata.name == doc["metadata"]["name"]
    assert client.AppsV1Api(api).list_namespaced_deployment(kube_namespace).items == []
