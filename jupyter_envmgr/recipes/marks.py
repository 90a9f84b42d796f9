"""Marks on what a revision has installed: `requested` (its spec names it), `base` (always installed) and
`required_by` (the installed packages that depend on it), so every client (REST, CLI, magics, panel) gets the
same answer instead of working it out alone. Everything is read from the spec text and the prefix itself."""
from __future__ import annotations

import os
import re
from typing import Optional

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from ..errors import EnvmgrError

NAME_RE = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _key(name: str) -> str:
    """One spelling for conda and pip names alike (PEP 503: `Foo_Bar` and `foo-bar` are one package)."""
    return canonicalize_name(name or "")


def _file_name(location: str) -> Optional[str]:
    """The distribution a bare wheel or sdist URL or path installs (`…/flask-3.0.0-py3-none-any.whl`)."""
    from packaging.utils import InvalidSdistFilename, InvalidWheelFilename, parse_sdist_filename, parse_wheel_filename

    egg = re.search(r"[#&]egg=([A-Za-z0-9._-]+)", location)
    if egg:
        return egg[1]
    file = location.split("#", 1)[0].split("?", 1)[0].split(";", 1)[0].strip().rstrip("/").rpartition("/")[2]
    try:
        return str(parse_wheel_filename(file)[0]) if file.endswith(".whl") else str(parse_sdist_filename(file)[0])
    except (InvalidWheelFilename, InvalidSdistFilename, ValueError):
        return None


def _pip_lines(text: str, variables: dict, policy=None) -> list:
    """The spec's lines as the build judged them (allowed -r files inlined); line by line when the whole no longer
    passes (a policy changed since the build), so one bad line never hides the names of the others."""
    from ..requirements import _classify, expand_variables, logical_lines, parse_requirements

    try:
        if policy is not None:
            return policy.check_requirement_lines(text, variables=variables)
        return parse_requirements(text, variables)
    except EnvmgrError:
        pass
    lines = []
    try:
        for lineno, raw in logical_lines(text):
            try:
                lines.append(_classify(lineno, expand_variables(lineno, raw, variables)))
            except EnvmgrError:
                continue
    except EnvmgrError:  # a NUL byte: nothing more to read
        pass
    return lines


def pip_requested(text: str, variables: Optional[dict] = None, policy=None) -> dict:
    """{canonical name: set of extras} of what requirements text asks for (direct URLs and files by the
    distribution they name)."""
    out: dict = {}
    for line in _pip_lines(text or "", variables or {}, policy):
        if line.requirement is not None:
            out.setdefault(_key(line.requirement.name), set()).update(_key(e) for e in line.requirement.extras)
        elif line.kind in ("url", "path"):
            name = _file_name(line.target or line.text)
            if name:
                out.setdefault(_key(name), set())
    return out


def conda_requested(text: str, variables: Optional[dict] = None, policy=None) -> tuple:
    """({conda name}, {canonical pip name: extras}) of an environment.yaml: its match-spec names and its `pip:`
    sub-list."""
    from .. import conda

    try:
        env = conda.parse_environment(text or "")
    except EnvmgrError:
        return set(), {}
    names = set()
    for dep in env.specs:
        try:
            spec = conda._match_spec(conda._without_bare_extras(dep, []))
        except EnvmgrError:
            continue
        name = spec.name.normalized if hasattr(spec.name, "normalized") else str(spec.name or "")
        if name and name != "*":
            names.add(name.lower())
    pip: dict = {}
    for dep in env.pip:
        for name, extras in pip_requested(dep.text + "\n", variables, policy).items():
            pip.setdefault(name, set()).update(extras)
    return names, pip


def base_names(entries: list) -> set:
    """Canonical names of base packages as the administrator lists them (`ipykernel`, `pandas>=2`, `python=3.12`)."""
    out = set()
    for entry in entries or []:
        m = NAME_RE.match(str(entry).rpartition("::")[2])
        if m:
            out.add(_key(m[1]))
    return out


# ---------------------------------------------------------------- the prefix's own metadata


def _site_packages(prefix: str) -> list:
    lib = os.path.join(prefix, "lib")
    try:
        return [os.path.join(lib, d, "site-packages") for d in sorted(os.listdir(lib))
                if d.startswith("python3") and os.path.isdir(os.path.join(lib, d, "site-packages"))]
    except OSError:
        return []


def _marker_environment(site: str) -> dict:
    """Markers as the prefix's interpreter would see them: its Python version, this machine's platform."""
    env = dict(default_environment())
    m = re.search(r"python(\d+)\.(\d+)", site)
    if m:
        env["python_version"] = f"{m[1]}.{m[2]}"
        env["python_full_version"] = f"{m[1]}.{m[2]}.0"
    return env


def _headers(path: str) -> tuple:
    """(Name, [Requires-Dist]) from a METADATA file's headers."""
    name, requires = None, []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.rstrip("\r\n"):  # the body starts; a line of spaces only continues a header (License)
                break
            key, _, value = line.partition(":")
            if key == "Name":
                name = value.strip()
            elif key == "Requires-Dist":
                requires.append(value.strip())
    return name, requires


def dependencies(prefix: str, requested_extras: Optional[dict] = None) -> dict:
    """{canonical name: {canonical names it depends on}} from what the prefix holds: conda-meta `depends` for
    conda packages, dist-info `Requires-Dist` for the others, with markers evaluated for the prefix's Python
    and an extra's dependencies counted only when something installed or requested asks for that extra."""
    from ..conda_build import conda_records

    graph: dict = {}
    for record in conda_records(prefix):
        deps = {_key(d.split()[0]) for d in record.get("depends") or [] if d.split() and not d.startswith("__")}
        graph.setdefault(_key(record.get("name", "")), set()).update(deps)
    conda_owned = set(graph)
    dists: dict = {}  # canonical name -> (marker environment, [Requirement])
    for site in _site_packages(prefix):
        environment = _marker_environment(site)
        try:
            entries = sorted(os.listdir(site))
        except OSError:
            continue
        for entry in entries:
            if not entry.endswith(".dist-info"):
                continue
            try:
                name, requires = _headers(os.path.join(site, entry, "METADATA"))
            except OSError:
                continue
            if not name or _key(name) in conda_owned:
                continue  # a conda package's own dist-info: its conda-meta depends already said it
            parsed = []
            for text in requires:
                try:
                    parsed.append(Requirement(text))
                except InvalidRequirement:
                    continue
            dists[_key(name)] = (environment, parsed)
    extras = {name: set(wanted) for name, wanted in (requested_extras or {}).items()}
    changed = True
    while changed:  # an extra asked for by one dependency can bring in more: until nothing new is asked
        changed = False
        for name, (environment, requires) in dists.items():
            active = [""] + sorted(extras.get(name, ()))
            for req in requires:
                dep = _key(req.name)
                if req.marker is not None and not any(_evaluate(req.marker, environment, e) for e in active):
                    continue
                graph.setdefault(name, set()).add(dep)
                new = {_key(e) for e in req.extras} - extras.get(dep, set())
                if new:
                    extras.setdefault(dep, set()).update(new)
                    changed = True
    return graph


def _evaluate(marker, environment: dict, extra: str) -> bool:
    try:
        return marker.evaluate(dict(environment, extra=extra))
    except Exception:  # noqa: BLE001 - a marker packaging cannot evaluate counts as not applying
        return False


def mark(packages: list, requested: set, base: set, graph: dict) -> list:
    """Each entry with `requested`, `base` and `required_by` (installed names, as the list spells them)."""
    shown = {_key(p.get("name", "")): p.get("name", "") for p in packages}
    required_by: dict = {}
    for requirer, deps in graph.items():
        if requirer not in shown:
            continue
        for dep in deps:
            if dep != requirer:
                required_by.setdefault(dep, set()).add(shown[requirer])
    out = []
    for p in packages:
        key = _key(p.get("name", ""))
        out.append(dict(p, requested=key in requested, base=key in base,
                        required_by=sorted(required_by.get(key, ()), key=str.lower)))
    return out


def marked(packages: list, manager: str, spec_text: str, variables: Optional[dict], base_packages: list,
           prefix: str, policy=None) -> list:
    """`packages` (what the prefix holds) marked against the spec that built it; blocking: run in a thread."""
    if manager == "conda":
        conda_names, pip = conda_requested(spec_text, variables, policy)
        requested = {_key(n) for n in conda_names} | set(pip)
    else:
        pip = pip_requested(spec_text, variables, policy)
        requested = set(pip)
    return mark(packages, requested, base_names(base_packages), dependencies(prefix, pip))
