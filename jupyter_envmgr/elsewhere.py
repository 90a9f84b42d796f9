"""One environment, many places: run a program in an environment exactly as its kernels run.

A kernel of an environment is its kernelspec on the root: the serving revision's interpreter
(`rev-N/bin/python`, never `current`) and `env` (activation, init-script variables, env_vars). Both
`jupyter envmgr run` (a terminal where the root is mounted) and `pod-spec` (a Job, a Deployment,
a training operator's template with the root's claim mounted at the same path) start from that
same kernelspec, so a program sees what a notebook sees. Blocking file reads only; no server needed.
"""
from __future__ import annotations

import collections
import contextlib
import json
import os
import shlex
import string
from typing import Optional

from .errors import EnvmgrError
from .kernels import PREFIX

#: PATH of a container whose image PATH cannot be referred to (Kubernetes expands only earlier env entries).
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
VOLUME = "envmgr-root"


def kernels_dir(root: str) -> str:
    return os.path.join(os.path.abspath(root), "jupyter", "kernels")


def find(root: str, name: str, namespace: Optional[str] = None) -> dict:
    """The kernelspec the root's servers wrote for environment `name` (in `namespace`, or the only one)."""
    found = []
    with contextlib.suppress(FileNotFoundError):
        for entry in sorted(os.listdir(kernels_dir(root))):
            if not entry.startswith(PREFIX):
                continue
            with contextlib.suppress(OSError, ValueError, AttributeError):
                with open(os.path.join(kernels_dir(root), entry, "kernel.json")) as f:
                    spec = json.load(f)
                meta = spec["metadata"]["envmgr"]
                if meta["name"] == name and namespace in (None, meta["namespace"]) and meta["root"] == os.path.abspath(root):
                    found.append(spec)
    if len(found) > 1:
        spaces = ", ".join(s["metadata"]["envmgr"]["namespace"] for s in found)
        raise EnvmgrError(409, "ambiguous", f"{name!r} is in several namespaces ({spaces}); pass --namespace")
    if found:
        return found[0]
    where = f" in namespace {namespace!r}" if namespace else ""
    raise EnvmgrError(409, "not_ready", f"{name!r}{where} has no ready revision on the root {os.path.abspath(root)} "
                                        "(not created, still building, or failed); `jupyter envmgr show NAME` says which")


def serving(spec: dict) -> dict:
    """What a program needs from a kernelspec: the revision, its interpreter, its bin/ and its variables."""
    meta = spec["metadata"]["envmgr"]
    python = spec["argv"][0]
    env = dict(spec.get("env") or {})
    if env.get("PYTHONPATH") == os.path.join(meta["root"], "jupyter", "lib"):
        del env["PYTHONPATH"]  # it only loads the %envmgr magics into kernels; a program needs the user's own
    return {"namespace": meta["namespace"], "name": meta["name"], "revision": meta["revision"], "root": meta["root"],
            "python": python, "bin": os.path.dirname(python), "env": env}


def substituted(env: dict, base: dict) -> dict:
    """Kernelspec values as jupyter_client starts a kernel with them: `${VAR}` from `base` (conda activation
    keeps `PATH=<prefix>/bin:${PATH}`), `$$` a literal `$`."""
    return {k: string.Template(str(v)).safe_substitute(base) for k, v in env.items()}


def _path_first(first: str, path: str) -> str:
    return os.pathsep.join([first] + [p for p in path.split(os.pathsep) if p and p != first])


def command_env(use: dict, base: dict) -> dict:
    """`base` (the caller's environment) with the kernel's variables and the interpreter first on PATH."""
    env = {**base, **substituted(use["env"], base)}
    env["PATH"] = _path_first(use["bin"], env.get("PATH", ""))
    return env


def container_env(use: dict) -> dict:
    """The kernel's variables for a container, whose image's values cannot be referred to (Kubernetes expands
    only `$(VAR)` of earlier entries): `${PATH}` is the usual PATH, another `${VAR}` nothing."""
    known = collections.defaultdict(str, PATH=CONTAINER_PATH)
    env = {k: string.Template(str(v)).safe_substitute(known) for k, v in use["env"].items()}
    env = {k: os.pathsep.join(p for p in v.split(os.pathsep) if p) if k.endswith("PATH") else v
           for k, v in env.items()}  # no empty entries (an empty one means the working directory)
    env["PATH"] = _path_first(use["bin"], env.get("PATH") or CONTAINER_PATH)
    return {k: v.replace("$(", "$$(") for k, v in env.items()}  # a literal $( stays literal


def exec_in(use: dict, argv: list) -> None:
    """Replace this process with `argv` run in the environment; it keeps the revision pinned for GC while it runs.

    The shared lock of inuse.py is held on an inherited descriptor, so the revision is in use exactly
    as long as the command runs, as a kernel's is; the exit status is the command's own.
    """
    from . import inuse

    prefix = os.path.dirname(use["bin"])
    if inuse.hold(prefix):
        os.set_inheritable(inuse._held[-1], True)
    env = command_env(use, dict(os.environ))
    os.execvpe(argv[0], argv, env)


def run_line(use: dict, default_namespace: Optional[str] = None) -> str:
    ns = "" if use["namespace"] == default_namespace else f" --namespace {shlex.quote(use['namespace'])}"
    return f"jupyter envmgr{ns} run {use['name']} -- python your_script.py"


def pod_fragment(use: dict, claim: Optional[str], image: str, mount_path: Optional[str] = None,
                 args: Optional[list] = None) -> dict:
    """The parts of a pod spec a workload needs: the claim as a volume mounted at the root's own path
    (every path in the environment is absolute), the interpreter as command, the kernel's variables."""
    mount = mount_path or use["root"]
    env = container_env(use)
    container = {
        "name": "main",
        "image": image,
        "command": [use["python"]],
        "args": list(args) if args else ["your_script.py"],
        "env": [{"name": k, "value": str(v)} for k, v in sorted(env.items())],
        "volumeMounts": [{"name": VOLUME, "mountPath": mount, "readOnly": True}],
    }
    claim_name = claim or f"<the PersistentVolumeClaim of the storage mounted here at {mount}>"
    return {"volumes": [{"name": VOLUME, "persistentVolumeClaim": {"claimName": claim_name, "readOnly": True}}],
            "containers": [container]}


def job(fragment: dict, name: str, namespace: str, run_as_user: Optional[int] = None, run_as_group: Optional[int] = None) -> dict:
    """The fragment as a whole batch/v1 Job that runs once (for `pod-spec --job NAME`, and to try a fragment)."""
    pod = {"restartPolicy": "Never", **fragment}
    if run_as_user is not None:
        pod["securityContext"] = {"runAsNonRoot": True, "runAsUser": run_as_user,
                                  **({"runAsGroup": run_as_group} if run_as_group is not None else {})}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": namespace},
            "spec": {"backoffLimit": 0, "template": {"spec": pod}}}


def header(use: dict, claim: Optional[str]) -> str:
    lines = [f"Environment {use['namespace']}/{use['name']}, revision {use['revision']} (pinned: a rebuild does not change it).",
             "Merge `volumes` into your pod spec and the container's fields into yours (Job, Deployment,",
             "training operator template). The image must run the interpreter at the same path: the build image does."]
    if not claim:
        lines.append("This server builds locally, so no claim is configured: put the claim of the storage that holds")
        lines.append(f"{use['root']} in claimName.")
    return "".join(f"# {line}\n" for line in lines)


def to_yaml(use: dict, fragment: dict, claim: Optional[str]) -> str:
    import yaml

    return header(use, claim) + yaml.safe_dump(fragment, sort_keys=False, default_flow_style=False)


def usage(root: str, record: dict, claim: Optional[str], mount_path: Optional[str], image: str,
          default_namespace: str) -> dict:
    """Blocking, for GET .../pod-spec: the `run` line and the pod fragment of the serving revision."""
    use = serving(find(root, record["name"], record["namespace"]))
    fragment = pod_fragment(use, claim, image, mount_path)
    return {"namespace": use["namespace"], "name": use["name"], "revision": use["revision"], "python": use["python"],
            "env": use["env"], "run": run_line(use, default_namespace), "pod_spec": fragment,
            "yaml": to_yaml(use, fragment, claim)}


def cluster_storage(config, cluster: Optional[str]) -> tuple:
    """(claim, mount path) of a cluster of the server's configuration (an EnvManagerApp's traits, see
    builders/kubernetes/config.py); (None, None) for the local backend, which has no claim."""
    if config.backend != "kubernetes":
        if cluster not in (None, "", "local"):
            raise EnvmgrError(422, "invalid_field", f"cluster: {cluster!r} is not a cluster of this server; it builds locally (cluster 'local')", "cluster")
        return None, None
    from .builders.kubernetes.config import clusters

    found = clusters(config)
    target = next((c for c in found if c.name == cluster), None) if cluster else found[0]
    if target is None:
        raise EnvmgrError(422, "invalid_field", f"cluster: {cluster!r} is not a cluster of this server; use one of {', '.join(c.name for c in found)}", "cluster")
    return target.pvc_name, target.mount_path
