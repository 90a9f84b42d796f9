"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager, kube-scheduler
(Debian's `kubernetes` source package, built once by get_binaries.sh) and node_agent.py as the one node.

TLS everywhere the API is spoken, RBAC on, service-account keys (so the token controller gives the
ServiceAccount of deploy/rbac.yaml a token, as a cluster does). Every process is started here and stopped by
its PID. The node lifecycle controller is off: the agent posts Ready once and never needs heartbeats.
"""
from __future__ import annotations

import datetime
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
VERSION = "1.20.5+really1.20.2"  # Debian bookworm's source package; get_binaries.sh pins the same
NODE = "envmgr-node"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def binaries() -> str:
    """The directory of the three binaries: built by get_binaries.sh on the first run, then cached (under the
    user's real home, not the temporary $HOME of pytest-jupyter)."""
    import pwd

    env = dict(os.environ)
    env.setdefault("JUPYTER_ENVMGR_KUBE_CACHE", os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(pwd.getpwuid(os.getuid()).pw_dir, ".cache"),
        "jupyter-envmgr-tests", "kube"))
    out = subprocess.run(["sh", os.path.join(HERE, "get_binaries.sh")], check=True, stdout=subprocess.PIPE, text=True,
                         env=env)
    return out.stdout.strip().splitlines()[-1]


def _pki(directory: str) -> dict:
    """A CA, the apiserver's serving certificate, an admin client certificate (system:masters), a serving
    certificate for the node agent and the service-account key pair; PEM files, returned by name."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    paths = {}

    def key_file(name, key):
        paths[name] = os.path.join(directory, name)
        with open(paths[name], "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                      serialization.NoEncryption()))

    def cert_file(name, cert):
        paths[name] = os.path.join(directory, name)
        with open(paths[name], "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))

    def subject(cn, org=None):
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        if org:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
        return x509.Name(attrs)

    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = (x509.CertificateBuilder().subject_name(subject("envmgr-test-ca")).issuer_name(subject("envmgr-test-ca"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    cert_file("ca.crt", ca)
    key_file("ca.key", ca_key)

    def issue(name, cn, org=None, server=False):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        builder = (x509.CertificateBuilder().subject_name(subject(cn, org)).issuer_name(ca.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2)))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.DNSName("kubernetes"), x509.DNSName("kubernetes.default.svc"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("10.0.0.1"))]),
                critical=False)
        cert_file(f"{name}.crt", builder.sign(ca_key, hashes.SHA256()))
        key_file(f"{name}.key", key)

    issue("apiserver", "kube-apiserver", server=True)
    issue("admin", "envmgr-test-admin", org="system:masters")
    issue("node", NODE, server=True)
    sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file("sa.key", sa)
    paths["sa.pub"] = os.path.join(directory, "sa.pub")
    with open(paths["sa.pub"], "wb") as f:
        f.write(sa.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return paths


class ControlPlane:
    """Start with `start()`, stop with `close()`; `restart_apiserver()` for the tests that need it."""

    def __init__(self, state_dir: str, bin_dir: str, images: dict):
        self.dir = state_dir
        self.bin = bin_dir
        self.images = images  # image name -> directories its PATH holds (what the node agent "pulls")
        os.makedirs(os.path.join(self.dir, "logs"), exist_ok=True)
        self.pki = _pki(self.dir)
        self.etcd_port, self.etcd_peer = free_port(), free_port()
        self.port = free_port()
        self.kubelet_port = free_port()
        self.server = f"https://127.0.0.1:{self.port}"
        self.procs: dict = {}
        self.admin_kubeconfig = self.kubeconfig("admin", {"client-certificate": self.pki["admin.crt"],
                                                          "client-key": self.pki["admin.key"]})

    # ------------------------------------------------------------------ processes

    def _spawn(self, name: str, argv: list) -> None:
        log = open(os.path.join(self.dir, "logs", f"{name}.log"), "ab")
        self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        log.close()

    def _stop(self, name: str, timeout: float = 10.0) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def log_tail(self, name: str, lines: int = 30) -> str:
        try:
            with open(os.path.join(self.dir, "logs", f"{name}.log"), errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def _wait(self, what: str, ready, timeout: float = 60.0, proc: str = "") -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if proc and self.procs[proc].poll() is not None:
                raise RuntimeError(f"{proc} exited: {self.log_tail(proc)}")
            try:
                if ready():
                    return
            except Exception:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{what} not ready after {timeout}s: {self.log_tail(proc) if proc else ''}")

    def start_etcd(self) -> None:
        self._spawn("etcd", [
            "etcd", "--data-dir", os.path.join(self.dir, "etcd"), "--name", "envmgr-test",
            "--listen-client-urls", f"http://127.0.0.1:{self.etcd_port}",
            "--advertise-client-urls", f"http://127.0.0.1:{self.etcd_port}",
            "--listen-peer-urls", f"http://127.0.0.1:{self.etcd_peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.etcd_peer}",
            "--initial-cluster", f"envmgr-test=http://127.0.0.1:{self.etcd_peer}",
            "--unsafe-no-fsync",
        ])

    def start_apiserver(self) -> None:
        p = self.pki
        self._spawn("kube-apiserver", [
            os.path.join(self.bin, "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={self.port}",
            "--insecure-port=0", f"--cert-dir={os.path.join(self.dir, 'apiserver-certs')}",
            f"--tls-cert-file={p['apiserver.crt']}", f"--tls-private-key-file={p['apiserver.key']}",
            f"--client-ca-file={p['ca.crt']}",
            "--authorization-mode=RBAC",
            f"--service-account-key-file={p['sa.pub']}", f"--service-account-signing-key-file={p['sa.key']}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--api-audiences=https://kubernetes.default.svc.cluster.local",
            "--service-cluster-ip-range=10.0.0.0/24",
            f"--kubelet-client-certificate={p['admin.crt']}", f"--kubelet-client-key={p['admin.key']}",
            "--kubelet-preferred-address-types=InternalIP",
            "--enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultStorageClass,"
            "ResourceQuota,DefaultTolerationSeconds,Priority",
            "--enable-priority-and-fairness=false",
            "--profiling=false", "--v=1",
        ])
        self._wait("kube-apiserver", self._healthy, timeout=90, proc="kube-apiserver")

    def _healthy(self) -> bool:
        import ssl
        import urllib.request

        ctx = ssl.create_default_context(cafile=self.pki["ca.crt"])
        ctx.load_cert_chain(self.pki["admin.crt"], self.pki["admin.key"])
        with urllib.request.urlopen(f"{self.server}/readyz", context=ctx, timeout=2) as r:
            return r.status == 200

    def start_controllers(self) -> None:
        p = self.pki
        self._spawn("kube-controller-manager", [
            os.path.join(self.bin, "kube-controller-manager"),
            f"--kubeconfig={self.admin_kubeconfig}", "--leader-elect=false", "--port=0", "--secure-port=0",
            f"--service-account-private-key-file={p['sa.key']}", f"--root-ca-file={p['ca.crt']}",
            "--use-service-account-credentials=false",
            # No heartbeats to watch: the agent's node stays Ready; no cloud, no token cleaner noise.
            "--controllers=*,-nodelifecycle,-cloud-node-lifecycle,-route,-service",
            "--concurrent-gc-syncs=5", "--v=1",
        ])
        self._spawn("kube-scheduler", [
            os.path.join(self.bin, "kube-scheduler"),
            f"--kubeconfig={self.admin_kubeconfig}", "--leader-elect=false", "--port=0", "--secure-port=0", "--v=1",
        ])

    def start_agent(self) -> None:
        argv = [sys.executable, os.path.join(HERE, "node_agent.py"), "--kubeconfig", self.admin_kubeconfig,
                "--node", NODE, "--port", str(self.kubelet_port), "--cert", self.pki["node.crt"],
                "--key", self.pki["node.key"], "--state", os.path.join(self.dir, "node")]
        for image, dirs in self.images.items():
            argv += ["--image", f"{image}={os.pathsep.join(dirs)}"]
        self._spawn("node-agent", argv)

    def start(self) -> None:
        self.start_etcd()
        self.start_apiserver()
        self.start_controllers()
        self.start_agent()
        api = self.core()
        self._wait("the node", lambda: api.read_node(NODE).status.conditions, proc="node-agent")
        self._wait("the default ServiceAccount", lambda: api.read_namespaced_service_account("default", "default"),
                   proc="kube-controller-manager")

    def restart_apiserver(self, down: float = 3.0) -> None:
        self._stop("kube-apiserver")
        time.sleep(down)
        self.start_apiserver()

    def agent_stats(self) -> dict:
        """What the node agent counted (log requests per "namespace/pod")."""
        import json
        import ssl
        import urllib.request

        ctx = ssl.create_default_context(cafile=self.pki["ca.crt"])
        with urllib.request.urlopen(f"https://127.0.0.1:{self.kubelet_port}/stats", context=ctx, timeout=5) as r:
            return json.load(r)

    def close(self) -> None:
        for name in ("node-agent", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
            self._stop(name)

    # ------------------------------------------------------------------ clients and objects

    def kubeconfig(self, name: str, user: dict, contexts: dict | None = None) -> str:
        """A kubeconfig file with one user and one context per entry of `contexts` (name -> namespace)."""
        contexts = contexts or {name: "default"}
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": next(iter(contexts)),
            "clusters": [{"name": "envmgr-test", "cluster": {"server": self.server,
                                                              "certificate-authority": self.pki["ca.crt"]}}],
            "users": [{"name": name, "user": user}],
            "contexts": [{"name": c, "context": {"cluster": "envmgr-test", "user": name, "namespace": ns}}
                         for c, ns in contexts.items()],
        }
        path = os.path.join(self.dir, f"kubeconfig-{name}")
        with open(path, "w") as f:
            yaml.safe_dump(config, f)
        return path

    def client(self):
        from kubernetes import config

        return config.new_client_from_config(self.admin_kubeconfig)

    def core(self):
        from kubernetes import client

        return client.CoreV1Api(self.client())

    def apply(self, docs: list) -> None:
        """Create objects as the admin (kubectl apply's create half)."""
        from kubernetes import utils

        api = self.client()
        for doc in docs:
            utils.create_from_dict(api, doc)

    def namespace(self, name: str) -> None:
        self.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}])

    def volume(self, namespace: str, claim: str, path: str, access_mode: str = "ReadWriteMany",
               bind: bool = True) -> None:
        """A hostPath PersistentVolume on `path` and a claim that the PV controller binds to it (asynchronously,
        as in a cluster); bind=False leaves the claim Pending (it names a volume that does not exist)."""
        pv = f"{namespace}-{claim}"
        docs = []
        if bind:
            docs.append({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
                         "spec": {"capacity": {"storage": "10Gi"}, "accessModes": [access_mode],
                                  "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
                                  "hostPath": {"path": path, "type": "Directory"}}})
        docs.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim, "namespace": namespace},
                     "spec": {"accessModes": [access_mode], "storageClassName": "", "volumeName": pv,
                              "resources": {"requests": {"storage": "1Gi"}}}})
        self.apply(docs)

    def wait_bound(self, namespace: str, claim: str, timeout: float = 60.0) -> None:
        api = self.core()
        self._wait(f"claim {namespace}/{claim}",
                   lambda: api.read_namespaced_persistent_volume_claim(claim, namespace).status.phase == "Bound", timeout)

    def service_account_kubeconfig(self, namespace: str, account: str, contexts: dict) -> str:
        """A kubeconfig that authenticates with the ServiceAccount's token (the token controller's Secret)."""
        import base64

        api = self.core()

        def token():
            sa = api.read_namespaced_service_account(account, namespace)
            for ref in sa.secrets or []:
                secret = api.read_namespaced_secret(ref.name, namespace)
                if secret.type == "kubernetes.io/service-account-token" and secret.data and secret.data.get("token"):
                    return base64.b64decode(secret.data["token"]).decode()
            return None

        found = []
        self._wait(f"a token of {namespace}/{account}", lambda: found.append(token()) or found[-1])
        return self.kubeconfig(f"{namespace}-{account}", {"token": found[-1]}, contexts)
