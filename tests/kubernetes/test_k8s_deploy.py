"""deploy/: manifests that parse into the client's models, and a Role with exactly the verbs the code uses."""
from __future__ import annotations

import os
import re

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


def docs(name: str) -> list:
    with open(os.path.join(DEPLOY, name)) as f:
        return [d for d in yaml.safe_load_all(f) if d]


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


def test_role_has_exactly_the_verbs_used():
    used = used_by_the_code()
    granted: dict = {}
    for doc in docs("rbac.yaml"):
        model = {"ServiceAccount": client.V1ServiceAccount, "Role": client.V1Role, "RoleBinding": client.V1RoleBinding,
                 "ClusterRole": client.V1ClusterRole, "ClusterRoleBinding": client.V1ClusterRoleBinding}[doc["kind"]]
        assert client.ApiClient().sanitize_for_serialization(model.from_dict(doc)) == doc
        if doc["kind"] in ("Role", "ClusterRole"):
            for rule in doc["rules"]:
                for resource in rule["resources"]:
                    granted.setdefault(resource, set()).update(rule["verbs"])
    assert granted == used


def test_claim_and_values():
    [pvc] = docs("pvc.yaml")
    assert client.V1PersistentVolumeClaim.from_dict(pvc).spec.access_modes == ["ReadWriteMany"]
    [values] = docs("z2jh-values.yaml")
    single = values["singleuser"]
    mount = single["storage"]["extraVolumeMounts"][0]["mountPath"]
    config = single["extraFiles"]["envmgr-config"]["data"]
    assert config["ServerApp"]["jpserver_extensions"] == {"jupyter_envmgr": True}
    env = config["EnvManagerApp"]
    assert env["backend"] == "kubernetes" and env["root_dir"] == mount == single["extraEnv"]["JUPYTER_ENVMGR_ROOT"]
    assert single["storage"]["extraVolumes"][0]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"] == env["kubernetes_pvc_name"]
    [sa] = [d for d in docs("rbac.yaml") if d["kind"] == "ServiceAccount"]
    assert single["serviceAccountName"] == sa["metadata"]["name"]
    # Every key set is a trait of the app.
    from jupyter_envmgr.app import EnvManagerApp

    assert set(env) <= set(EnvManagerApp.class_trait_names(config=True))
