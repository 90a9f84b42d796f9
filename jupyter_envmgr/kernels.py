"""Kernelspecs for ready environments, on the root storage where every server of the root finds them.

A kernelspec runs the serving revision's own interpreter (`envs/<ns>/<name>/rev-N/bin/python`) and
is rewritten atomically when another revision starts serving, so a running kernel keeps its whole
revision until it restarts (a kernel on `current` would import half its modules from the next one).
Written atomically: a new spec is a temp dir renamed into place; a changed one is an atomic replace
of its kernel.json; an unchanged one is not written at all.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
from typing import Callable, Iterable, Optional

from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

from .layout import Layout
from .store import atomic_write, shared_dir_mode

PREFIX = "envmgr-"
#: The modules kernels import for %envmgr: standard library + IPython only, copied onto the root.
MAGIC_MODULES = ("__init__.py", "_version.py", "client.py", "text.py", "cli.py", "magics.py", "inuse.py")


def kernel_name(namespace: str, name: str, default_namespace: str) -> str:
    """`envmgr-<name>`, or `envmgr-<ns>.<name>` elsewhere ('.' is never in a name, so no clash)."""
    return f"{PREFIX}{name}" if namespace == default_namespace else f"{PREFIX}{namespace}.{name}"


def _logos() -> list:
    try:
        from ipykernel.kernelspec import RESOURCES
    except ImportError:  # pragma: no cover - ipykernel is a dependency
        return []
    return [os.path.join(RESOURCES, f) for f in ("logo-32x32.png", "logo-64x64.png", "logo-svg.svg")
            if os.path.exists(os.path.join(RESOURCES, f))]


class KernelRegistry:
    """Writes, removes and resyncs our kernelspecs in one or more kernel directories.

    A spec goes into `<root>/jupyter/kernels` of its environment's root (shared by every server that mounts
    that root; one root per cluster), and into `extra_dirs` (the user's Jupyter data dir by default), which
    make the kernels visible to tools that know nothing of the root. A spec's name is short in the first
    namespace of its root, so every server of a root names it alike.
    """

    def __init__(self, layout: Layout, extra_dirs: Iterable[str], default_namespace: str, magics: bool = True):
        self.layout = layout
        self.extra_dirs = [os.path.abspath(d) for d in extra_dirs]
        self.default_namespace = default_namespace
        self.magics = magics
        #: Called (blocking, in the writer's thread) after specs changed on disk: with their names, or None for all.
        self.on_change: Optional[Callable[[Optional[list]], None]] = None

    @property
    def root_dirs(self) -> list:
        """The kernel dir of every root, the default root's first."""
        return [self.layout.kernels_dir_of(root) for root in self.layout.all_roots]

    @property
    def dirs(self) -> list:
        return self.root_dirs + self.extra_dirs

    def dirs_of(self, namespace: str) -> list:
        return [self.layout.kernels_dir_of(self.layout.root_of(namespace))] + self.extra_dirs

    def lib_dir(self, namespace: str) -> Optional[str]:
        return self.layout.lib_dir_of(self.layout.root_of(namespace)) if self.magics else None

    def name(self, namespace: str, name: str) -> str:
        """The kernelspec name of an environment (see kernel_name), short in its root's first namespace."""
        home = self.layout.namespaces_of(self.layout.root_of(namespace))
        return kernel_name(namespace, name, home[0] if home else self.default_namespace)

    def _changed(self, names: Optional[list]) -> None:
        if self.on_change is not None:
            self.on_change(names)

    def install_magics(self) -> None:
        """Put the %envmgr magics where our kernels import them from (PYTHONPATH=lib_dir).

        Environments do not carry this package; a copy of its few stdlib-only modules on the root
        lets every kernel of every server load `%envmgr` without touching the environment.
        """
        if not self.magics:
            return
        package = os.path.dirname(os.path.abspath(__file__))
        for root in self.layout.all_roots:
            self._install_magics(package, os.path.join(self.layout.lib_dir_of(root), "jupyter_envmgr"))

    @staticmethod
    def _install_magics(package: str, target: str) -> None:
        os.makedirs(target, exist_ok=True)
        for directory in (os.path.dirname(target), target):
            st = os.stat(directory)
            if st.st_uid == os.geteuid() and st.st_mode & 0o022:
                os.chmod(directory, shared_dir_mode())  # a group-writable lib/ lets anyone swap the package
        for module in MAGIC_MODULES:
            with open(os.path.join(package, module), "rb") as f:
                data = f.read()
            path = os.path.join(target, module)
            try:
                with open(path, "rb") as f:
                    if f.read() == data and _private(os.fstat(f.fileno())):
                        continue
            except FileNotFoundError:
                pass
            atomic_write(path, data)  # also replaces a copy that others could write: every kernel runs it

    def spec_for(self, record: dict, env: dict) -> dict:
        revision, namespace = record["ready_revision"], record["namespace"]
        python = os.path.join(self.layout.prefix(namespace, record["name"], revision), "bin", "python")
        argv = [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        env = dict(env, JUPYTER_ENVMGR_REVISION=str(revision))
        if self.magics:
            env = dict(env, PYTHONPATH=self.lib_dir(namespace))
            argv.append("--IPKernelApp.extensions=jupyter_envmgr")
        return {
            "argv": argv,
            "display_name": f"{record['name']} (Python {record['python']})"
            + ("" if record["namespace"] == self.default_namespace else f" [{record['namespace']}]"),
            "language": "python",
            "interrupt_mode": "signal",
            "env": env,
            "metadata": {
                "debugger": True,
                "envmgr": {
                    "name": record["name"],
                    "namespace": record["namespace"],
                    "revision": record["ready_revision"],
                    "root": self.layout.root_of(namespace),
                },
            },
        }

    def write(self, record: dict, env: dict) -> str:
        """Write (or rewrite, if it changed) the kernelspec of a ready environment in every kernel dir."""
        name = self.name(record["namespace"], record["name"])
        spec = json.dumps(self.spec_for(record, env), indent=2, sort_keys=True) + "\n"
        for directory in self.dirs_of(record["namespace"]):
            self._write_one(directory, name, spec)
        self._changed([name])
        return name

    def _write_one(self, directory: str, name: str, spec: str) -> None:
        os.makedirs(directory, exist_ok=True)
        target = os.path.join(directory, name)
        try:
            with open(os.path.join(target, "kernel.json")) as f:
                if f.read() == spec:
                    return
        except OSError:
            pass
        if os.path.isdir(target):
            atomic_write(os.path.join(target, "kernel.json"), spec)
            return
        tmp = tempfile.mkdtemp(dir=directory, prefix=".tmp-")
        try:
            for logo in _logos():
                shutil.copyfile(logo, os.path.join(tmp, os.path.basename(logo)))
            atomic_write(os.path.join(tmp, "kernel.json"), spec)
            os.chmod(tmp, shared_dir_mode())
            try:
                os.rename(tmp, target)
            except OSError:  # another server wrote it first: keep theirs, refresh the file
                atomic_write(os.path.join(target, "kernel.json"), spec)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def remove(self, namespace: str, name: str) -> None:
        kname = self.name(namespace, name)
        for directory in self.dirs_of(namespace):
            path = os.path.join(directory, kname)
            if self._ours(path):
                trash = tempfile.mkdtemp(dir=directory, prefix=".tmp-")
                with contextlib.suppress(FileNotFoundError):
                    os.rename(path, os.path.join(trash, "spec"))
                shutil.rmtree(trash, ignore_errors=True)
        self._changed([kname])

    def _ours(self, path: str) -> bool:
        """A kernelspec of one of our roots (others' `envmgr-*` specs, from another root, are left alone)."""
        try:
            with open(os.path.join(path, "kernel.json")) as f:
                meta = json.load(f).get("metadata", {}).get("envmgr", {})
        except (OSError, ValueError):
            return False
        return meta.get("root") in self.layout.all_roots

    def read(self, namespace: str, name: str) -> Optional[dict]:
        path = os.path.join(self.dirs_of(namespace)[0], self.name(namespace, name), "kernel.json")
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def names(self) -> set:
        found = set()
        for directory in self.dirs:
            with contextlib.suppress(FileNotFoundError):
                found.update(n for n in os.listdir(directory)
                             if n.startswith(PREFIX) and self._ours(os.path.join(directory, n)))
        return found

    def resync(self, wanted: dict, keep: Iterable[str] = ()) -> None:
        """Make the specs on disk match `wanted` ({kernel name: (record, env)}): write missing or changed
        ones, remove orphans, but never those in `keep` (environments whose records are damaged)."""
        keep = set(keep)
        for kname, (record, env) in wanted.items():
            spec = json.dumps(self.spec_for(record, env), indent=2, sort_keys=True) + "\n"
            for directory in self.dirs_of(record["namespace"]):
                self._write_one(directory, kname, spec)
        for directory in self.dirs:
            with contextlib.suppress(FileNotFoundError):
                for entry in os.listdir(directory):
                    path = os.path.join(directory, entry)
                    if entry.startswith(".tmp-"):
                        shutil.rmtree(path, ignore_errors=True)
                    elif entry.startswith(PREFIX) and entry not in wanted and entry not in keep and self._ours(path):
                        shutil.rmtree(path, ignore_errors=True)
        self._changed(None)


class CachingKernelSpecManager(KernelSpecManager):
    """The server's kernelspec manager, reading each kernelspec once per change instead of once per request.

    jupyter_client reads every kernel.json on every `/api/kernelspecs` (and, in a subclass, lists the
    kernel dirs once per spec); with 1,000 environments that is seconds per kernel-picker refresh. Here
    the specs are kept as the REST models the handler sends as they are: the KernelRegistry refreshes
    them (in its worker thread) right after it writes or removes one, and a request only stats the
    kernel dirs and the few specs that are not ours, re-reading what changed when another tool
    installed or removed one. A refresh re-reads only kernel.json files whose stat changed.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._lock = threading.Lock()
        self._stamp: Optional[tuple] = None
        self._models: dict = {}  # name -> (kernel.json stat, model with "resource_dir")
        self.ours: list = []  # the roots' kernel dirs: their specs change only through the registry

    def _current_stamp(self, models: Optional[dict] = None) -> tuple:
        dirs = []
        for directory in self.kernel_dirs:
            try:
                dirs.append((directory, os.stat(directory).st_mtime_ns))
            except OSError:
                dirs.append((directory, None))
        foreign = []
        for name, (_, model) in sorted((models if models is not None else self._models).items()):
            if os.path.dirname(model["resource_dir"]) not in self.ours:
                foreign.append((name, _stat(os.path.join(model["resource_dir"], "kernel.json"))))
        return tuple(dirs), tuple(foreign)

    def refresh(self, names: Optional[list] = None) -> None:
        """Blocking: re-read what changed on disk since the last refresh; with `names`, only those of ours
        (what the registry just wrote or removed: O(changed), not O(specs), after each build)."""
        if names is not None and self.ours and self._stamp is not None:
            self._update(names)
            return
        with self._lock:
            stamp_dirs = self._current_stamp({})[0]
            models = {}
            for name, resource_dir in self.find_kernel_specs().items():
                if os.path.basename(resource_dir).startswith("."):  # a spec being written (KernelRegistry's .tmp-)
                    continue
                stat = _stat(os.path.join(resource_dir, "kernel.json"))
                old = self._models.get(name)
                if old is not None and stat is not None and old[0] == stat and old[1]["resource_dir"] == resource_dir:
                    models[name] = old
                    continue
                try:
                    spec = self._get_kernel_spec_by_name(name, resource_dir)
                except (NoSuchKernel, FileNotFoundError):  # removed meanwhile
                    continue
                except Exception:
                    self.log.warning("Error loading kernelspec %r", name, exc_info=True)
                    continue
                models[name] = (stat, self._model(name, spec.to_dict(), resource_dir))
            self._models = models
            self._stamp = (stamp_dirs, self._current_stamp(models)[1])

    def _update(self, names: list) -> None:
        with self._lock:
            models = dict(self._models)
            for name in names:
                # The first of our dirs that holds it (kernel_dirs order), as a full refresh would find it.
                resource_dir = next((os.path.join(d, name) for d in self.ours
                                     if _stat(os.path.join(d, name, "kernel.json"))), os.path.join(self.ours[0], name))
                stat = _stat(os.path.join(resource_dir, "kernel.json"))
                try:
                    spec = self._get_kernel_spec_by_name(name, resource_dir) if stat else None
                except Exception:  # removed meanwhile, or unreadable: the next full refresh decides
                    spec = None
                if spec is not None:
                    models[name] = (stat, self._model(name, spec.to_dict(), resource_dir))
                elif name in models and os.path.dirname(models[name][1]["resource_dir"]) in self.ours:
                    del models[name]
            self._models = models
            # Our write moved the mtimes of the dirs it wrote into; specs of other tools keep their old stamp,
            # so an edit of theirs still shows on the next request.
            self._stamp = (self._current_stamp({})[0], self._stamp[1])

    def _model(self, name: str, spec: dict, resource_dir: str) -> dict:
        """The REST model of jupyter_server's kernelspecs handler, built once (its resources listed once)."""
        from jupyter_server.utils import url_path_join

        base_url = getattr(self.parent, "base_url", "/")
        resources = {}
        for entry in sorted(_listdir(resource_dir)):
            if entry in ("kernel.js", "kernel.css"):
                resources[entry] = url_path_join(base_url, "kernelspecs", name, entry)
            elif entry.startswith("logo-"):
                resources[os.path.splitext(entry)[0]] = url_path_join(base_url, "kernelspecs", name, entry)
        return {"name": name, "spec": spec, "resources": resources, "resource_dir": resource_dir}

    def _fresh(self) -> dict:
        if self._stamp is None or self._current_stamp() != self._stamp:
            self.refresh()
        return self._models

    def get_all_specs(self) -> dict:
        """{name: {"name", "spec", "resources", "resource_dir"}}: jupyter_server sends such models as they are."""
        return {name: dict(model, spec=dict(model["spec"])) for name, (_, model) in self._fresh().items()}

    def get_kernel_spec(self, kernel_name: str):
        found = self._fresh().get(kernel_name.lower())
        if found is None:
            return super().get_kernel_spec(kernel_name)
        model = found[1]
        return self.kernel_spec_class(resource_dir=model["resource_dir"], **json.loads(json.dumps(model["spec"])))


def _private(st: os.stat_result) -> bool:
    """Ours, and writable by nobody else."""
    return st.st_uid == os.geteuid() and not st.st_mode & 0o022


def _stat(path: str) -> Optional[tuple]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _listdir(path: str) -> list:
    try:
        return os.listdir(path)
    except OSError:
        return []
