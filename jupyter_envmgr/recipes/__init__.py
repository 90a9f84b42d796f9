"""Spec → build recipe: the argv steps that turn an EnvSpec into a prefix, with no shell.

One recipe, two executors: the plan written here is run by `runner.py`, either as a local
subprocess or in a Kubernetes Job's container, and both produce the same prefix. What differs
per manager lives in one module per manager (`pip.py`, `conda.py`), found through `RECIPES`.
"""
from __future__ import annotations

import asyncio
import copy
import json
import os
import sys
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Optional

from ..layout import relocate
from ..spec import EnvSpec
from ..store import atomic_write, make_dir


@dataclass
class Step:
    name: str
    argv: list
    env: dict = field(default_factory=dict)
    stdout: Optional[str] = None  # capture stdout into this file (the lock)
    timeout: Optional[float] = None
    #: base packages this step installs that the spec does not name: a failure about one says what it is
    base: list = field(default_factory=list)


@dataclass
class Toolchain:
    """Where the tools are, as seen by whatever runs the steps (this machine, or a build image)."""

    uv: str
    python_for: Callable[[str], str]  # requested version → interpreter path
    uv_cache_dir: str
    python_install_dir: Optional[str] = None
    extra_env: dict = field(default_factory=dict)
    #: The interpreter that runs build-side programs (`-m jupyter_envmgr.conda_build`) where the build runs:
    #: this server's for local builds, the build image's on Kubernetes (c.EnvManagerApp.kubernetes_python).
    python: str = sys.executable
    #: Compiled bytecode shared by every build (bytecode.py), on the root's filesystem; None: no sharing.
    bytecode_cache_dir: Optional[str] = None
    #: bytecode.py (standard library only) as a file where the build runs, so pip builds need nothing of
    #: ours in a build image: this package's own file here, a content-addressed copy on a cluster's volume.
    bytecode_program: str = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bytecode.py")


@dataclass
class BuildPaths:
    prefix: str
    build_dir: str
    log: Optional[str]
    resources_dir: str

    @property
    def python(self) -> str:
        return os.path.join(self.prefix, "bin", "python")

    @property
    def lock(self) -> str:
        return os.path.join(self.build_dir, "lock.txt")

    @property
    def result(self) -> str:
        return os.path.join(self.build_dir, "result.json")

    @property
    def plan(self) -> str:
        return os.path.join(self.build_dir, "plan.json")

    @property
    def init_env(self) -> str:
        return os.path.join(self.build_dir, "init.env")

    @property
    def activate_env(self) -> str:
        return os.path.join(self.build_dir, "activate.json")


def bytecode_step(tools: Toolchain, python: str, *dirs: str, archives: Optional[str] = None) -> Step:
    """Compiled here, once, so no kernel compiles .pyc files on shared storage at import time; what another
    build compiled from the same source file is linked from the cache, not compiled again. `archives`: uv's
    unpacked wheels, which then carry the bytecode into every later install themselves."""
    cache = ["--cache", tools.bytecode_cache_dir] if tools.bytecode_cache_dir else []
    if archives and tools.bytecode_cache_dir:  # no shared bytecode cache: leave uv's cache alone too
        cache += ["--archives", archives]
    return Step("bytecode", [python, "-I", tools.bytecode_program, *cache, *dirs])


#: Run by the build's interpreter on the finished prefix: no file or directory of it stays writable by group or
#: others (uv makes its venv's `.lock` 0666 on purpose, an init script may chmod anything). Symlinks are left.
SEAL = """
import os, stat, sys
uid = os.geteuid()
for top, dirs, files in os.walk(sys.argv[1]):
    for path in [top] + [os.path.join(top, n) for n in dirs + files]:
        st = os.lstat(path)
        if st.st_mode & 0o022 and st.st_uid == uid and not stat.S_ISLNK(st.st_mode):
            os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o022)
"""


def seal_step(tools: Toolchain, paths: BuildPaths) -> Step:
    """The last step: a team's readers can write nothing in a revision (DESIGN.md "Who writes")."""
    return Step("seal", [tools.python, "-I", "-c", SEAL, paths.prefix])


def init_step(spec: EnvSpec, paths: BuildPaths, timeout: float) -> list:
    if not spec.init_script.strip():
        return []
    script = os.path.join(paths.build_dir, "init.py")
    env = {"ENVMGR_RESOURCES_DIR": paths.resources_dir, "ENVMGR_ENV_FILE": paths.init_env, "PYTHONUNBUFFERED": "1"}
    return [Step("init", [paths.python, script], env=env, timeout=timeout)]


def uv_env(spec: EnvSpec, tools: Toolchain) -> dict:
    """uv settings through the environment: credentials in index URLs stay out of argv and the log."""
    env = {
        "UV_CACHE_DIR": tools.uv_cache_dir,
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_NO_PROGRESS": "1",
        "NO_COLOR": "1",
        "VIRTUAL_ENV": "",
    }
    if tools.python_install_dir:
        env["UV_PYTHON_INSTALL_DIR"] = tools.python_install_dir
    if spec.index_urls:
        env["UV_EXTRA_INDEX_URL"] = " ".join(spec.index_urls)
    env.update(tools.extra_env)
    return env


def write_plan(spec: EnvSpec, paths: BuildPaths, steps: list, env: dict, timeout: float, max_log_bytes: int = 0) -> str:
    """Write the inputs of a build (requirements, init script, plan) into its build dir (`steps` made it)."""
    recipe(spec.manager).write_inputs(spec, paths)
    if spec.init_script.strip():
        _write(os.path.join(paths.build_dir, "init.py"), spec.init_script)
    plan = {
        "log": paths.log,
        "result": paths.result,
        "timeout": timeout,
        "max_log_bytes": max_log_bytes,
        "env": env,
        "steps": [asdict(s) for s in steps],
    }
    # The plan may hold index credentials: readable by its owner only.
    _write(paths.plan, json.dumps(plan, indent=2), mode=0o600)
    return paths.plan


def _write(path: str, text: str, mode: int = 0o644) -> None:
    """Whole or not at all: a runner that a dead server launched may be reading the inputs being rewritten."""
    atomic_write(path, text, mode)


def read_env_file(path: str) -> dict:
    """KEY=VALUE lines an init script wrote (ENVMGR_ENV_FILE); other lines are ignored."""
    values = {}
    try:
        with open(path) as f:
            for line in f:
                key, sep, value = line.rstrip("\n").partition("=")
                key = key.strip()
                if sep and key.isidentifier():
                    values[key] = value
    except FileNotFoundError:
        pass
    return values


def recipe(manager: str):
    """The module that knows `manager`'s recipe (validate, pinned_python, steps, write_inputs, installed)."""
    from . import conda, pip

    recipes = {"pip": pip, "conda": conda}
    if manager not in recipes:
        raise ValueError(f"no recipe for manager {manager!r}")
    return recipes[manager]


class RecipeBook:
    """Knows every manager's recipe: validates a spec's packages and turns it into steps + env."""

    def __init__(self, tools: Toolchain, base_packages: dict, init_script_timeout: float = 600.0,
                 policy=None, conda=None):
        self.tools = tools
        self.base_packages = base_packages
        self.init_script_timeout = init_script_timeout
        self.policy = policy  # checks the pip sub-list of an environment.yaml
        self.conda = conda  # conda.CondaSettings, or None when this server builds no conda environments

    def rooted(self, old_root: str, new_root: str) -> "RecipeBook":
        """This book for builds stored under `new_root` (another cluster's storage): the caches and the
        uv-managed Pythons under `old_root` move to the same places under `new_root`, which the build mounts."""
        if old_root == new_root:
            return self
        book = copy.copy(self)
        book.tools = replace(self.tools, **{key: relocate(getattr(self.tools, key), old_root, new_root) for key in
                                            ("uv_cache_dir", "python_install_dir", "bytecode_cache_dir", "bytecode_program")})
        if self.conda is not None:
            book.conda = replace(self.conda, pkgs_dir=relocate(self.conda.pkgs_dir, old_root, new_root),
                                 repodata_dir=relocate(self.conda.repodata_dir, old_root, new_root))
        return book

    def validate(self, spec: EnvSpec) -> None:
        """Manager-specific checks beyond spec.py and policy.py."""
        recipe(spec.manager).validate(self, spec)

    def pinned_python(self, manager: str, packages: str, offered: Optional[list] = None,
                      default: str = "") -> Optional[str]:
        """The X.Y a request without `python` gets from the python its packages pin (offered ones only)."""
        return recipe(manager).pinned_python(packages, list(offered or []), default)

    def steps(self, spec: EnvSpec, paths: BuildPaths, with_init: bool = True) -> tuple:
        """The build's steps and environment; its build dir is made here, as the recipe writes inputs into it."""
        make_dir(paths.build_dir)
        steps = recipe(spec.manager).steps(self, spec, paths, self.base_packages.get(spec.manager, []))
        if with_init:
            steps += init_step(spec, paths, self.init_script_timeout)
        return steps + [seal_step(self.tools, paths)], uv_env(spec, self.tools)

    async def installed(self, manager: str, prefix: str, spec_text: Optional[str] = None,
                        variables: Optional[dict] = None) -> list:
        """What is really installed in a prefix: [{"name", "version"}], read from the prefix itself; given the
        packages text that built it, each entry also says `requested`, `base` and `required_by` (marks.py)."""
        packages = await recipe(manager).installed(self, prefix)
        if spec_text is None:
            return packages
        from . import marks

        return await asyncio.to_thread(marks.marked, packages, manager, spec_text, variables,
                                       self.base_packages.get(manager, []), prefix, self.policy)
