"""What an update would change, before it happens: a resolved package set against the serving lock.

Pure (no I/O): locks and resolves come in as text or {name: version}; `resolve.py` produces them.
The text for people is text.changes_text (shared by the CLI and the magics).
Also the text side of the `pin` action: requested packages rewritten as `==` pins of the serving lock.
"""
from __future__ import annotations

import re
from typing import Optional

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

#: A conda package file in an explicit lock: .../<name>-<version>-<build>.conda (or .tar.bz2).
CONDA_FILE_RE = re.compile(r"(?P<name>.+)-(?P<version>[^-]+)-(?P<build>[^-]+?)(?:\.conda|\.tar\.bz2)\Z")
PIP_LINE_RE = re.compile(r"\A\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(?:==\s*(?P<version>[^\s;#]+)|@\s*(?P<url>\S+))")


def key(name: str) -> str:
    return canonicalize_name(name)


def parse_lock(text: str) -> dict:
    """{normalized name: (name, version)} of a serving lock: `uv pip freeze` lines, or a conda explicit lock
    (URL lines, then `# pip name==version`); pip entries win over conda ones of the same name, as in the prefix."""
    conda, pip = {}, {}
    for raw in (text or "").splitlines():
        line = raw.strip()
        if not line or line.startswith("@"):
            continue
        if line.startswith("# pip "):
            _pip_line(line[len("# pip "):], pip)
        elif line.startswith("#"):
            continue
        elif "://" in line.split(" @ ", 1)[0] and " @ " not in line:  # a conda package URL
            m = CONDA_FILE_RE.fullmatch(line.split("#", 1)[0].rstrip("/").rpartition("/")[2])
            if m:
                conda[key(m["name"])] = (m["name"], m["version"])
        else:
            _pip_line(line, pip)
    return {**conda, **pip}


def _pip_line(line: str, into: dict) -> None:
    m = PIP_LINE_RE.match(line)
    if m:
        into[key(m["name"])] = (m["name"], m["version"] or ("@ " + m["url"]))


def _version_key(version: str):
    try:
        return (1, Version(version))
    except InvalidVersion:  # a conda version packaging does not read (1.2.3a_b): numbers, then words
        return (0, tuple((0, int(p), "") if p.isdigit() else (-1, 0, p) for p in re.split(r"[._+-]", version)))


def _first_release(version: str) -> str:
    try:
        return str(Version(version).release[0])
    except (InvalidVersion, IndexError):
        return re.split(r"[._+!-]", version.split("!", 1)[-1], 1)[0]


def is_major(old: str, new: str) -> bool:
    """API.md: a change is major when the first release number changed (1.26.4 → 2.1.3)."""
    return _first_release(old) != _first_release(new)


def diff(old: dict, new: dict, requested: set, old_requested: Optional[set] = None,
         old_python: Optional[str] = None, new_python: Optional[str] = None) -> dict:
    """API.md's `changes`: old and new are parse_lock-shaped ({key: (name, version)}); `requested` are the
    normalized names the new spec names (`old_requested`: the old spec's, for what is removed)."""
    old_requested = requested if old_requested is None else old_requested
    packages = []
    for k in sorted(set(old) | set(new)):
        before, after = old.get(k), new.get(k)
        if before and after and before[1] == after[1]:
            continue
        if not before:
            change, major = "added", False
        elif not after:
            change, major = "removed", False
        else:
            newer = _version_key(after[1]) > _version_key(before[1])
            change, major = ("upgraded" if newer else "downgraded"), is_major(before[1], after[1])
        packages.append({"name": (after or before)[0], "from": before[1] if before else None,
                         "to": after[1] if after else None, "change": change, "major": major,
                         "requested": k in (requested if after else old_requested)})
    python = None
    if old_python and new_python and old_python != new_python:
        python = {"from": old_python, "to": new_python}
    return {"python": python, "packages": packages}


# ---------------------------------------------------------------- pin what I have


def pin_requirements(text: str, lock: dict) -> str:
    """requirements.txt text with each requirement the lock holds pinned to its lock version (`name==1.2.3`,
    extras, marker and a trailing comment kept); other lines (options, URLs, continuations) stay as they are."""
    out = []
    for raw in text.splitlines(keepends=True):
        body, nl = (raw[:-1], "\n") if raw.endswith("\n") else (raw, "")
        line, hashmark, comment = _split_comment(body)
        stripped = line.strip()
        if not stripped or stripped.startswith("-") or stripped.endswith("\\") or "--hash" in stripped:
            out.append(raw)
            continue
        try:
            req = Requirement(stripped)
        except InvalidRequirement:
            out.append(raw)
            continue
        found = lock.get(key(req.name))
        if req.url or not found or found[1].startswith("@"):
            out.append(raw)
            continue
        extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
        marker = f" ; {req.marker}" if req.marker else ""
        out.append(f"{req.name}{extras}=={found[1]}{marker}{hashmark}{comment}{nl}")
    return "".join(out)


def _split_comment(line: str) -> tuple:
    m = re.search(r"(\A|\s)#", line)
    if not m:
        return line, "", ""
    cut = m.start() + len(m[1])
    return line[:cut].rstrip(), "  " if line[:cut].strip() else "", line[cut:]


CONDA_NAME_RE = re.compile(r"\A(?P<channel>[^\s:]+::)?(?P<name>[A-Za-z0-9_.-]+)")


def pin_environment(text: str, deps: list, pip_deps: list, lock: dict) -> str:
    """environment.yaml text with its dependency lines (conda.Dependency: line, text) pinned with `==`; python is
    left to the `python` field. Lines are replaced in place, so comments and layout stay."""
    lines = text.splitlines(keepends=True)
    for dep, pip in [(d, False) for d in deps] + [(d, True) for d in pip_deps]:
        if "\n" in dep.text or not 0 < dep.line <= len(lines):
            continue
        if pip:
            pinned = pin_requirements(dep.text, lock).rstrip("\n")
        else:
            m = CONDA_NAME_RE.match(dep.text)
            found = lock.get(key(m["name"])) if m else None
            if not m or m["name"] == "python" or not found or found[1].startswith("@"):
                continue
            pinned = f"{m['channel'] or ''}{m['name']}=={found[1]}"
        if pinned != dep.text and dep.text in lines[dep.line - 1]:
            lines[dep.line - 1] = lines[dep.line - 1].replace(dep.text, pinned, 1)
    return "".join(lines)


def satisfied(requirements: list, lock: dict) -> bool:
    """Whether every (name, specifier text) is met by the lock's version of that name; a specifier of None
    (one PEP 440 cannot read, such as a conda `1.26.*`) is never taken as met."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    for name, spec in requirements:
        found = lock.get(key(name))
        if not found or spec is None:
            return False
        if not spec:
            continue
        try:
            if not SpecifierSet(spec).contains(found[1], prereleases=True):
                return False
        except (InvalidSpecifier, InvalidVersion):
            return False
    return True
