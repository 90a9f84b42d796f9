"""deploy/: every manifest parses into the client's models; the environment service is the one pod that may create
Jobs and write the root; a notebook pod, rendered by the real KubeSpawner from the Zero to JupyterHub values, has
no token and mounts the root read-only; the hub's service entry and roles let a server's token reach the service."""
from __future__ import annotations

import asyncio
import glob
import json
import os
import re
from urllib.parse import urlparse

import pytest
import yaml
from kubernetes import client

import jupyter_envmgr.builders.kubernetes as kube_module

DEPLOY = os.path.join(os.path.dirname(__file__), "..", "..", "deploy")
#: client method → (resource, verbs) of the API requests it makes (list_* is used both to list and to watch).
CALLS = {
    "create_namespaced_job": ("jobs", {"create"}),
    "read_namespaced_job": ("jobs", {"get"}),
    "list_namespaced_job": ("jobs", {"list", "watch"}),
    "delete_namespaced_job": ("jobs", {"delete"}),
    "list_namespaced_pod": ("pods", {"list", "watch"}),
    "read_namespaced_pod_log": ("pods/log", {"get"}),
    "read_namespaced_persistent_volume_claim": ("persistentvolumeclaims", {"get"}),
    "list_namespace": ("namespaces", {"list"}),
}
#: The singleuser values this test knows how to render into KubeSpawner traits (the chart's own mapping of them:
#: image.name:tag → image, uid, fsGid → fs_gid, serviceAccountName → service_account, extraEnv → environment,
#: storage.extraVolumes/extraVolumeMounts → volumes/volume_mounts, extraFiles → a Secret volume mounted by
#: subPath) and the one that is no part of the pod. A key added to the values that is in neither fails the test.
RENDERED = {"image", "uid", "fsGid", "serviceAccountName", "extraEnv", "storage", "extraFiles"}
NOT_IN_THE_POD = {"networkPolicy"}


def docs(name: str) -> list:
    with open(os.path.join(DEPLOY, name)) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def manifests() -> list:
    """Every Kubernetes object of deploy/ (the values file is helm's input, not a manifest)."""
    found = []
    for path in sorted(glob.glob(os.path.join(DEPLOY, "*.yaml"))):
        if os.path.basename(path) != "z2jh-values.yaml":
            found += docs(os.path.basename(path))
    return found


def one(kind: str, name: str = "jupyter-envmgr") -> dict:
    [doc] = [d for d in manifests() if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def values() -> dict:
    [doc] = docs("z2jh-values.yaml")
    return doc


def service_config() -> dict:
    [text] = one("ConfigMap")["data"].values()
    return json.loads(text)


def used_by_the_code() -> dict:
    package = os.path.dirname(kube_module.__file__)
    source = ""
    for module in sorted(os.listdir(package)):
        if module.endswith(".py"):
            with open(os.path.join(package, module)) as f:
                source += f.read()
    methods = set(re.findall(r"\.(?:core|batch)\.(\w+)", source))
    unknown = methods - set(CALLS)
    assert not unknown, f"API calls not mapped to RBAC verbs: {unknown}"
    used: dict = {}
    for method in methods:
        resource, verbs = CALLS[method]
        used.setdefault(resource, set()).update(verbs)
    return used


def test_every_manifest_is_what_the_api_reads():
    """Each object round-trips through the client's model: a misspelt or misplaced field would be dropped."""
    kinds = set()
    for doc in manifests():
        model = getattr(client, "V1" + doc["kind"])
        assert client.ApiClient().sanitize_for_serialization(model.from_dict(doc)) == doc, doc["metadata"]["name"]
        kinds.add(doc["kind"])
    assert {"ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Deployment", "Service", "NetworkPolicy",
            "PersistentVolumeClaim"} <= kinds


def test_role_has_exactly_the_verbs_used():
    used = used_by_the_code()
    granted: dict = {}
    for doc in docs("rbac.yaml"):
        if doc["kind"] in ("Role", "ClusterRole"):
            for rule in doc["rules"]:
                for resource in rule["resources"]:
                    granted.setdefault(resource, set()).update(rule["verbs"])
    assert granted == used


def grants_job_create(rule: dict) -> bool:
    return (bool({"batch", "*"} & set(rule.get("apiGroups", []))) and bool({"jobs", "*"} & set(rule["resources"]))
            and bool({"create", "*"} & set(rule["verbs"])))


def test_only_the_service_may_create_jobs():
    roles = [d for d in manifests() if d["kind"] in ("Role", "ClusterRole")]
    creators = [(r["kind"], r["metadata"]["name"]) for r in roles if any(grants_job_create(x) for x in r["rules"])]
    assert creators == [("Role", "jupyter-envmgr")]
    bindings = [d for d in manifests() if d["kind"] in ("RoleBinding", "ClusterRoleBinding")]
    holders = [s for b in bindings if (b["roleRef"]["kind"], b["roleRef"]["name"]) in creators for s in b["subjects"]]
    assert holders == [{"kind": "ServiceAccount", "name": "jupyter-envmgr", "namespace": "jhub"}]
    # ...and that ServiceAccount is the Deployment's, the only pod template of deploy/.
    pod = one("Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "jupyter-envmgr" and pod["automountServiceAccountToken"] is True
    assert [d["kind"] for d in manifests() if d["kind"] in ("Pod", "Job", "CronJob", "StatefulSet", "DaemonSet",
                                                             "ReplicaSet", "Deployment")] == ["Deployment"]


def test_the_service_deployment():
    [pvc] = docs("pvc.yaml")
    assert client.V1PersistentVolumeClaim.from_dict(pvc).spec.access_modes == ["ReadWriteMany"]
    deployment = one("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    config = service_config()
    env = config["EnvManagerApp"]
    # The claim, mounted read-write at the root the service is configured with.
    [volume] = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert volume["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"] == env["kubernetes_pvc_name"]
    assert not volume["persistentVolumeClaim"].get("readOnly", False)
    [mount] = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["mountPath"] == env["root_dir"] and mount.get("readOnly") is False
    # Its configuration: the ConfigMap, read by `jupyter envmgr service --config FILE`; every key a trait.
    from jupyter_envmgr.app import EnvManagerApp
    from jupyter_envmgr.auth import NamespaceAuthorizer

    assert env["backend"] == "kubernetes"
    assert set(env) <= set(EnvManagerApp.class_trait_names(config=True))
    assert set(config) == {"EnvManagerApp", "NamespaceAuthorizer"}
    assert set(config["NamespaceAuthorizer"]) <= set(NamespaceAuthorizer.class_trait_names(config=True))
    command = container["command"]
    assert command[:3] == ["jupyter", "envmgr", "service"]
    config_file = command[command.index("--config") + 1]
    [config_mount] = [m for m in container["volumeMounts"] if m["mountPath"] == os.path.dirname(config_file)]
    [config_volume] = [v for v in pod["volumes"] if v["name"] == config_mount["name"]]
    assert config_volume["configMap"]["name"] == one("ConfigMap")["metadata"]["name"]
    assert os.path.basename(config_file) in one("ConfigMap")["data"]
    # Pod Security "restricted", and build Jobs as the service's own UID/GID (the owner of the root).
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] > 0
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert (env["kubernetes_run_as_user"], env["kubernetes_run_as_group"]) == (security["runAsUser"], security["runAsGroup"])
    assert env["kubernetes_run_as_user"] != values()["singleuser"]["uid"]  # notebook users own nothing on the root
    # The Service in front selects these pods and reaches their port.
    service = one("Service")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    [port] = service["spec"]["ports"]
    assert port["targetPort"] in [p["name"] for p in container["ports"]]


def hub_environment(container: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_hub_service_entry_and_roles():
    from jupyterhub.scopes import _check_scopes_exist
    from jupyterhub.services.service import Service

    hub = values()["hub"]
    [(name, entry)] = hub["services"].items()
    assert set(entry) <= set(Service.class_trait_names())  # what the hub's Service takes (the chart passes it on)
    # The hub's proxy and the notebook servers reach the Service of deploy/ at its port, under the hub's prefix.
    service = one("Service")
    url = urlparse(entry["url"])
    assert (url.hostname, url.port) == (service["metadata"]["name"], service["spec"]["ports"][0]["port"])
    [container] = one("Deployment")["spec"]["template"]["spec"]["containers"]
    env = hub_environment(container)
    assert env["JUPYTERHUB_SERVICE_PREFIX"] == f"/services/{name}/" and env["JUPYTERHUB_SERVICE_NAME"] == name
    assert urlparse(env["JUPYTERHUB_SERVICE_URL"]).port == container["ports"][0]["containerPort"]
    # The api token the chart generates for the entry, from the Secret where the chart keeps it.
    assert env["JUPYTERHUB_API_TOKEN"] == {"secretKeyRef": {"name": "hub", "key": f"hub.services.{name}.apiToken"}}
    # Both halves of the scope: users hold it, and their servers' tokens ask for it.
    scope = f"access:services!service={name}"
    roles = hub["loadRoles"]
    assert scope in roles["user"]["scopes"] and scope in roles["server"]["scopes"]
    for role in roles.values():
        _check_scopes_exist(role["scopes"])
    # The server role keeps what JupyterHub's default gives it (activity, access to the server itself).
    from jupyterhub.roles import get_default_roles

    [default_server] = [r for r in get_default_roles() if r["name"] == "server"]
    assert set(default_server["scopes"]) <= set(roles["server"]["scopes"])
    # The notebook servers forward there (the Service, inside the cluster, under the prefix), with no other setting
    # of a writer: no backend, no Kubernetes traits, no token of their own.
    single = values()["singleuser"]
    notebook = single["extraFiles"]["envmgr-config"]["data"]["EnvManagerApp"]
    forward = urlparse(notebook["service_url"])
    assert (forward.hostname, forward.port, forward.path) == (url.hostname, url.port, f"/services/{name}/")
    from jupyter_envmgr.app import EnvManagerApp

    assert set(notebook) <= set(EnvManagerApp.class_trait_names(config=True))
    assert set(notebook) == {"root_dir", "service_url"}
    # z2jh's egress policy lets notebook pods reach the service's pods, and the service lets them in.
    [rule] = single["networkPolicy"]["egress"]
    [to] = rule["to"]
    assert to["podSelector"]["matchLabels"].items() <= one("Deployment")["spec"]["template"]["metadata"]["labels"].items()
    assert [p["port"] for p in rule["ports"]] == [container["ports"][0]["containerPort"]]
    [ingress] = one("NetworkPolicy")["spec"]["ingress"]
    [source] = ingress["from"]
    assert "singleuser-server" in source["podSelector"]["matchExpressions"][0]["values"]


def kubespawner_config(values: dict):
    """The KubeSpawner configuration the chart makes of these values (the keys of RENDERED, and hub.config)."""
    from traitlets.config import Config

    single = values["singleuser"]
    unknown = set(single) - RENDERED - NOT_IN_THE_POD
    assert not unknown, f"singleuser values this test does not render: {unknown}"
    c = Config()
    for section, traits in values["hub"].get("config", {}).items():
        for trait, value in traits.items():
            setattr(c[section], trait, value)
    c.KubeSpawner.image = f"{single['image']['name']}:{single['image']['tag']}"
    c.KubeSpawner.uid = single["uid"]
    c.KubeSpawner.fs_gid = single["fsGid"]
    if single.get("serviceAccountName"):
        c.KubeSpawner.service_account = single["serviceAccountName"]
    c.KubeSpawner.environment = single.get("extraEnv", {})
    volumes = {v["name"]: v for v in single["storage"].get("extraVolumes", [])}
    mounts = {f"{i}-{m['name']}": m for i, m in enumerate(single["storage"].get("extraVolumeMounts", []))}
    files = single.get("extraFiles", {})
    if files:
        volumes["files"] = {"name": "files", "secret": {"secretName": "singleuser",
                                                        "items": [{"key": k, "path": k} for k in files]}}
        for i, (key, spec) in enumerate(files.items()):
            mounts[f"{i}-files"] = {"name": "files", "mountPath": spec["mountPath"], "subPath": key}
    c.KubeSpawner.volumes = volumes
    c.KubeSpawner.volume_mounts = mounts
    return c


@pytest.fixture
def kubeconfig(tmp_path, monkeypatch):
    """KubeSpawner loads a client configuration when it is made; rendering a pod never calls the API."""
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "hub",
        "clusters": [{"name": "hub", "cluster": {"server": "https://127.0.0.1:9"}}],
        "users": [{"name": "hub", "user": {"token": "unused"}}],
        "contexts": [{"name": "hub", "context": {"cluster": "hub", "user": "hub"}}],
    }))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(path))


def render_notebook_pod(values: dict) -> dict:
    """alice's notebook pod, as the hub's KubeSpawner would create it from these values."""
    from jupyterhub import orm
    from jupyterhub.objects import Hub
    from jupyterhub.user import User
    from kubernetes_asyncio.client import ApiClient
    from kubespawner import KubeSpawner

    async def render():
        db = orm.new_session_factory("sqlite:///:memory:")()
        orm_user = orm.User(name="alice")
        db.add(orm_user)
        orm_spawner = orm.Spawner(name="", user=orm_user)
        db.add(orm_spawner)
        db.commit()
        spawner = KubeSpawner(config=kubespawner_config(values), user=User(orm_user, settings={}), hub=Hub(),
                              orm_spawner=orm_spawner, api_token="alice-server-token")
        try:
            pod = await spawner.get_pod_manifest()
            return ApiClient().sanitize_for_serialization(pod)
        finally:
            await spawner.api.api_client.close()
            db.close()

    return asyncio.run(render())


def test_notebook_pod_has_no_token_and_reads_the_root(kubeconfig):
    pod = render_notebook_pod(values())
    spec = pod["spec"]
    assert spec["automountServiceAccountToken"] is False
    # Whatever ServiceAccount it runs as, no binding of deploy/ names it.
    subjects = [s["name"] for d in manifests() if d["kind"].endswith("RoleBinding") for s in d["subjects"]]
    assert spec.get("serviceAccountName", "default") not in subjects
    [pvc] = docs("pvc.yaml")
    claims = [v for v in spec["volumes"] if v.get("persistentVolumeClaim", {}).get("claimName") == pvc["metadata"]["name"]]
    assert len(claims) == 1 and claims[0]["persistentVolumeClaim"]["readOnly"] is True
    [container] = spec["containers"]
    mounts = [m for m in container["volumeMounts"] if m["name"] == claims[0]["name"]]
    assert mounts and all(m["readOnly"] is True for m in mounts)
    assert [m["mountPath"] for m in mounts] == [service_config()["EnvManagerApp"]["root_dir"]]  # the same path
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["JUPYTER_PATH"] == os.path.join(mounts[0]["mountPath"], "jupyter")  # kernelspecs from the root
    assert env["JUPYTERHUB_API_TOKEN"] == "alice-server-token"  # what the server forwards with
    # The server's envmgr configuration is the file of extraFiles, at a path Jupyter reads.
    config_mount = [m for m in container["volumeMounts"] if m["name"] == "files"]
    assert [m["mountPath"] for m in config_mount] == ["/usr/local/etc/jupyter/jupyter_server_config.json"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert spec["securityContext"]["fsGroup"] == values()["singleuser"]["fsGid"]
    assert container["securityContext"]["runAsUser"] == values()["singleuser"]["uid"]


def test_the_render_sees_a_token_and_a_writable_mount(kubeconfig):
    """The same render with a ServiceAccount and no readOnly: the test above would have said so."""
    bad = values()
    del bad["hub"]["config"]["KubeSpawner"]["automount_service_account_token"]
    bad["singleuser"]["serviceAccountName"] = "jupyter-envmgr"
    for item in bad["singleuser"]["storage"]["extraVolumes"] + bad["singleuser"]["storage"]["extraVolumeMounts"]:
        item.pop("readOnly", None)
        item.get("persistentVolumeClaim", {}).pop("readOnly", None)
    spec = render_notebook_pod(bad)["spec"]
    assert spec["serviceAccountName"] == "jupyter-envmgr" and spec.get("automountServiceAccountToken") is not False
    [container] = spec["containers"]
    assert not any(m.get("readOnly") for m in container["volumeMounts"] if m["name"] == "envmgr")
