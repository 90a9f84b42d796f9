"""The one node of the test cluster: what a kubelet does for these tests, as local processes.

It registers a Node (capacity: cpu, memory, pods; no GPUs, so a GPU build stays unschedulable with the real
scheduler's reason), watches the pods the scheduler binds to it, runs each container's command as a process
with the image's PATH (an image is a name mapped to directories of this machine; an unknown image fails to
"pull"), mounts nothing but checks each persistentVolumeClaim mount resolves to a hostPath PV at the same path,
posts the pod's status as a kubelet does, kills the process group when the pod is deleted and then removes
the pod, and serves `/containerLogs/...` over HTTPS on the Node's kubelet port for the API server's `pods/log`.
It does not enforce securityContext (the stand-in covers Pod Security admission).

For the tests of the log follower it counts the log requests of each pod (`GET /stats`), and ends a
followed stream early, cleanly, after the seconds a pod's `envmgr.test/cut-log-after` annotation says
(as proxies with idle or total time-outs do).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Agent:
    def __init__(self, args):
        self.node = args.node
        self.port = args.port
        self.state = args.state
        self.images = dict(i.split("=", 1) for i in args.image)
        os.makedirs(os.path.join(self.state, "logs"), exist_ok=True)
        self.api = client.CoreV1Api(config.new_client_from_config(args.kubeconfig))
        self.lock = threading.Lock()
        self.pods: dict = {}  # uid -> {"proc", "kill": Event, "log", "done": Event}
        self.logs: dict = {}  # (namespace, name) -> uid of the newest pod of that name
        self.log_requests: dict = {}  # "namespace/name" -> log requests served

    # ------------------------------------------------------------------ the node

    def register(self) -> None:
        status = {
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "20", "ephemeral-storage": "20Gi"},
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "20", "ephemeral-storage": "20Gi"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "envmgr test node agent is posting ready status",
                            "lastHeartbeatTime": now(), "lastTransitionTime": now()}],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": self.node}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
            "nodeInfo": {"kubeletVersion": "v1.20.2", "operatingSystem": "linux", "architecture": "amd64",
                         "containerRuntimeVersion": "envmgr-node-agent://1", "kernelVersion": "", "osImage": "",
                         "kubeProxyVersion": "", "machineID": "", "systemUUID": "", "bootID": ""},
        }
        body = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.node, "labels": {"kubernetes.io/hostname": self.node, "kubernetes.io/os": "linux"}},
                "status": status}
        try:
            self.api.create_node(body)
        except ApiException as e:
            if e.status != 409:
                raise
        self.api.patch_node_status(self.node, {"status": status})
        # The TaintNodesByCondition admission plugin taints a new node not-ready; the node lifecycle controller
        # (off here: no heartbeats to watch) would lift it once the node reports Ready, as it does now.
        node = self.api.read_node(self.node)
        taints = [t for t in node.spec.taints or [] if t.key != "node.kubernetes.io/not-ready"]
        self.api.patch_node(self.node, {"spec": {"taints": [self.api.api_client.sanitize_for_serialization(t)
                                                            for t in taints] or None}})

    # ------------------------------------------------------------------ pods

    def watch(self) -> None:
        """List, then watch from the list's version; list again on 410 or any break."""
        version = ""
        selector = f"spec.nodeName={self.node}"
        while True:
            try:
                if not version:
                    listed = self.api.list_pod_for_all_namespaces(field_selector=selector)
                    version = listed.metadata.resource_version
                    for pod in listed.items:
                        self.seen(self.api.api_client.sanitize_for_serialization(pod))
                resp = self.api.list_pod_for_all_namespaces(field_selector=selector, watch=True, resource_version=version,
                                                            timeout_seconds=60, allow_watch_bookmarks=True,
                                                            _preload_content=False)
                for line in resp:
                    event = json.loads(line)
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        version = "" if obj.get("code") == 410 else version
                        break
                    version = obj["metadata"].get("resourceVersion", version)
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self.seen(obj)
            except Exception as e:  # API server restarting: list again
                print(f"watch: {e!r}", file=sys.stderr, flush=True)
                version = ""
                time.sleep(1)

    def seen(self, pod: dict) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        with self.lock:
            entry = self.pods.get(uid)
            if entry is None and not meta.get("deletionTimestamp") and pod["status"].get("phase") in ("Pending", None):
                cut = (meta.get("annotations") or {}).get("envmgr.test/cut-log-after")
                entry = self.pods[uid] = {"kill": threading.Event(), "done": threading.Event(), "proc": None,
                                          "log": os.path.join(self.state, "logs", f"{uid}.log"),
                                          "cut": float(cut) if cut else None}
                self.logs[(meta["namespace"], meta["name"])] = uid
                threading.Thread(target=self.run_pod, args=(pod, entry), daemon=True).start()
        if meta.get("deletionTimestamp"):
            if entry is None:
                self.remove(meta["namespace"], meta["name"], uid)
            elif not entry["kill"].is_set():
                entry["grace"] = float(meta.get("deletionGracePeriodSeconds") or 0)
                entry["kill"].set()

    def remove(self, namespace: str, name: str, uid: str) -> None:
        try:
            self.api.delete_namespaced_pod(name, namespace, grace_period_seconds=0,
                                           body=client.V1DeleteOptions(grace_period_seconds=0,
                                                                       preconditions=client.V1Preconditions(uid=uid)))
        except ApiException as e:
            if e.status not in (404, 409):
                print(f"delete {namespace}/{name}: {e.status} {e.reason}", file=sys.stderr, flush=True)

    def status(self, pod: dict, **fields) -> None:
        meta = pod["metadata"]
        for attempt in range(30):
            try:
                self.api.patch_namespaced_pod_status(meta["name"], meta["namespace"], {"status": fields})
                return
            except ApiException as e:
                if e.status == 404:
                    return
                time.sleep(1)
            except Exception:
                time.sleep(1)

    def conditions(self, ready: bool) -> list:
        t = now()
        state = "True" if ready else "False"
        return [{"type": "PodScheduled", "status": "True", "lastTransitionTime": t},
                {"type": "Initialized", "status": "True", "lastTransitionTime": t},
                {"type": "ContainersReady", "status": state, "lastTransitionTime": t},
                {"type": "Ready", "status": state, "lastTransitionTime": t}]

    def container_status(self, container: dict, state: dict, ready: bool = False, restarts: int = 0) -> list:
        return [{"name": container["name"], "image": container.get("image", ""), "imageID": "", "ready": ready,
                 "started": "running" in state, "restartCount": restarts, "state": state}]

    def problem(self, pod: dict, container: dict) -> str:
        """Why the container cannot start here: a volume that is not a bound claim on a hostPath PV at the
        container's mount path (the volume is used in place, so the paths must agree)."""
        volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        for mount in container.get("volumeMounts") or []:
            volume = volumes.get(mount["name"], {})
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if not claim:
                return f"volume {mount['name']}: the test node only runs persistentVolumeClaim volumes"
            pvc = self.api.read_namespaced_persistent_volume_claim(claim, pod["metadata"]["namespace"])
            if pvc.status.phase != "Bound":
                return f"persistentvolumeclaim {claim} is not bound"
            pv = self.api.read_persistent_volume(pvc.spec.volume_name)
            path = pv.spec.host_path.path if pv.spec.host_path else None
            if path != mount["mountPath"]:
                return f"volume {mount['name']}: the test node mounts hostPath PVs at their own path only ({path})"
        return ""

    def run_pod(self, pod: dict, entry: dict) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        container = spec["containers"][0]
        image = container.get("image", "")
        self.status(pod, phase="Pending", hostIP="127.0.0.1", conditions=self.conditions(False),
                    containerStatuses=self.container_status(container, {"waiting": {"reason": "ContainerCreating"}}))
        if image not in self.images:
            self.status(pod, containerStatuses=self.container_status(container, {"waiting": {
                "reason": "ErrImagePull", "message": f'rpc error: code = NotFound desc = failed to pull image "{image}": not found'}}))
            self.wait_deleted(pod, entry)
            return
        try:
            problem = self.problem(pod, container)
        except ApiException as e:
            problem = f"volume lookup failed: {e.status} {e.reason}"
        if problem:
            self.status(pod, containerStatuses=self.container_status(container, {"waiting": {
                "reason": "CreateContainerConfigError", "message": problem}}))
            self.wait_deleted(pod, entry)
            return
        env = {"PATH": self.images[image], "HOME": os.path.join(self.state, "home"), "HOSTNAME": meta["name"],
               "LANG": "C.UTF-8"}
        os.makedirs(env["HOME"], exist_ok=True)
        for item in container.get("env") or []:
            if "value" in item:
                env[item["name"]] = item["value"]
            elif (item.get("valueFrom") or {}).get("fieldRef"):
                field = item["valueFrom"]["fieldRef"]["fieldPath"]
                env[item["name"]] = {"metadata.name": meta["name"], "metadata.namespace": meta["namespace"],
                                     "spec.nodeName": self.node}.get(field, "")
        argv = list(container.get("command") or []) + list(container.get("args") or [])
        started = now()
        with open(entry["log"], "wb") as out:
            try:
                # PATH is the image's: resolve the command there, not in the agent's own environment.
                exe = argv[0] if os.sep in argv[0] else next(
                    (os.path.join(d, argv[0]) for d in env["PATH"].split(os.pathsep)
                     if os.access(os.path.join(d, argv[0]), os.X_OK)), argv[0])
                proc = subprocess.Popen([exe] + argv[1:], env=env, cwd=container.get("workingDir") or "/",
                                        stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                        start_new_session=True)
            except (OSError, IndexError) as e:
                out.write(f"exec: {e}\n".encode())
                entry["done"].set()
                self.status(pod, phase="Failed", conditions=self.conditions(False),
                            containerStatuses=self.container_status(container, {"terminated": {
                                "exitCode": 128, "reason": "StartError", "message": str(e),
                                "startedAt": started, "finishedAt": now()}}))
                self.wait_deleted(pod, entry)
                return
        entry["proc"] = proc
        self.status(pod, phase="Running", startTime=started, podIP="127.0.0.1", podIPs=[{"ip": "127.0.0.1"}],
                    conditions=self.conditions(True),
                    containerStatuses=self.container_status(container, {"running": {"startedAt": started}}, ready=True))
        while proc.poll() is None:
            if entry["kill"].wait(0.2):
                self.signal(proc, signal.SIGTERM)
                try:
                    proc.wait(max(entry.get("grace", 0), 2))
                except subprocess.TimeoutExpired:
                    pass
                break
        self.signal(proc, signal.SIGKILL)  # what is left of the container's processes dies with it
        code = proc.wait()
        code = 128 - code if code < 0 else code
        entry["done"].set()
        if not entry["kill"].is_set():
            self.status(pod, phase="Succeeded" if code == 0 else "Failed", conditions=self.conditions(False),
                        containerStatuses=self.container_status(container, {"terminated": {
                            "exitCode": code, "reason": "Completed" if code == 0 else "Error",
                            "startedAt": started, "finishedAt": now(), "containerID": f"envmgr://{proc.pid}"}}))
        self.wait_deleted(pod, entry)

    def wait_deleted(self, pod: dict, entry: dict) -> None:
        entry["done"].set()
        entry["kill"].wait()
        meta = pod["metadata"]
        self.remove(meta["namespace"], meta["name"], meta["uid"])

    @staticmethod
    def signal(proc, sig) -> None:
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    # ------------------------------------------------------------------ logs (the kubelet's /containerLogs)

    def serve(self, cert: str, key: str) -> None:
        agent = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                parts = url.path.strip("/").split("/")
                query = dict(urllib.parse.parse_qsl(url.query))
                if parts == ["stats"]:
                    body = json.dumps({"log_requests": agent.log_requests}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if len(parts) != 4 or parts[0] != "containerLogs":
                    self.send_error(404)
                    return
                uid = agent.logs.get((parts[1], parts[2]))
                entry = agent.pods.get(uid) if uid else None
                key = f"{parts[1]}/{parts[2]}"
                agent.log_requests[key] = agent.log_requests.get(key, 0) + 1
                if entry is None or not os.path.exists(entry["log"]):
                    body = f'container "{parts[3]}" in pod "{parts[2]}" is waiting to start'.encode()
                    self.send_response(400)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                follow = query.get("follow") == "true"
                cut_at = time.monotonic() + entry["cut"] if entry["cut"] else None
                try:
                    with open(entry["log"], "rb") as f:
                        data = f.read()
                        tail = query.get("tailLines")
                        if tail is not None:
                            data = b"".join(data.splitlines(keepends=True)[-int(tail):]) if int(tail) else b""
                        self.chunk(data)
                        while follow:
                            done = entry["done"].is_set()
                            more = f.read()
                            if more:
                                self.chunk(more)
                            elif done or (cut_at and time.monotonic() > cut_at):
                                break
                            else:
                                time.sleep(0.1)
                    self.chunk(b"", end=True)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def chunk(self, data: bytes, end: bool = False) -> None:
                if data:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                if end:
                    self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--state", required=True)
    parser.add_argument("--image", action="append", default=[], help="NAME=DIR:DIR (the image's PATH)")
    agent = Agent(parser.parse_args())

    def stop(*_):
        with agent.lock:
            for entry in agent.pods.values():
                if entry["proc"] is not None:
                    Agent.signal(entry["proc"], signal.SIGKILL)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    agent.serve(sys.argv[sys.argv.index("--cert") + 1], sys.argv[sys.argv.index("--key") + 1])
    agent.register()
    agent.watch()


if __name__ == "__main__":
    main()
