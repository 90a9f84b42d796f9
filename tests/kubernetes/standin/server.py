"""A stand-in for the part of the Kubernetes API that jupyter_envmgr uses, plus a "kubelet" that runs pods locally.

Real HTTP on 127.0.0.1, spoken to by the official `kubernetes` client unchanged (through a kubeconfig with a
bearer token). What it implements, with the API's own semantics:

- namespaces: list (labelSelector); persistentvolumeclaims: get.
- batch/v1 jobs: create (validation, defaults, 409 AlreadyExists), get, list, watch, delete with
  propagationPolicy Orphan (the API's default for Jobs), Background and Foreground (deletionTimestamp and the
  foregroundDeletion finalizer until the pods are gone).
- pods: get, list, watch, log (follow streams until the container ends).
- list + watch: one global resourceVersion; a watch without resourceVersion starts with ADDED events, a watch
  from a version replays later events then streams live ones (chunked), BOOKMARK events when asked,
  timeoutSeconds ends the stream cleanly, a version older than the compacted history gets an ERROR event 410.
- a Job controller (one pod per attempt, backoffLimit, activeDeadlineSeconds, ttlSecondsAfterFinished,
  conditions Complete / Failed with the API's reasons) and a kubelet that refuses pods that break the
  `restricted` Pod Security Standard (they are never created, as with admission), schedules against one node
  (nodeSelector, taints, allocatable extended resources such as nvidia.com/gpu), checks PVC volumes (exist,
  Bound, mounted at the claim's host path since the stand-in maps a volume only at its own path), runs the
  container command as a local process in its own process group with the container's env and the image's
  PATH, and stops it with SIGTERM, then SIGKILL after terminationGracePeriodSeconds.
- fault injection under /_standin/: status codes (before or after the request took effect), delays
  (client time-outs), dropped watch and log streams, compaction (410 on resume).

Not simulated: users and groups (processes run as the test's user; runAsUser is checked, not applied),
resource limits, images (every image is "the image" whose PATH is given on the command line).

Run: python server.py --state DIR --image-path DIR[:DIR...]  → prints the port, serves until killed.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import random
import re
import signal
import string
import subprocess
import threading
import time
import traceback
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

TOKEN = "standin-token"
NODE = "standin-node"
HISTORY = 5000
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def status(code: int, reason: str, message: str, details: dict | None = None) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "details": details or {}, "code": code}


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str):
        super().__init__(message)
        self.body = status(code, reason, message)


def matches(labels: dict, selector: str) -> bool:
    """Equality-based label selectors: `a=b`, `a==b`, `a!=b`, `a`, `!a`, comma-separated."""
    for term in filter(None, (t.strip() for t in (selector or "").split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def quantity(text) -> float:
    text = str(text)
    units = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 1024, "Mi": 1024 ** 2, "Gi": 1024 ** 3}
    for suffix in sorted(units, key=len, reverse=True):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * units[suffix]
    return float(text)


# ---------------------------------------------------------------- the object store ("etcd")


class Cluster:
    def __init__(self, state_dir: str, image_path: list):
        self.state_dir = state_dir
        self.image_path = image_path
        self.cond = threading.Condition()
        self.rv = 100
        self.objects: dict = {}  # (kind, namespace, name) -> object
        self.history: deque = deque(maxlen=HISTORY)  # (rv, type, kind, namespace, object)
        self.compacted = 0
        self.faults: list = []
        self.requests: list = []
        self.violations: list = []
        self.events: list = []
        self.drop_generation = 0
        self.bookmark_interval = 2.0
        self.missing_images: set = set()
        self.pull_seconds = 0.05
        self.node = {"labels": {"kubernetes.io/hostname": NODE}, "taints": [],
                     "allocatable": {"cpu": "8", "memory": "16Gi", "nvidia.com/gpu": "0"}}
        self.processes: dict = {}  # (ns, pod) -> Popen
        self.kill_requests: dict = {}  # (ns, pod) -> threading.Event
        os.makedirs(os.path.join(state_dir, "logs"), exist_ok=True)
        self.put("namespaces", {"metadata": {"name": "default", "labels": {"kubernetes.io/metadata.name": "default"}}})

    # ------------------------------------------------------------ storage with resourceVersions

    def _bump(self) -> str:
        self.rv += 1
        return str(self.rv)

    def put(self, kind: str, obj: dict, event: str | None = None) -> dict:
        with self.cond:
            meta = obj.setdefault("metadata", {})
            key = (kind, meta.get("namespace", ""), meta["name"])
            existed = key in self.objects
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", now())
            meta["resourceVersion"] = self._bump()
            self.objects[key] = obj
            self.history.append((self.rv, event or ("MODIFIED" if existed else "ADDED"), kind, key[1], copy.deepcopy(obj)))
            self.cond.notify_all()
            return copy.deepcopy(obj)

    def remove(self, kind: str, namespace: str, name: str) -> None:
        with self.cond:
            obj = self.objects.pop((kind, namespace, name), None)
            if obj is None:
                return
            obj["metadata"]["resourceVersion"] = self._bump()
            self.history.append((self.rv, "DELETED", kind, namespace, copy.deepcopy(obj)))
            self.cond.notify_all()

    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        with self.cond:
            obj = self.objects.get((kind, namespace, name))
            return copy.deepcopy(obj) if obj else None

    def update(self, kind: str, namespace: str, name: str, fn) -> dict | None:
        with self.cond:
            obj = self.objects.get((kind, namespace, name))
            if obj is None:
                return None
            fn(obj)
            return self.put(kind, obj)

    def list(self, kind: str, namespace: str | None, selector: str = "") -> tuple:
        with self.cond:
            items = [copy.deepcopy(o) for (k, ns, _), o in sorted(self.objects.items())
                     if k == kind and (namespace is None or ns == namespace)
                     and matches(o["metadata"].get("labels") or {}, selector)]
            return items, str(self.rv)

    def event(self, namespace: str, involved: str, reason: str, message: str) -> None:
        self.events.append({"namespace": namespace, "object": involved, "reason": reason, "message": message, "time": now()})

    # ------------------------------------------------------------ the Job controller

    def create_job(self, namespace: str, body: dict) -> dict:
        if body.get("kind") not in (None, "Job") or body.get("apiVersion") not in (None, "batch/v1"):
            raise ApiError(400, "BadRequest", "the body is not a batch/v1 Job")
        meta = body.get("metadata") or {}
        name = meta.get("name", "")
        if not name or len(name) > 63 or not DNS1123.match(name):
            raise ApiError(422, "Invalid", f"Job.batch \"{name}\" is invalid: metadata.name: Invalid value: must be a DNS-1123 label of at most 63 characters")
        if meta.get("namespace") not in (None, namespace):
            raise ApiError(400, "BadRequest", "the namespace of the object does not match the namespace of the request")
        spec = body.get("spec") or {}
        template = spec.get("template") or {}
        pod_spec = template.get("spec") or {}
        if not pod_spec.get("containers"):
            raise ApiError(422, "Invalid", f"Job.batch \"{name}\" is invalid: spec.template.spec.containers: Required value")
        if pod_spec.get("restartPolicy") not in ("Never", "OnFailure"):
            raise ApiError(422, "Invalid", f"Job.batch \"{name}\" is invalid: spec.template.spec.restartPolicy: Unsupported value: must be Never or OnFailure")
        if self.get("namespaces", "", namespace) is None:
            raise ApiError(404, "NotFound", f"namespaces \"{namespace}\" not found")
        with self.cond:
            if self.get("jobs", namespace, name) is not None:
                raise ApiError(409, "AlreadyExists", f"jobs.batch \"{name}\" already exists")
            job = copy.deepcopy(body)
            job.update(apiVersion="batch/v1", kind="Job")
            job["metadata"] = {k: v for k, v in meta.items() if k not in ("uid", "resourceVersion", "creationTimestamp")}
            job["metadata"].update(namespace=namespace, generation=1, uid=str(uuid.uuid4()))
            uid = job["metadata"]["uid"]
            spec = job["spec"]
            spec.setdefault("completions", 1)
            spec.setdefault("parallelism", 1)
            spec.setdefault("backoffLimit", 6)
            spec.setdefault("completionMode", "NonIndexed")
            spec.setdefault("suspend", False)
            spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
            tmeta = spec["template"].setdefault("metadata", {})
            tmeta.setdefault("labels", {}).update({
                "batch.kubernetes.io/controller-uid": uid, "controller-uid": uid,
                "batch.kubernetes.io/job-name": name, "job-name": name,
            })
            job["status"] = {}
            created = self.put("jobs", job)
        threading.Thread(target=self._run_job, args=(namespace, name, uid), daemon=True).start()
        return created

    def _job_alive(self, namespace: str, name: str, uid: str) -> dict | None:
        job = self.get("jobs", namespace, name)
        if job is None or job["metadata"]["uid"] != uid:
            return None
        return job

    def _run_job(self, namespace: str, name: str, uid: str) -> None:
        try:
            self._job_loop(namespace, name, uid)
        except Exception:
            traceback.print_exc()

    def _job_loop(self, namespace: str, name: str, uid: str) -> None:
        job = self._job_alive(namespace, name, uid)
        if job is None:
            return
        started = time.monotonic()
        self.update("jobs", namespace, name, lambda j: j["status"].update(startTime=now(), active=0))
        deadline = job["spec"].get("activeDeadlineSeconds")
        failures = 0
        while True:
            job = self._job_alive(namespace, name, uid)
            if job is None or job["metadata"].get("deletionTimestamp"):
                return
            pod = self._admit(namespace, job)
            if pod is None:  # refused by admission: the controller never gets a pod; only the deadline ends it
                outcome = self._wait_deadline(namespace, name, uid, started, deadline)
            else:
                self.update("jobs", namespace, name, lambda j: j["status"].update(active=1))
                outcome = self._wait_pod(namespace, pod["metadata"]["name"], name, uid, started, deadline)
            job = self._job_alive(namespace, name, uid)
            if job is None or job["metadata"].get("deletionTimestamp") or outcome == "deleted":
                return
            if outcome == "succeeded":
                def done(j):
                    j["status"].update(active=0, succeeded=1, completionTime=now(), ready=0, conditions=[
                        {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached",
                         "message": "Reached expected number of succeeded pods", "lastTransitionTime": now(), "lastProbeTime": now()},
                        {"type": "Complete", "status": "True", "reason": "CompletionsReached",
                         "message": "Reached expected number of succeeded pods", "lastTransitionTime": now(), "lastProbeTime": now()}])
                self.update("jobs", namespace, name, done)
                break
            if outcome == "deadline":
                for p in self._pods_of(namespace, name):
                    self.delete_pod(namespace, p["metadata"]["name"])
                self._fail(namespace, name, "DeadlineExceeded", "Job was active longer than specified deadline")
                break
            failures += 1
            self.update("jobs", namespace, name, lambda j: j["status"].update(active=0, failed=failures))
            if failures > int(job["spec"].get("backoffLimit", 6)):
                self._fail(namespace, name, "BackoffLimitExceeded", "Job has reached the specified backoff limit")
                break
        ttl = (self.get("jobs", namespace, name) or {}).get("spec", {}).get("ttlSecondsAfterFinished")
        if ttl is not None:
            time.sleep(float(ttl))
            if self._job_alive(namespace, name, uid):
                self.delete_job(namespace, name, "Background")

    def _fail(self, namespace: str, name: str, reason: str, message: str) -> None:
        def fail(j):
            j["status"].update(active=0, ready=0, conditions=[
                {"type": "FailureTarget", "status": "True", "reason": reason, "message": message,
                 "lastTransitionTime": now(), "lastProbeTime": now()},
                {"type": "Failed", "status": "True", "reason": reason, "message": message,
                 "lastTransitionTime": now(), "lastProbeTime": now()}])
        self.update("jobs", namespace, name, fail)

    def _wait_deadline(self, namespace, name, uid, started, deadline) -> str:
        with self.cond:
            while True:
                job = self.objects.get(("jobs", namespace, name))
                if job is None or job["metadata"]["uid"] != uid or job["metadata"].get("deletionTimestamp"):
                    return "deleted"
                left = None if deadline is None else started + float(deadline) - time.monotonic()
                if left is not None and left <= 0:
                    return "deadline"
                self.cond.wait(left if left is not None else 1.0)

    def _wait_pod(self, namespace, pod, job, uid, started, deadline) -> str:
        with self.cond:
            while True:
                j = self.objects.get(("jobs", namespace, job))
                if j is None or j["metadata"]["uid"] != uid or j["metadata"].get("deletionTimestamp"):
                    return "deleted"
                p = self.objects.get(("pods", namespace, pod))
                phase = (p or {}).get("status", {}).get("phase")
                if p is None or phase == "Failed":
                    return "failed"
                if phase == "Succeeded":
                    return "succeeded"
                left = None if deadline is None else started + float(deadline) - time.monotonic()
                if left is not None and left <= 0:
                    return "deadline"
                self.cond.wait(min(left, 1.0) if left is not None else 1.0)

    def _pods_of(self, namespace: str, job: str) -> list:
        pods, _ = self.list("pods", namespace, f"batch.kubernetes.io/job-name={job}")
        return pods

    # ------------------------------------------------------------ admission (Pod Security "restricted")

    def restricted_violations(self, spec: dict) -> list:
        problems = []
        psc = spec.get("securityContext") or {}
        for c in spec.get("containers") or []:
            csc = c.get("securityContext") or {}
            where = f"container {c.get('name')!r}"
            if csc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where} must set securityContext.allowPrivilegeEscalation=false")
            if csc.get("privileged"):
                problems.append(f"{where} must not be privileged")
            if "ALL" not in ((csc.get("capabilities") or {}).get("drop") or []):
                problems.append(f"{where} must set securityContext.capabilities.drop=[\"ALL\"]")
            if set((csc.get("capabilities") or {}).get("add") or []) - {"NET_BIND_SERVICE"}:
                problems.append(f"{where} must not add capabilities")
            if not (csc.get("runAsNonRoot") is True or (psc.get("runAsNonRoot") is True and csc.get("runAsNonRoot") is not False)):
                problems.append(f"{where} must set securityContext.runAsNonRoot=true")
            if csc.get("runAsUser", psc.get("runAsUser")) == 0:
                problems.append(f"{where} must not set runAsUser=0")
            seccomp = (csc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
            if seccomp not in ("RuntimeDefault", "Localhost"):
                problems.append(f"{where} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"")
        for v in spec.get("volumes") or []:
            if "hostPath" in v:
                problems.append(f"volume {v.get('name')!r} must not use hostPath")
        if spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"):
            problems.append("pod must not use host namespaces")
        return problems

    def _admit(self, namespace: str, job: dict) -> dict | None:
        template = job["spec"]["template"]
        spec = copy.deepcopy(template["spec"])
        name = f"{job['metadata']['name']}-{''.join(random.choices(string.ascii_lowercase + string.digits, k=5))}"
        problems = self.restricted_violations(spec)
        if problems:
            message = f"pods \"{name}\" is forbidden: violates PodSecurity \"restricted:latest\": " + "; ".join(problems)
            self.violations.append({"namespace": namespace, "job": job["metadata"]["name"], "problems": problems})
            self.event(namespace, f"job/{job['metadata']['name']}", "FailedCreate", message)
            return None
        spec.setdefault("terminationGracePeriodSeconds", 30)
        spec.setdefault("serviceAccountName", "default")
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec.setdefault("schedulerName", "default-scheduler")
        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": name, "namespace": namespace,
                "labels": dict(template.get("metadata", {}).get("labels") or {}),
                "annotations": dict(template.get("metadata", {}).get("annotations") or {}),
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job["metadata"]["name"],
                                     "uid": job["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}],
            },
            "spec": spec,
            "status": {"phase": "Pending", "qosClass": "Burstable", "conditions": []},
        }
        created = self.put("pods", pod)
        threading.Thread(target=self._kubelet, args=(namespace, name), daemon=True).start()
        return created

    # ------------------------------------------------------------ scheduling and the kubelet

    def _unschedulable(self, namespace: str, spec: dict) -> str:
        labels = self.node["labels"]
        for k, v in (spec.get("nodeSelector") or {}).items():
            if labels.get(k) != v:
                return "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
        for taint in self.node["taints"]:
            tolerated = any(
                (t.get("operator") == "Exists" and t.get("key") in (None, taint["key"]))
                or (t.get("key") == taint["key"] and t.get("value") == taint.get("value"))
                for t in spec.get("tolerations") or [])
            if not tolerated and taint.get("effect") in ("NoSchedule", "NoExecute"):
                return f"0/1 nodes are available: 1 node(s) had untolerated taint {{{taint['key']}: {taint.get('value', '')}}}."
        for c in spec.get("containers") or []:
            for resource, amount in ((c.get("resources") or {}).get("requests") or {}).items():
                if quantity(amount) > quantity(self.node["allocatable"].get(resource, "0")):
                    return f"0/1 nodes are available: 1 Insufficient {resource}."
        for v in spec.get("volumes") or []:
            claim = (v.get("persistentVolumeClaim") or {}).get("claimName")
            if claim:
                pvc = self.get("persistentvolumeclaims", namespace, claim)
                if pvc is None:
                    return f"0/1 nodes are available: persistentvolumeclaim \"{claim}\" not found."
                if pvc.get("status", {}).get("phase") != "Bound":
                    return f"0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims."
        return ""

    def _set_pod(self, namespace: str, name: str, fn) -> dict | None:
        return self.update("pods", namespace, name, fn)

    def _kubelet(self, namespace: str, name: str) -> None:
        try:
            self._kubelet_run(namespace, name)
        except Exception:
            traceback.print_exc()

    def _kubelet_run(self, namespace: str, name: str) -> None:
        kill = self.kill_requests.setdefault((namespace, name), threading.Event())
        pod = self.get("pods", namespace, name)
        spec = pod["spec"]
        reason = self._unschedulable(namespace, spec)
        if reason:
            def pending(p):
                p["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                              "message": reason, "lastTransitionTime": now()}]
            self._set_pod(namespace, name, pending)
            while not kill.is_set():  # the real scheduler retries; nothing changes here until the pod goes
                kill.wait(1.0)
            self._finish_deletion(namespace, name)
            return

        container = spec["containers"][0]

        def scheduled(p):  # container statuses appear once a node has the pod
            p["spec"]["nodeName"] = NODE
            p["status"]["conditions"] = [{"type": "PodScheduled", "status": "True", "lastTransitionTime": now()}]
            p["status"]["containerStatuses"] = [{"name": container["name"], "image": container.get("image", ""),
                                                 "imageID": "", "ready": False, "restartCount": 0, "started": False,
                                                 "state": {"waiting": {"reason": "ContainerCreating"}}}]
        self._set_pod(namespace, name, scheduled)
        image = container.get("image", "")
        if not image or image != image.strip() or any(ch.isupper() for ch in image.split("@")[0].split(":")[0]):
            self._waiting(namespace, name, "InvalidImageName", f"Failed to apply default image tag \"{image}\": invalid reference format")
            kill.wait()
            self._finish_deletion(namespace, name)
            return
        if image in self.missing_images:
            self._waiting(namespace, name, "ErrImagePull", f"rpc error: code = NotFound desc = failed to pull and unpack image \"{image}\": not found")
            kill.wait(0.5)
            self._waiting(namespace, name, "ImagePullBackOff", f"Back-off pulling image \"{image}\"")
            kill.wait()
            self._finish_deletion(namespace, name)
            return
        if kill.wait(self.pull_seconds):
            self._finish_deletion(namespace, name)
            return
        env, problem = self._container_env(container)
        if problem:
            self._waiting(namespace, name, "CreateContainerConfigError", problem)
            kill.wait()
            self._finish_deletion(namespace, name)
            return
        mounts, problem = self._mounts(namespace, spec, container)
        argv = list(container.get("command") or []) + list(container.get("args") or [])
        problem = problem or self._filesystem_problem(argv, mounts)
        log_path = os.path.join(self.state_dir, "logs", f"{namespace}_{name}_{container['name']}.log")
        started = now()
        if problem or not argv:
            with open(log_path, "w") as f:
                f.write((problem or "no command (the stand-in image has no entrypoint)") + "\n")
            self._terminated(namespace, name, 128, "StartError", problem or "no command", started)
            return
        out = open(log_path, "wb")
        try:
            proc = subprocess.Popen(argv, env=env, cwd=container.get("workingDir") or "/", stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as e:
            out.write(f"exec {argv[0]}: {e.strerror}\n".encode())
            out.close()
            self._terminated(namespace, name, 128, "StartError", str(e), started)
            return
        self.processes[(namespace, name)] = proc

        def running(p):
            p["status"].update(phase="Running", startTime=started, podIP="10.0.0.%d" % random.randint(2, 250))
            p["status"]["conditions"] += [{"type": "Ready", "status": "True", "lastTransitionTime": now()}]
            p["status"]["containerStatuses"][0].update(state={"running": {"startedAt": started}}, ready=True, started=True,
                                                       containerID=f"standin://{proc.pid}",
                                                       imageID=f"standin://image@sha256:{'0' * 64}")
        self._set_pod(namespace, name, running)
        grace = float(spec.get("terminationGracePeriodSeconds", 30))
        while proc.poll() is None:
            if kill.wait(0.1):
                self._signal(proc, signal.SIGTERM)
                try:
                    proc.wait(grace)
                except subprocess.TimeoutExpired:
                    self._signal(proc, signal.SIGKILL)
                    proc.wait()
                break
        code = proc.wait()
        self._signal(proc, signal.SIGKILL)  # what is left of the container's processes dies with it
        out.close()
        self.processes.pop((namespace, name), None)
        if code < 0:  # killed by a signal: 128 + its number, as a container runtime reports it
            code = 128 - code
        self._terminated(namespace, name, code, "Completed" if code == 0 else "Error", "", started)
        if kill.is_set():
            self._finish_deletion(namespace, name)

    @staticmethod
    def _signal(proc, sig) -> None:
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _waiting(self, namespace: str, name: str, reason: str, message: str) -> None:
        def waiting(p):
            p["status"]["containerStatuses"][0]["state"] = {"waiting": {"reason": reason, "message": message}}
        self._set_pod(namespace, name, waiting)

    def _terminated(self, namespace: str, name: str, code: int, reason: str, message: str, started: str) -> None:
        log_path = os.path.join(self.state_dir, "logs", f"{namespace}_{name}_build.log")

        def terminated(p):
            state = {"exitCode": code, "reason": reason, "startedAt": started, "finishedAt": now()}
            if message:
                state["message"] = message
            elif code != 0 and p["spec"]["containers"][0].get("terminationMessagePolicy") == "FallbackToLogsOnError":
                try:
                    with open(log_path, "rb") as f:
                        state["message"] = b"\n".join(f.read().splitlines()[-80:]).decode(errors="replace")[-2048:]
                except OSError:
                    pass
            p["status"]["phase"] = "Succeeded" if code == 0 else "Failed"
            p["status"]["conditions"] = [c for c in p["status"]["conditions"] if c["type"] != "Ready"] + [
                {"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now()}]
            p["status"]["containerStatuses"][0].update(state={"terminated": state}, ready=False, started=False)
        self._set_pod(namespace, name, terminated)

    def _container_env(self, container: dict) -> tuple:
        env = {"PATH": os.pathsep.join(self.image_path), "HOSTNAME": "standin-pod", "HOME": "/root", "LANG": "C.UTF-8"}
        for item in container.get("env") or []:
            if "valueFrom" in item:
                return None, f"the stand-in cannot resolve valueFrom of env {item.get('name')}"
            env[item["name"]] = str(item.get("value", ""))
        return env, ""

    def _mounts(self, namespace: str, spec: dict, container: dict) -> tuple:
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        mounts = []
        for m in container.get("volumeMounts") or []:
            v = volumes.get(m["name"])
            if v is None:
                return [], f"volumeMount {m['name']!r} names no volume of the pod"
            if "persistentVolumeClaim" in v:
                pvc = self.get("persistentvolumeclaims", namespace, v["persistentVolumeClaim"]["claimName"])
                host = (pvc or {}).get("metadata", {}).get("annotations", {}).get("standin/host-path")
                if not host:
                    return [], f"the claim of volume {m['name']!r} has no storage"
                if os.path.abspath(m["mountPath"]) != os.path.abspath(host) or m.get("subPath"):
                    return [], (f"the stand-in maps volume {m['name']!r} only at its own path {host}, not at "
                                f"{m['mountPath']}")
                mounts.append(m["mountPath"])
            else:
                return [], f"the stand-in maps only persistentVolumeClaim volumes, not {m['name']!r}"
        return mounts, ""

    def _filesystem_problem(self, argv: list, mounts: list) -> str:
        """A path in the command must be in the container's filesystem: a mounted volume or the image."""
        visible = list(mounts) + list(self.image_path)
        for arg in argv:
            if arg.startswith("/") and not any(arg == v or arg.startswith(v.rstrip("/") + "/") for v in visible):
                return f"{arg}: no such file or directory in the container (not on a mounted volume)"
        return ""

    # ------------------------------------------------------------ deletion

    def delete_pod(self, namespace: str, name: str) -> dict | None:
        """Graceful deletion: deletionTimestamp now, the kubelet stops the container, then the pod goes."""
        def mark(p):
            p["metadata"].setdefault("deletionTimestamp", now())
            p["metadata"]["deletionGracePeriodSeconds"] = p["spec"].get("terminationGracePeriodSeconds", 30)
        pod = self.update("pods", namespace, name, mark)
        if pod is None:
            return None
        kill = self.kill_requests.setdefault((namespace, name), threading.Event())
        kill.set()
        current = self.get("pods", namespace, name) or {}
        if (namespace, name) not in self.processes and current.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            self._finish_deletion(namespace, name)
        return pod

    def _finish_deletion(self, namespace: str, name: str) -> None:
        pod = self.get("pods", namespace, name)
        if pod is not None and pod["metadata"].get("deletionTimestamp"):
            self.remove("pods", namespace, name)
            self.kill_requests.pop((namespace, name), None)

    def delete_job(self, namespace: str, name: str, policy: str | None) -> dict:
        job = self.get("jobs", namespace, name)
        if job is None:
            raise ApiError(404, "NotFound", f"jobs.batch \"{name}\" not found")
        policy = policy or "Orphan"  # batch/v1 Jobs orphan their pods unless told otherwise
        pods = self._pods_of(namespace, name)
        if policy == "Orphan":
            for p in pods:
                self.update("pods", namespace, p["metadata"]["name"], lambda o: o["metadata"].pop("ownerReferences", None))
            self.remove("jobs", namespace, name)
            return status(200, "", "") | {"status": "Success", "code": 200}
        if policy == "Background":
            self.remove("jobs", namespace, name)
            for p in pods:
                self.delete_pod(namespace, p["metadata"]["name"])
            return status(200, "", "") | {"status": "Success", "code": 200}
        if policy != "Foreground":
            raise ApiError(400, "BadRequest", f"unknown propagationPolicy {policy!r}")

        def mark(j):
            j["metadata"].setdefault("deletionTimestamp", now())
            j["metadata"]["finalizers"] = sorted(set(j["metadata"].get("finalizers") or []) | {"foregroundDeletion"})
        marked = self.update("jobs", namespace, name, mark)
        for p in pods:
            self.delete_pod(namespace, p["metadata"]["name"])
        threading.Thread(target=self._foreground, args=(namespace, name, marked["metadata"]["uid"]), daemon=True).start()
        return marked

    def _foreground(self, namespace: str, name: str, uid: str) -> None:
        with self.cond:
            while any(k[0] == "pods" and k[1] == namespace and (o["metadata"].get("labels") or {}).get("batch.kubernetes.io/job-name") == name
                      for k, o in self.objects.items()):
                self.cond.wait(1.0)
            job = self.objects.get(("jobs", namespace, name))
            if job is not None and job["metadata"]["uid"] == uid:
                self.remove("jobs", namespace, name)


# ---------------------------------------------------------------- HTTP


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    cluster: Cluster = None  # set by serve()

    def log_message(self, *args):
        pass

    # ------------------------------------------------------------ plumbing

    def _send_json(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _start_stream(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _drop(self) -> None:
        """Cut the connection mid-stream, as a network failure or an API server restart would."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(2)
        except OSError:
            pass

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            raise ApiError(400, "BadRequest", "the request body is not JSON") from None

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        c = self.cluster
        url = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        path = url.path
        record = {"method": method, "path": path, "query": query, "time": time.time()}
        if not path.startswith("/_standin/"):
            c.requests.append(record)
        try:
            if path.startswith("/_standin/"):
                return self._control(method, path, query)
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                raise ApiError(401, "Unauthorized", "Unauthorized")
            after = self._faults(method, path)
            body = self._body() if method in ("POST", "PUT", "PATCH", "DELETE") else {}
            if method == "DELETE":
                record["body"] = body
            code, result = self._route(method, path, query, body)
            if code is None:  # streamed
                record["status"] = 200
                return
            if after is not None:
                raise ApiError(after, "InternalError", "injected fault after the request took effect")
            record["status"] = code
            self._send_json(code, result)
        except ApiError as e:
            record["status"] = e.body["code"]
            self._send_json(e.body["code"], e.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:
            traceback.print_exc()
            record["status"] = 500
            self._send_json(500, status(500, "InternalError", f"stand-in bug: {e}"))

    def _faults(self, method: str, path: str):
        """Apply the first matching fault rule; returns a status to send after the request took effect."""
        c = self.cluster
        with c.cond:
            rule = next((r for r in c.faults if r["times"] > 0 and (r.get("method") in (None, method))
                         and re.search(r["path"], path)), None)
            if rule is None:
                return None
            rule["times"] -= 1
            rule["hits"] = rule.get("hits", 0) + 1
        if rule.get("delay"):
            time.sleep(rule["delay"])
        if rule.get("status") and rule.get("after"):
            return rule["status"]
        if rule.get("status"):
            raise ApiError(rule["status"], {500: "InternalError", 503: "ServiceUnavailable", 429: "TooManyRequests",
                                            403: "Forbidden"}.get(rule["status"], "InternalError"), "injected fault")
        return None

    # ------------------------------------------------------------ the API

    def _route(self, method: str, path: str, query: dict, body: dict):
        c = self.cluster
        if path == "/version" and method == "GET":
            return 200, {"major": "1", "minor": "31", "gitVersion": "v1.31.0-standin", "platform": "linux/amd64"}
        if path == "/api/v1/namespaces" and method == "GET":
            return self._list_or_watch("namespaces", None, query, "NamespaceList", "v1")
        m = re.match(r"^/api/v1/namespaces/([^/]+)/persistentvolumeclaims/([^/]+)$", path)
        if m and method == "GET":
            return 200, self._get("persistentvolumeclaims", m[1], m[2], "persistentvolumeclaims")
        m = re.match(r"^/apis/batch/v1/namespaces/([^/]+)/jobs$", path)
        if m:
            if method == "GET":
                return self._list_or_watch("jobs", m[1], query, "JobList", "batch/v1")
            if method == "POST":
                return 201, c.create_job(m[1], body)
        m = re.match(r"^/apis/batch/v1/namespaces/([^/]+)/jobs/([^/]+)$", path)
        if m:
            if method == "GET":
                return 200, self._get("jobs", m[1], m[2], "jobs.batch")
            if method == "DELETE":
                policy = query.get("propagationPolicy") or body.get("propagationPolicy")
                if body.get("orphanDependents") is not None or query.get("orphanDependents") is not None:
                    policy = policy or ("Orphan" if str(body.get("orphanDependents", query.get("orphanDependents"))).lower() == "true" else "Background")
                return 200, c.delete_job(m[1], m[2], policy)
        m = re.match(r"^/api/v1/namespaces/([^/]+)/pods$", path)
        if m and method == "GET":
            return self._list_or_watch("pods", m[1], query, "PodList", "v1")
        m = re.match(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)$", path)
        if m and method == "GET":
            return 200, self._get("pods", m[1], m[2], "pods")
        m = re.match(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/log$", path)
        if m and method == "GET":
            self._log(m[1], m[2], query)
            return None, None
        raise ApiError(404, "NotFound", "the server could not find the requested resource")

    def _get(self, kind: str, namespace: str, name: str, what: str) -> dict:
        obj = self.cluster.get(kind, namespace, name)
        if obj is None:
            raise ApiError(404, "NotFound", f"{what} \"{name}\" not found")
        return obj

    def _list_or_watch(self, kind: str, namespace, query: dict, list_kind: str, api_version: str):
        selector = query.get("labelSelector", "")
        if query.get("watch") in ("true", "1", "True"):
            self._watch(kind, namespace, query, selector)
            return None, None
        if namespace is not None and self.cluster.get("namespaces", "", namespace) is None:
            return 200, {"kind": list_kind, "apiVersion": api_version, "metadata": {"resourceVersion": str(self.cluster.rv)}, "items": []}
        items, rv = self.cluster.list(kind, namespace, selector)
        return 200, {"kind": list_kind, "apiVersion": api_version, "metadata": {"resourceVersion": rv}, "items": items}

    def _watch(self, kind: str, namespace, query: dict, selector: str) -> None:
        c = self.cluster
        timeout = float(query.get("timeoutSeconds") or 1800)
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1", "True")
        since = query.get("resourceVersion") or ""
        end = time.monotonic() + timeout
        generation = c.drop_generation

        def wanted(k, ns, obj):
            return k == kind and (namespace is None or ns == namespace) and matches(obj["metadata"].get("labels") or {}, selector)

        self._start_stream("application/json")
        with c.cond:
            if since in ("", "0"):
                backlog = [("ADDED", o) for (k, ns, _), o in sorted(c.objects.items()) if wanted(k, ns, o)]
                last = c.rv
            elif int(since) < c.compacted:
                gone = status(410, "Expired", f"too old resource version: {since} ({c.compacted})")
                backlog, last = [("ERROR", gone)], None
            else:
                last = int(since)
                backlog = []
        try:
            for kind_, obj in backlog:
                self._chunk(json.dumps({"type": kind_, "object": obj}).encode() + b"\n")
            if last is None:
                return self._end_stream()
            next_bookmark = time.monotonic() + c.bookmark_interval
            while True:
                with c.cond:
                    events = [(rv, t, o) for rv, t, k, ns, o in c.history if rv > last and wanted(k, ns, o)]
                    if not events:
                        remaining = min(end, next_bookmark) - time.monotonic()
                        if remaining > 0 and c.drop_generation == generation:
                            c.cond.wait(min(remaining, 0.5))
                        events = [(rv, t, o) for rv, t, k, ns, o in c.history if rv > last and wanted(k, ns, o)]
                    current = c.rv
                if c.drop_generation != generation:
                    return self._drop()
                for rv, t, o in events:
                    self._chunk(json.dumps({"type": t, "object": o}).encode() + b"\n")
                    last = rv
                if time.monotonic() >= end:
                    return self._end_stream()
                if bookmarks and time.monotonic() >= next_bookmark:
                    last = max(last, current)
                    bookmark = {"kind": "Job" if kind == "jobs" else "Pod", "apiVersion": "batch/v1" if kind == "jobs" else "v1",
                                "metadata": {"resourceVersion": str(last)}}
                    self._chunk(json.dumps({"type": "BOOKMARK", "object": bookmark}).encode() + b"\n")
                    next_bookmark = time.monotonic() + c.bookmark_interval
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _log(self, namespace: str, name: str, query: dict) -> None:
        c = self.cluster
        pod = c.get("pods", namespace, name)
        if pod is None:
            raise ApiError(404, "NotFound", f"pods \"{name}\" not found")
        container = query.get("container") or pod["spec"]["containers"][0]["name"]
        if container not in [x["name"] for x in pod["spec"]["containers"]]:
            raise ApiError(400, "BadRequest", f"container {container} is not valid for pod {name}")
        state = (pod["status"].get("containerStatuses") or [{"state": {"waiting": {"reason": "Pending"}}}])[0]["state"]
        if "waiting" in state:
            raise ApiError(400, "BadRequest", f"container \"{container}\" in pod \"{name}\" is waiting to start: {state['waiting'].get('reason')}")
        path = os.path.join(c.state_dir, "logs", f"{namespace}_{name}_{container}.log")
        follow = query.get("follow") in ("true", "1", "True")
        generation = c.drop_generation
        self._start_stream("text/plain")
        try:
            with open(path, "rb") as f:
                while True:
                    data = f.read(65536)
                    if data:
                        self._chunk(data)
                        continue
                    if not follow:
                        return self._end_stream()
                    if c.drop_generation != generation:
                        return self._drop()
                    current = c.get("pods", namespace, name)
                    if current is None or "terminated" in current["status"]["containerStatuses"][0]["state"]:
                        rest = f.read()
                        self._chunk(rest)
                        return self._end_stream()
                    time.sleep(0.05)  # the kubelet tails the container's log file
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # ------------------------------------------------------------ control of the stand-in (tests only)

    def _control(self, method: str, path: str, query: dict) -> None:
        c = self.cluster
        body = self._body() if method == "POST" else {}
        what = path[len("/_standin/"):]
        if what == "state":
            with c.cond:
                objects_ = {f"{k}/{ns}/{n}" if ns else f"{k}/{n}": o for (k, ns, n), o in c.objects.items()}
            return self._send_json(200, {
                "objects": objects_, "requests": list(c.requests), "violations": c.violations, "events": c.events,
                "processes": {f"{ns}/{n}": p.pid for (ns, n), p in list(c.processes.items())},
                "rv": c.rv, "compacted": c.compacted, "faults": c.faults,
            })
        if what == "faults":
            with c.cond:
                c.faults = [dict(r, times=r.get("times", 1)) for r in body.get("rules", [])]
            return self._send_json(200, {"faults": c.faults})
        if what == "drop":
            with c.cond:
                c.drop_generation += 1
                c.cond.notify_all()
            return self._send_json(200, {"generation": c.drop_generation})
        if what == "compact":
            with c.cond:
                c.compacted = c.rv + 1
                c.history.clear()
            return self._send_json(200, {"compacted": c.compacted})
        if what == "pvc":
            obj = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                   "metadata": {"name": body["name"], "namespace": body.get("namespace", "default"),
                                "annotations": {"standin/host-path": body["path"]}},
                   "spec": {"accessModes": body.get("access_modes", ["ReadWriteMany"]),
                            "resources": {"requests": {"storage": "10Gi"}}, "storageClassName": "standin-nfs",
                            "volumeMode": "Filesystem"},
                   "status": {"phase": body.get("phase", "Bound"),
                              **({"accessModes": body.get("access_modes", ["ReadWriteMany"]),
                                  "capacity": {"storage": "10Gi"}} if body.get("phase", "Bound") == "Bound" else {})}}
            return self._send_json(200, c.put("persistentvolumeclaims", obj))
        if what == "namespace":
            labels = dict(body.get("labels") or {}, **{"kubernetes.io/metadata.name": body["name"]})
            return self._send_json(200, c.put("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                             "metadata": {"name": body["name"], "labels": labels},
                                                             "status": {"phase": "Active"}}))
        if what == "node":
            c.node.update(body)
            return self._send_json(200, c.node)
        if what == "settings":
            c.missing_images = set(body.get("missing_images", c.missing_images))
            c.bookmark_interval = float(body.get("bookmark_interval", c.bookmark_interval))
            c.pull_seconds = float(body.get("pull_seconds", c.pull_seconds))
            return self._send_json(200, {"ok": True})
        if what == "delete-job":  # what `kubectl delete job` does, for tests that act behind the server's back
            return self._send_json(200, c.delete_job(body.get("namespace", "default"), body["name"], body.get("policy", "Background")))
        self._send_json(404, status(404, "NotFound", f"no control {what!r}"))


def serve(state_dir: str, image_path: list, port: int = 0) -> ThreadingHTTPServer:
    cluster = Cluster(state_dir, image_path)
    handler = type("BoundHandler", (Handler,), {"cluster": cluster})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    server.cluster = cluster
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", required=True, help="directory for pod logs")
    parser.add_argument("--image-path", required=True, help="PATH of 'the image' (directories with python and uv)")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = serve(args.state, args.image_path.split(os.pathsep), args.port)

    def stop(*_):
        for proc in list(server.cluster.processes.values()):
            Cluster._signal(proc, signal.SIGKILL)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    finally:
        stop()


if __name__ == "__main__":
    main()
