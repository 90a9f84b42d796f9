"""The jupyter_server extension: configuration (traitlets), wiring, start and stop."""
from __future__ import annotations

import asyncio
import os
import socket
import sys

from jupyter_core.paths import jupyter_data_dir
from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, Dict, Float, Int, List, Unicode, default, validate

from . import audit, gc, pythons, usage
from .builders.kubernetes import KubernetesConfig
from .builders.local import LocalBuilder
from .handlers import route_table
from .kernels import KernelRegistry
from ._version import __version__
from .layout import Layout, relocate
from .manager import EnvironmentManager, Settings
from .policy import Policy
from .recipes import RecipeBook, Toolchain
from .spec import Offer
from .store import Store

DEFAULT_PRESETS = [
    {"name": "data-analysis", "manager": "pip", "packages": "numpy\npandas\npyarrow\n"},
    {"name": "plotting", "manager": "pip", "packages": "matplotlib\nseaborn\nplotly\n"},
    {"name": "classic-ml", "manager": "pip", "packages": "scikit-learn\nxgboost\nlightgbm\n"},
    {"name": "deep-learning-cpu", "manager": "pip", "packages": "torch\ntorchvision\n"},
    {"name": "deep-learning-gpu", "manager": "pip", "packages": "torch\ntorchvision\nnvidia-ml-py\n"},
    {"name": "data-analysis", "manager": "conda", "packages": "dependencies:\n  - numpy\n  - pandas\n  - pyarrow\n"},
    {"name": "plotting", "manager": "conda", "packages": "dependencies:\n  - matplotlib\n  - seaborn\n"},
]


def default_root() -> str:
    return os.environ.get("JUPYTER_ENVMGR_ROOT") or os.path.join(jupyter_data_dir(), "envmgr")


class EnvManagerApp(KubernetesConfig, ExtensionApp):
    """Environments for notebooks: build them on shared storage, register them as kernels."""

    name = "jupyter_envmgr"
    description = __doc__

    root_dir = Unicode(
        config=True,
        help="""Where environments, logs, caches and kernelspecs live. Every Jupyter server that
        mounts the same root sees the same environments. Default: $JUPYTER_ENVMGR_ROOT, else
        <jupyter data dir>/envmgr.""",
    )

    @default("root_dir")
    def _default_root(self):
        return default_root()

    backend = Unicode("local", config=True, help="Where builds run: 'local' (subprocesses, the default) or 'kubernetes' (batch/v1 Jobs).")

    python_interpreters = Dict(
        config=True,
        help="""Interpreters offered to environments, {"3.12.3": "/path/to/python3"}. Empty (the
        default): the server's own plus those found on the machine (pyenv, uv-managed, /usr/bin).""",
    )
    default_python = Unicode(config=True, help="Python version of environments that do not name one. Default: the server's own X.Y, when offered.")

    @default("default_python")
    def _default_python(self):
        return f"{sys.version_info.major}.{sys.version_info.minor}"

    namespaces = List(Unicode(), ["default"], config=True, help="Namespaces (scopes) environments live in; the first is the default.")
    max_concurrent_builds = Int(2, config=True, help="Builds that run at once; the rest wait as 'pending'.")
    keep_revisions = Int(3, config=True, help="Revisions kept per environment for rollback (the ready one is always kept).")
    build_timeout = Float(3600.0, config=True, help="Seconds a build may run before it is stopped and failed.")
    init_script_timeout = Float(600.0, config=True, help="Seconds an environment's init script may run.")
    gc_interval = Float(
        86400.0, config=True,
        help="""Seconds between garbage collections of old revisions, orphan prefixes and unused cache
        entries (never the current or ready revision). 0 turns the schedule off; `jupyter envmgr gc` runs one now.""",
    )
    rerun_init_script = Bool(
        True, config=True,
        help="""Run an environment's init script again on every build. False: a rebuild whose script is
        unchanged reuses the variables the ready revision's run declared (its resources/ stay as they are).""",
    )
    allowed_index_urls = List(Unicode(), config=True, help="URL prefixes of package indexes users may name in index_urls; empty allows any http(s) index.")
    allowed_requirement_options = List(Unicode(), config=True, help="Option lines (e.g. '--pre') allowed in requirements text; others are refused with 403.")
    allow_direct_urls = Bool(False, config=True, help="Allow 'name @ https://...' requirements.")
    allowed_source_dirs = List(Unicode(), config=True, help="Directories under which local archives and '-e' source installs are allowed.")
    max_environments = Int(200, config=True, help="Most environments this root may hold across namespaces.")
    max_packages_bytes = Int(65536, config=True, help="Largest packages text (requirements.txt or environment.yaml) accepted, in bytes.")
    max_body_bytes = Int(1024 * 1024, config=True, help="Largest request body accepted by the REST API, in bytes (larger gets 413).")
    max_log_bytes = Int(
        16 * 1024 * 1024, config=True,
        help="""Largest build log kept per revision, in bytes; past it the log ends with a truncation note
        (the build goes on). 0: no limit.""",
    )
    lease_seconds = Float(
        30.0, config=True,
        help="""How long a queued or running build stays with the server that launched it without a word from
        that server. Servers sharing a root renew their leases every few seconds; when a server is gone,
        another one takes its builds over after this long (re-attaching to, or launching, them).""",
    )
    uv_cache_dir = Unicode(config=True, help="uv's package cache. Default <root>/cache/uv: on the same filesystem as the environments, so installs hard-link.")

    @default("uv_cache_dir")
    def _default_uv_cache(self):
        return os.path.join(self.root_dir, "cache", "uv")

    base_packages = Dict(
        {"pip": ["ipykernel"], "conda": ["python", "ipykernel"]},
        config=True, help="Packages always installed per manager (not editable by users); ipykernel is needed for kernels.",
    )
    presets = List(Dict(), DEFAULT_PRESETS, config=True, help="Named package sets users can add to an environment: [{name, manager, packages}].")
    conda_channels = List(
        Unicode(), ["conda-forge"], config=True,
        help="""Channels conda environments are solved against, in priority order, when their environment.yaml
        names none ('defaults' in a file means these). Names resolve under conda_channel_alias; full URLs
        (e.g. a private channel server) are used as they are.""",
    )
    allowed_conda_channels = List(
        Unicode(), config=True,
        help="""Channels an environment.yaml may name (names or URLs); any other is refused with 403 before
        anything is written. Empty (the default): exactly the channels of conda_channels, so users cannot
        pull from a channel an administrator did not pick.""",
    )
    conda_channel_alias = Unicode(
        "", config=True,
        help="""Base URL that channel names resolve under: 'conda-forge' becomes <alias>/conda-forge. Set it to a
        mirror or a private channel server (e.g. https://mirror.example/conda). Empty: the solver's own default.""",
    )
    conda_solver = Unicode(
        "rattler", config=True,
        help="""What builds conda environments: 'rattler' (the default, embedded py-rattler, nothing to install),
        or 'micromamba', 'mamba' or 'conda' found on PATH, run by the same recipe (the pip sub-list, activation
        and the lock stay ours). /info lists 'conda' among managers only when this solver is available.""",
    )

    @validate("conda_solver")
    def _check_conda_solver(self, proposal):
        from .conda import SOLVERS

        if proposal["value"] not in SOLVERS:
            raise ValueError(f"conda_solver must be one of {', '.join(SOLVERS)}")
        return proposal["value"]

    user_kernelspecs = Bool(
        True, config=True,
        help="""Also write kernelspecs into the user's Jupyter data dir (<data dir>/kernels) so that every
        Jupyter tool (jupyter kernelspec list, nbconvert, papermill) finds them with no setting. Where the
        root is shared storage, set JUPYTER_PATH=<root>/jupyter for those tools instead.""",
    )

    reuse_revisions = Bool(
        True, config=True,
        help="""A pip create or rebuild whose resolved lock equals a ready revision's (same namespace, python and
        index URLs, no init script) becomes a hard-linked copy of that revision instead of an install.""",
    )

    cache_kernelspecs = Bool(
        True, config=True,
        help="""Serve /api/kernelspecs from specs read once per change (jupyter_envmgr.kernels.CachingKernelSpecManager)
        instead of reading every kernel.json on every request. Used only where the server's
        kernel_spec_manager_class is jupyter_client's default.""",
    )

    advisory_db = Unicode(
        "", config=True,
        help="""Advisory database the locks of ready revisions are audited against (GET .../audit), in the
        OSV format: a directory of OSV JSON files, an OSV zip export (e.g. an ecosystem's all.zip), or the
        URL of an OSV-compatible query service (POST <url>/v1/query). Empty (the default): no audit, and
        /audit answers 503. A local directory or zip needs no network.""",
    )
    audit_interval = Float(
        86400.0, config=True,
        help="""Seconds an audit result stays fresh: every ready revision is audited again on this schedule
        (in a worker thread) and /audit recomputes a result older than this. 0 turns the schedule off
        (/audit then always checks anew).""",
    )

    service_url = Unicode(
        "", config=True,
        help="""The environment service (`jupyter envmgr service`) that writes this server's root. Set: this
        server reads only. Every envmgr route is forwarded there with this server's identity (its
        JupyterHub server token, or service_token), its /events are followed on one stream, and kernelspecs
        are read from root_dir, mounted read-only. Empty (the default): everything runs in this server.""",
    )
    service_token = Unicode(
        "", config=True,
        help="""The token this server presents to service_url (one of the service's c.EnvService.tokens).
        Empty: $JUPYTERHUB_API_TOKEN, the server token a JupyterHub gives each user's server.""",
    )
    service_timeout = Float(120.0, config=True, help="Seconds a forwarded request may take at the service before it is a 503.")

    usage_days = Float(
        30.0, config=True,
        help="""Days the kernel starts on each environment are kept (who, which notebook, which revision), for
        GET .../usage `recent` and the delete and rollback dialogs. 0 records no uses at all.""",
    )

    @validate("namespaces")
    def _check_namespaces(self, proposal):
        from .spec import NAME_RE

        value = proposal["value"]
        if not value or any(not NAME_RE.match(ns) for ns in value):
            raise ValueError("namespaces must be a non-empty list of DNS-1123 labels")
        return value

    # ------------------------------------------------------------ wiring

    def interpreters(self) -> dict:
        return dict(self.python_interpreters) or pythons.discover(pythons.candidate_paths())

    def initialize_settings(self):
        self.root_dir = os.path.abspath(os.path.expanduser(self.root_dir))
        self.settings["envmgr_version"] = __version__
        if self.service_url:
            self._initialize_reader()
            return
        kube = None
        if self.backend == "kubernetes":  # traits: KubernetesConfig (c.EnvManagerApp.kubernetes_*)
            from .builders.kubernetes import builder_from_config

            kube = builder_from_config(self)
        # Each namespace's root: its cluster's storage (Kubernetes: the claim's mount path); locally, root_dir.
        roots = kube.namespace_roots() if kube else {ns: self.root_dir for ns in self.namespaces}
        root = roots[self.namespaces[0]]
        store = Store(root, roots=roots)
        found = kube.interpreters() if kube else self.interpreters()
        policy = Policy(
            allowed_index_urls=list(self.allowed_index_urls),
            allowed_requirement_options=list(self.allowed_requirement_options),
            allow_direct_urls=self.allow_direct_urls,
            allowed_source_dirs=list(self.allowed_source_dirs),
            max_environments=self.max_environments,
            max_concurrent_builds=self.max_concurrent_builds,
            max_packages_bytes=self.max_packages_bytes,
            base_packages={k: list(v) for k, v in self.base_packages.items()},
        )
        import uv

        tools = Toolchain(uv=uv.find_uv_bin(), python_for=lambda v: pythons.pick(found, v), uv_cache_dir=self.uv_cache_dir,
                          bytecode_cache_dir=os.path.join(root, "cache", "bytecode"))
        if kube:
            tools = kube.toolchain()
        from .conda import CondaSettings

        conda = CondaSettings(
            channels=list(self.conda_channels), allowed_channels=list(self.allowed_conda_channels),
            channel_alias=self.conda_channel_alias, solver=self.conda_solver,
            pkgs_dir=os.path.join(root, "cache", "conda-pkgs"), repodata_dir=os.path.join(root, "cache", "conda-repodata"),
        )
        book = RecipeBook(tools, policy.base_packages, self.init_script_timeout, policy=policy, conda=conda)
        managers = ["pip"] + (["conda"] if conda.available() else [])
        offer = Offer(
            python_versions=sorted(found),
            namespaces=list(roots),  # every cluster's; /info's `namespaces` are the default cluster's
            storages=kube.storages() if kube else [{"name": "default", "path": root, "access_mode": "ReadWriteMany"}],
            managers=managers,
            max_packages_bytes=self.max_packages_bytes,
        )
        short = pythons.short_versions(found)
        default_python = self.default_python if self.default_python in short else (short[-1] if short else "")
        extra = [os.path.join(jupyter_data_dir(), "kernels")] if self.user_kernelspecs and not self.is_service else []
        kernels = KernelRegistry(store, extra, self.namespaces[0])
        self.manager = EnvironmentManager(
            store, kube or LocalBuilder(), kernels, policy, offer, book,
            Settings(
                build_timeout=self.build_timeout,
                init_script_timeout=self.init_script_timeout,
                keep_revisions=self.keep_revisions,
                default_python=default_python,
                default_namespace=self.namespaces[0],
                presets=list(self.presets),
                rerun_init_script=self.rerun_init_script,
                max_log_bytes=self.max_log_bytes,
                lease_seconds=self.lease_seconds,
                # Stable across a restart on the same host and port, so a server re-attaches to its own builds at once.
                server_id=f"{socket.gethostname()}:{getattr(self.serverapp, 'port', 0)}",
                reuse_revisions=self.reuse_revisions,
            ),
            log=self.log,
        )
        self.settings.update({"envmgr_manager": self.manager, "envmgr_max_body_bytes": self.max_body_bytes})
        self.manager.auditor = audit.Auditor(self.advisory_db) if self.advisory_db else None
        self.settings.update(envmgr_auditor=self.manager.auditor, envmgr_audit_interval=self.audit_interval)
        self.manager.usage_book = usage.UsageBook(store, self.usage_days)
        self._add_kernel_dirs(kernels.root_dirs)
        self._cache_kernelspecs(kernels)

    @property
    def is_service(self) -> bool:
        """Run by `jupyter envmgr service`: the writer of a team's root, not a user's server."""
        from .service import EnvService

        return isinstance(self.serverapp, EnvService)

    def _initialize_reader(self) -> None:
        """A notebook server that reads: forward to the service, follow its events, read kernelspecs."""
        from .forward import Follower, Relay, ServiceClient
        from .kernels import CachingKernelSpecManager

        self.manager = None
        client = ServiceClient(self.service_url, self.service_token or os.environ.get("JUPYTERHUB_API_TOKEN", ""),
                               timeout=self.service_timeout)
        kernels_dir = Layout(self.root_dir).kernels_dir_of(self.root_dir)
        self._add_kernel_dirs([kernels_dir])
        ksm = getattr(self.serverapp, "kernel_spec_manager", None)
        refresh = (lambda names: None)
        if isinstance(ksm, CachingKernelSpecManager):
            ksm.ours = [kernels_dir]
            refresh = ksm.refresh
        relay = Relay()
        self.follower = Follower(client, relay, refresh, log=self.log)
        self.settings.update(envmgr_service=client, envmgr_relay=relay, envmgr_follower=self.follower)

    def _add_kernel_dirs(self, dirs: list):
        """Let this server's kernel picker see the kernelspecs of every root (no copy, no build)."""
        ksm = getattr(self.serverapp, "kernel_spec_manager", None)
        if ksm is not None:
            ksm.kernel_dirs = [d for d in dirs if d not in ksm.kernel_dirs] + list(ksm.kernel_dirs)

    def _link_jupyter_server_extension(self, serverapp):
        """Before the server makes its kernelspec manager: ours reads each spec once per change.

        Only in place of jupyter_client's own default; a manager an administrator configured is kept."""
        super()._link_jupyter_server_extension(serverapp)
        from jupyter_server.gateway.gateway_client import GatewayClient

        from .kernels import CachingKernelSpecManager

        configured = "kernel_spec_manager_class" in serverapp.config.get("ServerApp", {})
        if self.cache_kernelspecs and not configured and not GatewayClient.instance(parent=serverapp).gateway_enabled:
            serverapp.kernel_spec_manager_class = CachingKernelSpecManager

    def _cache_kernelspecs(self, kernels: KernelRegistry) -> None:
        """The registry refreshes the cached specs right after it changes one (in its worker thread)."""
        from .kernels import CachingKernelSpecManager

        ksm = getattr(self.serverapp, "kernel_spec_manager", None)
        if isinstance(ksm, CachingKernelSpecManager):
            ksm.ours = list(kernels.root_dirs)
            kernels.on_change = ksm.refresh

    def initialize_handlers(self):
        table = route_table()
        if self.service_url:
            from .forward import forward_table

            table = forward_table([path for path, _ in table])
        self.handlers.extend((f"/{path}", handler) for path, handler in table)

    async def _start_jupyter_server_extension(self, serverapp):
        if self.service_url:
            self._follow_task = asyncio.ensure_future(self.follower.run())
            self.log.info("jupyter_envmgr: reading root %s; changes go to the service at %s",
                          self.root_dir, self.settings["envmgr_service"].shown_url)
            return
        await self.manager.start()
        # What the server holds after start (modules, handlers, 1,000 records) lives as long as it does: kept out
        # of the collector's generations, a full collection that a worker thread triggers no longer holds the
        # interpreter (and so the event loop) for ~100 ms. bench_loop.py measures it.
        import gc as collector

        collector.freeze()
        self.log.info("jupyter_envmgr: root %s, backend %s", ", ".join(self.manager.store.all_roots), self.manager.builder.kind)
        if self.usage_days > 0:  # this server's kernels, reported to the writer (itself, or the service)
            self._usage_reporter = usage.UsageReporter(serverapp.web_app, self.manager.usage_book, self.manager.records.run,
                                                       self.manager.settings.server_id, self.log)
            self._usage_reporter.attach()
        if self.gc_interval > 0:
            self._gc_task = asyncio.ensure_future(self._collect_garbage_forever())
        if self.advisory_db and self.audit_interval > 0:
            self._audit_task = asyncio.ensure_future(self._audit_forever())

    async def _collect_garbage_forever(self):
        import uv

        while True:
            await asyncio.sleep(self.gc_interval)
            try:
                store = self.manager.store  # each root's caches (another cluster's: the same places under its root)
                caches = [relocate(self.uv_cache_dir, store.root, root) for root in store.all_roots]
                bytecode_caches = [relocate(self.manager.recipe_book.tools.bytecode_cache_dir, store.root, root)
                                   for root in store.all_roots]
                report = await gc.collect(self.manager.records, self.keep_revisions, uv.find_uv_bin(), caches,
                                          bytecode_cache_dirs=bytecode_caches)
                self.log.info("jupyter_envmgr gc: %s", report.summary())
            except Exception:  # housekeeping must never take the server down
                self.log.exception("jupyter_envmgr gc failed")

    def _audit_targets(self) -> list:
        """(revision, lock path, log path) of every ready revision on the root."""
        store, targets = self.manager.store, []
        for namespace in store.namespaces_on_disk():
            for record in store.list(namespace):
                if record.get("ready_revision"):
                    paths = self.manager.paths(namespace, record["name"], record["ready_revision"])
                    targets.append((record["ready_revision"], paths.lock, paths.log))
        return targets

    async def _audit_forever(self, scan: float = 60.0):
        """Audit ready revisions whose result is missing or older than audit_interval; a new revision's
        first audit comes within `scan` seconds of its switch, off the build's path."""
        auditor = self.settings["envmgr_auditor"]
        while True:
            try:
                count = await asyncio.to_thread(lambda: audit.audit_all(auditor, self._audit_targets(), self.audit_interval))
                if count:
                    self.log.info("jupyter_envmgr audit: %d revisions checked against %s", count, auditor.database)
            except Exception as e:  # an absent or slow database leaves every environment as it is
                self.log.warning("jupyter_envmgr audit failed: %s", e)
            await asyncio.sleep(min(scan, self.audit_interval))

    async def stop_extension(self):
        if getattr(self, "_usage_reporter", None):
            self._usage_reporter.stop()
        for task in (getattr(self, "_gc_task", None), getattr(self, "_audit_task", None), getattr(self, "_follow_task", None)):
            if task:
                task.cancel()
        if self.manager is not None:
            await self.manager.stop()
