"""Conda environments: environment.yaml, the channel policy, and the embedded py-rattler engine.

The server side (`CondaSettings`, `check`, `write_input`, `steps`, `installed`): parse and validate an
environment.yaml before anything is written, turn it into argv steps for `runner.py` that run the build-side
program (conda_build.py), and list what a built prefix holds. py-rattler is imported lazily here, only for
match-spec and channel parsing.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from typing import Optional

from .errors import EnvmgrError, forbidden, invalid
from .conda_build import conda_records, pip_dists, redact
from .requirements import parse_requirements
from .store import atomic_write

SOLVERS = ("rattler", "micromamba", "mamba", "conda")
ENV_KEYS = ("name", "channels", "dependencies", "variables", "prefix")
INPUT_FILE = "conda-env.json"
PIP_REQUIREMENTS = "pip-requirements.txt"



# ---------------------------------------------------------------- settings and channels


@dataclass
class CondaSettings:
    """What an administrator configured for conda environments (the app's conda_* traits)."""

    channels: list = field(default_factory=lambda: ["conda-forge"])
    allowed_channels: list = field(default_factory=list)  # empty: exactly `channels`
    channel_alias: str = ""  # empty: rattler's built-in alias
    solver: str = "rattler"
    pkgs_dir: str = ""
    repodata_dir: str = ""

    def _config(self):
        import rattler

        if self.channel_alias:
            return rattler.ChannelConfig(channel_alias=self.channel_alias.rstrip("/") + "/", root_dir=os.getcwd())
        return rattler.ChannelConfig(root_dir=os.getcwd())

    def channel_url(self, channel: str) -> str:
        """A channel name or URL as the base URL the solver fetches (always ending in '/')."""
        import rattler

        return rattler.Channel(channel, self._config()).base_url.rstrip("/") + "/"

    def allowed_urls(self) -> set:
        return {self.channel_url(c) for c in (self.allowed_channels or self.channels)}

    def binary(self) -> Optional[str]:
        return shutil.which(self.solver) if self.solver != "rattler" else None

    def available(self) -> bool:
        """Whether conda environments can be built right now (what /info's managers says)."""
        if self.solver == "rattler":
            import importlib.util

            return importlib.util.find_spec("rattler") is not None
        return self.binary() is not None


def channel_label(url: str, settings: Optional["CondaSettings"] = None) -> str:
    """How a package's channel is shown: its name under the configured alias, else its redacted URL."""
    url = url.rstrip("/") + "/"
    if settings is not None:
        for name in list(settings.channels) + list(settings.allowed_channels):
            try:
                if settings.channel_url(name) == url and "://" not in name:
                    return name
            except Exception:  # noqa: BLE001 - a label must never fail a listing
                continue
    return redact(url.rstrip("/"))


# ---------------------------------------------------------------- environment.yaml


@dataclass
class Dependency:
    line: int
    text: str


@dataclass
class EnvironmentFile:
    """An environment.yaml, parsed: what is solved with conda and what pip (uv) installs after it."""

    name: Optional[str] = None
    channels: list = field(default_factory=list)
    specs: list = field(default_factory=list)  # [Dependency]
    pip: list = field(default_factory=list)  # [Dependency]
    variables: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)  # what was ignored, for the build log


def _where(node) -> str:
    return f"line {node.start_mark.line + 1}"


def parse_environment(text: str) -> EnvironmentFile:
    """Parse environment.yaml text, refusing what conda would not accept (422 naming the line or key)."""
    import yaml

    if not text.strip():
        return EnvironmentFile()
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise invalid("packages", f"environment.yaml is not valid YAML: {where}{problem}") from None
    if root is None:
        return EnvironmentFile()
    if not isinstance(root, yaml.MappingNode):
        raise invalid("packages", "environment.yaml must be a mapping with 'channels' and 'dependencies', e.g. "
                                  "'dependencies:\\n  - numpy>=2\\n'")
    env = EnvironmentFile()
    seen = set()
    for key_node, value in root.value:
        key = key_node.value
        if key in seen:
            raise invalid("packages", f"environment.yaml {_where(key_node)}: key {key!r} appears twice")
        seen.add(key)
        if key not in ENV_KEYS:  # conda-lock's platforms, category, ...: conda ignores them, and so do we
            env.notes.append(f"environment.yaml {_where(key_node)}: key {key!r} is ignored (conda reads "
                             f"{', '.join(ENV_KEYS)})")
        elif key == "name":
            env.name = _scalar(value, "name")
        elif key == "prefix":
            _scalar(value, "prefix")  # exported files carry one; the server decides where envs live
        elif key == "channels":
            env.channels = [_scalar(item, "channels") for item in _sequence(value, "channels")]
        elif key == "variables":
            env.variables = _variables(value)
        elif key == "dependencies":
            _dependencies(value, env)
    return env


def _scalar(node, key: str) -> str:
    import yaml

    if not isinstance(node, yaml.ScalarNode) or node.value == "":
        raise invalid("packages", f"environment.yaml {_where(node)}: {key} must be a non-empty string")
    return str(node.value).strip()


def _sequence(node, key: str) -> list:
    import yaml

    if isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null"):
        return []
    if not isinstance(node, yaml.SequenceNode):
        raise invalid("packages", f"environment.yaml {_where(node)}: {key} must be a list ('- item' lines)")
    return node.value


def _variables(node) -> dict:
    import yaml

    from .spec import ENV_VAR_RE

    if not isinstance(node, yaml.MappingNode):
        raise invalid("packages", f"environment.yaml {_where(node)}: variables must be a mapping of NAME: value")
    out = {}
    for k, v in node.value:
        if not isinstance(v, yaml.ScalarNode) or not ENV_VAR_RE.fullmatch(str(k.value)):
            raise invalid("packages", f"environment.yaml {_where(k)}: variables: {k.value!r} must be a variable "
                                      "name (letters, digits, '_') with a plain value")
        out[str(k.value)] = str(v.value)
    return out


def _dependencies(node, env: EnvironmentFile) -> None:
    import yaml

    for item in _sequence(node, "dependencies"):
        if isinstance(item, yaml.MappingNode):
            keys = [k.value for k, _ in item.value]
            if keys != ["pip"]:
                raise invalid("packages", f"environment.yaml {_where(item)}: a mapping among dependencies may only "
                                          f"be the 'pip:' sub-list, not {', '.join(map(repr, keys))}")
            for sub in _sequence(item.value[0][1], "pip"):
                env.pip.append(Dependency(sub.start_mark.line + 1, _scalar(sub, "a pip requirement")))
        else:
            env.specs.append(Dependency(item.start_mark.line + 1, _scalar(item, "a dependency")))


# ---------------------------------------------------------------- validation (before anything is written)


@dataclass
class Resolved:
    """An environment.yaml checked against the server: what the build will solve and install."""

    channels: list  # base URLs, in priority order
    specs: list  # match spec strings, the python pin and base packages included
    pip: list  # requirement lines for uv
    variables: dict
    name: Optional[str]
    notes: list = field(default_factory=list)
    #: base packages added because the file does not name them: a solve that misses one says so
    added_base: list = field(default_factory=list)


#: `nbconvert[execute]>=7`: pip-style extras in a conda spec. conda's parser reads only key=value pairs
#: between brackets and drops the rest, so such a spec means the package without extras.
BARE_EXTRAS_RE = re.compile(r"\A(?P<head>(?:[^\s:\[]+::)?[A-Za-z0-9_.-]+)\[(?P<extras>[A-Za-z0-9_.,\s-]+)\](?P<rest>.*)\Z",
                            re.DOTALL)


def _without_bare_extras(dep: Dependency, notes: list) -> Dependency:
    m = BARE_EXTRAS_RE.fullmatch(dep.text)
    if not m:
        return dep
    text = m["head"] + m["rest"]
    notes.append(f"environment.yaml line {dep.line}: {dep.text!r} is read as {text!r}: conda packages have no "
                 f"extras ([{m['extras']}] is ignored, as conda ignores it)")
    return Dependency(dep.line, text)


def _match_spec(dep: Dependency):
    import rattler

    where = f"environment.yaml line {dep.line}: {dep.text!r}"
    target = dep.text.rpartition("::")[2]  # after an optional 'channel::'
    if target.startswith("-") or "://" in target or target.startswith(("/", ".", "~")):
        raise forbidden("packages", f"{where}: direct package URLs, paths and options are not allowed in "
                                    "dependencies; name a package from a channel, e.g. 'numpy>=2'")
    try:
        spec = rattler.MatchSpec(dep.text)
    except Exception as e:  # rattler raises its own InvalidMatchSpecError
        raise invalid("packages", f"{where} is not a conda match spec ({e}); write e.g. 'numpy>=2', "
                                  "'python=3.12' or 'pandas 2.2.*'") from None
    return spec


def _python_conflict(spec, python: str) -> bool:
    """Whether the file's python spec excludes the record's python version (X.Y or X.Y.Z)."""
    import rattler

    if spec.version is None or not python:
        return False
    vs = rattler.VersionSpec(str(spec.version))
    candidates = [python] if python.count(".") >= 2 else [python] + [f"{python}.{n}" for n in range(0, 40)]
    return not any(vs.matches(rattler.Version(v)) for v in candidates)


def pinned_python(text: str, offered: list, default: str) -> Optional[str]:
    """The offered X.Y that an environment.yaml's python pins allow (the default first), None when it pins none.

    Raises 422 naming the line when no offered version satisfies the pins.
    """
    import rattler

    from .errors import EnvmgrError

    try:
        env = parse_environment(text)
    except EnvmgrError:
        return None  # validation reports it
    pins = []
    for dep in env.specs:
        try:
            ms = _match_spec(_without_bare_extras(dep, []))
        except EnvmgrError:
            return None
        if str(ms.name.normalized if hasattr(ms.name, "normalized") else ms.name) == "python" and ms.version is not None:
            pins.append((dep, rattler.VersionSpec(str(ms.version))))
    if not pins:
        return None
    fits = [v for v in offered if all(vs.matches(rattler.Version(v)) for _, vs in pins)]
    if not fits:
        short = sorted({".".join(v.split(".")[:2]) for v in offered}, key=lambda v: tuple(map(int, v.split("."))))
        dep = pins[0][0]
        raise invalid("packages", f"environment.yaml line {dep.line}: {dep.text!r} asks for a Python this server does "
                                  f"not offer; offered: {', '.join(short)} (GET /envmgr/api/info); change the pin")
    if default and any(v == default or v.startswith(default + ".") for v in fits):
        return default
    best = max(fits, key=lambda v: tuple(int(p) for p in v.split(".") if p.isdigit()))
    return ".".join(best.split(".")[:2])


def check(spec, settings: CondaSettings, policy=None, base_packages=()) -> Resolved:
    """Everything about a conda spec that can be known before a build: raises 422/403 or returns the plan."""
    from packaging.utils import canonicalize_name

    env = parse_environment(spec.packages)
    allowed = settings.allowed_urls()
    setting = "c.EnvManagerApp.allowed_conda_channels" if settings.allowed_channels else "c.EnvManagerApp.conda_channels"

    def allow(channel: str, where: str) -> str:
        try:
            url = settings.channel_url(channel)
        except Exception as e:  # noqa: BLE001 - rattler's own parse error
            raise invalid("packages", f"{where}: {channel!r} is not a channel name or URL ({e})") from None
        if url not in allowed:
            names = sorted(settings.allowed_channels or settings.channels)
            raise forbidden("packages", f"{where}: channel {redact(channel)!r} is not allowed on this server; "
                                        f"allowed: {', '.join(map(redact, names)) or 'none'} (an administrator "
                                        f"sets {setting})")
        return url

    channels = []
    for name in env.channels:
        if name == "nodefaults":
            continue
        for one in (settings.channels if name == "defaults" else [name]):
            url = allow(one, "environment.yaml channels")
            if url not in channels:
                channels.append(url)
    if not channels:
        channels = [allow(c, "c.EnvManagerApp.conda_channels") for c in settings.channels]
    if not channels:
        raise invalid("packages", "no conda channel to solve with: name one under 'channels:' (an administrator "
                                  "sets c.EnvManagerApp.conda_channels)")

    specs, names, notes = [], set(), list(env.notes)
    for dep in env.specs:
        dep = _without_bare_extras(dep, notes)
        ms = _match_spec(dep)
        if ms.channel is not None and "::" in dep.text:  # conda-forge::numpy: that channel must be allowed too
            allow(dep.text.split("::", 1)[0].strip(), f"environment.yaml line {dep.line}")
        name = ms.name.normalized if hasattr(ms.name, "normalized") else str(ms.name)
        if name == "python":
            if _python_conflict(ms, spec.python):
                raise invalid("packages", f"environment.yaml line {dep.line}: {dep.text!r} conflicts with the "
                                          f"environment's python {spec.python}; change one of them so they agree")
        names.add(name)
        specs.append(dep.text)
    if spec.python:  # the record's python, always: a file's 'python>=3.12' alone could solve to any newer one
        specs.append(f"python={spec.python}")
        names.add("python")

    pip_lines = []  # the judged lines, normalized: what uv installs is what was checked
    for dep in env.pip:
        try:
            judged = (policy.check_requirement_lines(dep.text + "\n", "packages", spec.env_vars) if policy is not None
                      else parse_requirements(dep.text + "\n", spec.env_vars))
        except EnvmgrError as e:
            # Name the environment.yaml line, not the line within this one entry.
            m = re.search(r"line (\d+):", e.message)
            if m:
                real = dep.line + int(m[1]) - 1 + (1 if "\n" in dep.text else 0)  # a '|' block starts a line below
                e.message = e.message.replace(f"line {m[1]}:", f"environment.yaml line {real} (pip sub-list):", 1)
                e.args = (e.message,)
            raise
        pip_lines += [line.text for line in judged]
    pip_names = set()
    for line in pip_lines:
        m = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
        if m:
            pip_names.add(canonicalize_name(m[1]))
    added = []
    for base in base_packages:
        if base not in names and canonicalize_name(base) not in pip_names:
            specs.append(base)
            names.add(base)
            added.append(base)
    return Resolved(channels=channels, specs=specs, pip=pip_lines, variables=env.variables, name=env.name,
                    notes=notes, added_base=added)


# ---------------------------------------------------------------- recipe (steps for runner.py)


def write_input(resolved: Resolved, paths, settings: CondaSettings, env_name: str, bytecode_cache=None) -> str:
    """The build's conda inputs, next to its plan (owner-readable only: channel URLs may hold tokens)."""
    data = {
        "prefix": paths.prefix,
        "channels": resolved.channels,
        "specs": resolved.specs,
        "pip": resolved.pip,
        "variables": resolved.variables,
        "env_name": env_name,
        "pkgs_dir": settings.pkgs_dir,
        "repodata_dir": settings.repodata_dir,
        "lock": paths.lock,
        "activate_env": paths.activate_env,
        "solver": settings.solver,
        "notes": resolved.notes,
        "bytecode_cache": bytecode_cache,
    }
    path = os.path.join(paths.build_dir, INPUT_FILE)
    atomic_write(path, json.dumps(data, indent=2), 0o600)
    if resolved.pip:
        atomic_write(os.path.join(paths.build_dir, PIP_REQUIREMENTS), "\n".join(resolved.pip) + "\n", 0o600)
    return path


def steps(resolved: Resolved, paths, settings: CondaSettings, tools, env_name: str) -> list:
    """solve+link (py-rattler, or a conda binary), pip (uv), activate, lock: argv lists, no shell."""
    from .recipes import Step

    data = write_input(resolved, paths, settings, env_name, tools.bytecode_cache_dir)
    module = [tools.python, "-m", "jupyter_envmgr.conda_build"]  # the interpreter where the build runs
    # activate + lock come after the pip sub-list; without one they run in the install's own process.
    finish = ["compile", "activate", "lock"]
    if settings.solver == "rattler":
        conda = Step("conda", [*module, "install", *([] if resolved.pip else finish), data], base=resolved.added_base)
    else:
        binary = settings.binary() or settings.solver
        argv = [binary, "create", "--yes", "--prefix", paths.prefix, "--override-channels"]
        for url in resolved.channels:
            argv += ["--channel", url]
        env = {"CONDA_PKGS_DIRS": settings.pkgs_dir, "CONDA_CHANNEL_PRIORITY": "strict"}
        if settings.solver == "micromamba":
            env["MAMBA_ROOT_PREFIX"] = os.path.join(os.path.dirname(settings.pkgs_dir), "micromamba")
        conda = Step("conda", argv + ["--", *resolved.specs] if settings.solver == "conda" else argv + resolved.specs, env=env,
                     base=resolved.added_base)
    out = [conda]
    if resolved.pip:
        out.append(Step("pip", [tools.uv, "pip", "install", "--python", paths.python,  # compiled by "compile"
                                "-r", os.path.join(paths.build_dir, PIP_REQUIREMENTS)]))
    if resolved.pip or settings.solver != "rattler":
        out.append(Step("activate", [*module, *finish, data]))
    return out


# ---------------------------------------------------------------- what a prefix holds


def installed(prefix: str, settings: Optional[CondaSettings] = None) -> list:
    """[{"name", "version", "build", "source"}]: conda packages with their channel, then pip ones ("pypi")."""
    from packaging.utils import canonicalize_name

    pip = pip_dists(prefix)
    pip_names = {canonicalize_name(n) for n, _ in pip}
    out = []
    for r in conda_records(prefix):
        if canonicalize_name(r.get("name", "")) in pip_names and r.get("noarch") == "python":
            continue  # replaced by the pip sub-list
        out.append({"name": r.get("name"), "version": r.get("version"), "build": r.get("build", ""),
                    "source": channel_label(r.get("channel") or r.get("url", "").rsplit("/", 2)[0], settings),
                    "manager": "conda"})
    out += [{"name": n, "version": v, "source": "pypi", "manager": "pip"} for n, v in pip]
    return sorted(out, key=lambda p: p["name"].lower())


