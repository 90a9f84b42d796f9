"""Resolve a spec without installing it, for the dry runs that show `changes` (changes.py).

pip: `uv pip compile` of exactly what the build's install step gets (the judged requirements plus the base
packages, the build's uv settings), as an async subprocess. conda: the py-rattler solve that the build's
`conda_build install` runs, in a worker thread. Both are bounded by RESOLVE_TIMEOUT. A resolve that fails
raises the 422 the build would have ended with: its one line comes from the runner's own summary.
"""
from __future__ import annotations

import asyncio
import os

from . import changes, runner
from .errors import EnvmgrError, invalid
from .spec import EnvSpec

RESOLVE_TIMEOUT = 120.0  # seconds; an index or channel slower than this gets a 503, never a hang


async def resolve(book, spec: EnvSpec) -> dict:
    """{normalized name: (name, version)} the spec's build would install (changes.parse_lock's shape)."""
    if spec.manager == "conda":
        return await _conda(book, spec)
    from .recipes.pip import judged_requirements

    text = judged_requirements(book, spec) + "".join(f"{p}\n" for p in book.base_packages.get("pip", []))
    return await compile_pip(book, spec, text)


def _uv(book) -> str:
    if os.path.isfile(book.tools.uv):
        return book.tools.uv
    import uv  # the build's uv is a path in a build image: this server's own resolves the same way

    return uv.find_uv_bin()


def _python_args(book, spec: EnvSpec, python: str = "") -> list:
    """The interpreter the build's venv uses when it is here (markers as the build sees them), else its version."""
    try:
        path = book.tools.python_for(python or spec.python)
    except LookupError:
        path = ""
    if path and os.path.isfile(path):
        return ["--python", path]
    return ["--python-version", python or spec.python]


def compile_argv(book, spec: EnvSpec, python: str = "") -> list:
    return [_uv(book), "pip", "compile", "-", "--no-header", "--no-annotate", "--quiet", *_python_args(book, spec, python)]


async def compile_pip(book, spec: EnvSpec, text: str, python: str = "") -> dict:
    from .recipes import uv_env

    proc = await asyncio.create_subprocess_exec(
        *compile_argv(book, spec, python), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=dict(os.environ, **uv_env(spec, book.tools)), start_new_session=True)
    try:
        out, err = await asyncio.wait_for(proc.communicate(text.encode()), RESOLVE_TIMEOUT)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise _timeout() from None
    if proc.returncode != 0:
        raise _failed("install", proc.returncode, err.decode(errors="replace"))
    return changes.parse_lock(out.decode(errors="replace"))


def _failed(step: str, code: int, output: str) -> EnvmgrError:
    """The build's own one-line failure (runner.summarize), as the 422 of field packages."""
    message = runner.summarize(step, code, output.splitlines()[-200:])
    return EnvmgrError(422, "invalid_field", message, "packages")


def _timeout() -> EnvmgrError:
    return EnvmgrError(503, "resolve_timeout", f"resolving the packages took longer than {RESOLVE_TIMEOUT:.0f}s (an index or "
                                               "channel is slow); try the dry run again, or save without a preview")


async def _conda(book, spec: EnvSpec) -> dict:
    from . import conda

    settings = book.conda or conda.CondaSettings()
    resolved = conda.check(spec, settings, book.policy, book.base_packages.get("conda", []))
    try:
        solved = await asyncio.wait_for(asyncio.to_thread(_solve, resolved, settings), RESOLVE_TIMEOUT)
    except asyncio.TimeoutError:
        raise _timeout() from None
    if isinstance(solved, str):
        raise _failed("conda", 1, solved)
    out = dict(solved)
    if resolved.pip:  # the pip sub-list: what uv adds on top of the conda packages
        python = next((v for k, (_, v) in solved.items() if k == "python"), spec.python)
        pip = await compile_pip(book, spec, "\n".join(resolved.pip) + "\n", ".".join(python.split(".")[:2]))
        out.update({k: v for k, v in pip.items() if k not in solved or k in _pip_names(resolved.pip)})
    return out


def _pip_names(lines: list) -> set:
    from .requirements import requirement_names

    return {changes.key(n) for n in requirement_names("\n".join(lines) + "\n")}


def _solve(resolved, settings):
    """Blocking (a worker thread): the build's solve, without the install. The solver's failure comes back as
    the text the build prints, so the runner's summary reads it as it reads a build log."""
    import rattler

    from .conda_build import _explain

    async def solve():
        platform = str(rattler.Platform.current())
        gateway = rattler.Gateway(cache_dir=settings.repodata_dir or None)
        return await rattler.solve(sources=resolved.channels, specs=resolved.specs, gateway=gateway,
                                   platforms=[platform, "noarch"], virtual_packages=rattler.VirtualPackage.detect())

    try:
        records = asyncio.run(solve())
    except Exception as e:  # noqa: BLE001 - rattler's solver and fetch errors, as the build reports them
        kind = type(e).__name__
        what = "could not solve the environment" if "Solver" in kind else f"could not install the environment ({kind})"
        return f"error: {what}:\n{_explain(e)}"
    return {changes.key(r.name.normalized): (r.name.normalized, str(r.version)) for r in records}


# ---------------------------------------------------------------- what a spec names (requested) and its pins


def requested_names(spec: EnvSpec) -> set:
    """Normalized names the spec's packages name (pip requirements; conda dependencies and the pip sub-list)."""
    if spec.manager != "conda":
        from .requirements import requirement_names

        return requirement_names(spec.packages)
    deps, pip = _environment(spec)
    names = {changes.key(m["name"]) for m in (changes.CONDA_NAME_RE.match(d.text) for d in deps) if m}
    return names | _pip_names([d.text for d in pip])


def _environment(spec: EnvSpec) -> tuple:
    from .conda import parse_environment

    env = parse_environment(spec.packages)
    return env.specs, env.pip


def pinned_packages(spec: EnvSpec, lock: dict) -> str:
    """The spec's packages text with each requested package the lock holds pinned with `==` (changes.py)."""
    if spec.manager != "conda":
        return changes.pin_requirements(spec.packages, lock)
    deps, pip = _environment(spec)
    return changes.pin_environment(spec.packages, deps, pip, lock)


def requested_pins(spec: EnvSpec) -> list:
    """[(name, PEP 440 specifier text)] of the spec's requested packages (python is the `python` field's), for
    changes.satisfied: a conda `name==1.2` is the same exact pin; another conda spec (None) is not judged here."""
    if spec.manager != "conda":
        from .requirements import parse_requirements

        return [(l.requirement.name, str(l.requirement.specifier)) for l in parse_requirements(spec.packages)
                if l.requirement and not (l.requirement.marker and not l.requirement.marker.evaluate())]
    deps, pip = _environment(spec)
    out = []
    for d in deps:
        m = changes.CONDA_NAME_RE.match(d.text)
        if m and m["name"] != "python":
            rest = d.text[m.end():].strip()
            out.append((m["name"], rest if rest.startswith("==") and "*" not in rest else None if rest else ""))
    from .requirements import parse_requirements

    for d in pip:
        out += [(l.requirement.name, str(l.requirement.specifier)) for l in parse_requirements(d.text + "\n") if l.requirement]
    return out
