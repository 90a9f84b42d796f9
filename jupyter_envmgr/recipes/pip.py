"""pip environments through uv: a venv, the judged requirements, the lock."""
from __future__ import annotations

import asyncio
import json
import os
from typing import Optional

from ..requirements import normalized_requirements, parse_requirements, requirement_names
from ..spec import EnvSpec

REQUIREMENTS = "requirements.txt"
UV_ARCHIVES = "archive-v0"  # where uv's cache keeps unpacked wheels, which installs link file by file


def validate(book, spec: EnvSpec) -> None:
    """Nothing beyond policy.py, which reads and judges the requirements text."""


def pinned_python(packages: str, offered: list, default: str) -> Optional[str]:
    return None  # a requirements.txt pins no interpreter


def write_inputs(spec: EnvSpec, paths) -> None:
    """`steps` writes the requirements (it has the policy, which inlines the -r files it allows)."""


def judged_requirements(book, spec: EnvSpec) -> str:
    """The lines policy judged, re-written: comments, continuations, ${VAR}s and -r files never reach uv raw."""
    if book.policy is not None:
        lines = book.policy.check_requirement_lines(spec.packages, variables=spec.env_vars)
    else:
        lines = parse_requirements(spec.packages, spec.env_vars)
    return normalized_requirements(lines)


def steps(book, spec: EnvSpec, paths, base_packages: list) -> list:
    from . import Step, _write, bytecode_step

    judged = judged_requirements(book, spec)
    _write(os.path.join(paths.build_dir, REQUIREMENTS), judged)
    tools = book.tools
    return [
        Step("venv", [tools.uv, "venv", "--no-project", "--python", tools.python_for(spec.python), paths.prefix]),
        Step("install", [tools.uv, "pip", "install", "--python", paths.python,
                         "-r", os.path.join(paths.build_dir, REQUIREMENTS), *base_packages],
             base=unnamed(base_packages, requirement_names(judged))),
        bytecode_step(tools, paths.python, archives=os.path.join(tools.uv_cache_dir, UV_ARCHIVES)),
        Step("lock", [tools.uv, "pip", "freeze", "--python", paths.python], stdout=paths.lock),
    ]


def unnamed(base_packages: list, named: set) -> list:
    """The base packages the requirements do not name themselves (`pandas>=2` is pandas)."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    out = []
    for entry in base_packages:
        try:
            name = canonicalize_name(Requirement(entry).name)
        except InvalidRequirement:
            name = canonicalize_name(entry)
        if name not in named:
            out.append(entry)
    return out


async def installed(book, prefix: str) -> list:
    """What uv sees in the prefix: [{"name", "version"}]."""
    import uv  # the server's own uv: tools.uv is what build pods run, maybe not a path here

    proc = await asyncio.create_subprocess_exec(
        uv.find_uv_bin(), "pip", "list", "--format", "json", "--python", os.path.join(prefix, "bin", "python"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=dict(os.environ, NO_COLOR="1"),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    except asyncio.TimeoutError:
        proc.kill()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"uv pip list failed: {err.decode(errors='replace').strip()}")
    return [{"name": p["name"], "version": p["version"]} for p in json.loads(out or b"[]")]
