"""The build-side conda program: `python -m jupyter_envmgr.conda_build COMMAND... INPUT.json`, run by the
runner where the build runs (the server's interpreter locally, the image's in a Job); standard library and
py-rattler only.

`install` solves with py-rattler and links into the revision's prefix through the shared package cache;
`compile` gives every file bytecode (bytecode.py); `activate` captures what activating the prefix gives, once,
into a JSON dict the manager merges into the kernelspec's env (no shell runs at kernel start); `lock` writes
the explicit lock (URLs with hashes). The pip sub-list is installed by uv between `install` and `activate`.
The server side (environment.yaml, channel policy, steps) is conda.py.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from typing import Optional
from urllib.parse import urlsplit

PROGRESS = "[envmgr-progress]"

#: Variables a shell sets by itself; never part of what activation adds.
SHELL_NOISE = {"_", "SHLVL", "PWD", "OLDPWD", "BASHOPTS", "SHELLOPTS", "BASH_VERSINFO", "IFS", "PS1", "PS2", "PS4", "PPID"}
#: The one shell program of the package: evaluate every activate.d script of $1 and dump the result
#: into $2. Fixed text; the prefix and the output path are positional arguments, never interpolated.
ACTIVATE_SCRIPT = 'for f in "$1"/etc/conda/activate.d/*.sh; do if [ -f "$f" ]; then . "$f"; fi; done; env -0 >"$2"'


def redact(url: str) -> str:
    """https://user:token@host/x → https://***@host/x; conda tokens (/t/<token>/) hidden too."""
    parts = urlsplit(url)
    if "@" in parts.netloc:
        url = parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()
    return re.sub(r"/t/[^/]+/", "/t/***/", url)


def write_text(path: str, text: str, mode: int = 0o644) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)


# ---------------------------------------------------------------- what a prefix holds


def conda_records(prefix: str) -> list:
    """The conda-meta/*.json records of a prefix (what conda, mamba and rattler all write)."""
    meta = os.path.join(prefix, "conda-meta")
    records = []
    try:
        names = sorted(os.listdir(meta))
    except FileNotFoundError:
        return []
    for fn in names:
        if fn.endswith(".json"):
            try:
                with open(os.path.join(meta, fn)) as f:
                    records.append(json.load(f))
            except (OSError, ValueError):
                continue
    return records


def pip_dists(prefix: str) -> list:
    """Distributions installed into the prefix by an installer other than conda (uv, pip): [(name, version)]."""
    out = []
    for site in _site_packages(prefix):
        for entry in sorted(os.listdir(site)):
            if not entry.endswith(".dist-info"):
                continue
            dist = os.path.join(site, entry)
            try:
                with open(os.path.join(dist, "INSTALLER")) as f:
                    installer = f.read().strip()
            except OSError:
                installer = ""
            if installer in ("conda", ""):
                continue
            name = version = None
            try:
                with open(os.path.join(dist, "METADATA"), encoding="utf-8", errors="replace") as f:
                    for line in f:
                        if not line.strip():
                            break
                        if line.startswith("Name:"):
                            name = line[5:].strip()
                        elif line.startswith("Version:"):
                            version = line[8:].strip()
            except OSError:
                continue
            if name and version:
                out.append((name, version))
    return out


def _site_packages(prefix: str) -> list:
    lib = os.path.join(prefix, "lib")
    try:
        return [os.path.join(lib, d, "site-packages") for d in sorted(os.listdir(lib))
                if d.startswith("python3") and os.path.isdir(os.path.join(lib, d, "site-packages"))]
    except FileNotFoundError:
        return []


def explicit_lock(prefix: str, platform: str) -> str:
    """An explicit lock: every conda package as URL#sha256 (or #md5), then the pip packages."""
    lines = [
        "# jupyter-envmgr lock of a conda environment: an explicit list of every package (URL and hash).",
        "# Recreate: conda create --name <env> --file <this file>, then install the '# pip' lines with pip.",
        f"# platform: {platform}",
        "@EXPLICIT",
    ]
    for r in sorted(conda_records(prefix), key=lambda r: r.get("name", "")):
        url = redact(r.get("url", ""))
        if r.get("sha256"):
            lines.append(f"{url}#sha256:{r['sha256']}")
        elif r.get("md5"):
            lines.append(f"{url}#{r['md5']}")
        else:
            lines.append(url)
    for name, version in sorted(pip_dists(prefix), key=lambda p: p[0].lower()):
        lines.append(f"# pip {name}=={version}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- commands


def progress(fraction: float, message: str) -> None:
    print(f"{PROGRESS} {max(0.0, min(1.0, fraction)):.3f} {message}", flush=True)


def _reporter(start: float = 0.2):
    """py-rattler's install callbacks → throttled progress lines (made here: rattler is imported lazily)."""
    try:
        from rattler import InstallerReporter
    except ImportError:  # an older py-rattler: no reporter, no link progress
        return None

    class Reporter(InstallerReporter):
        def __init__(self):
            self.total = 0
            self.downloads = 0
            self.downloaded = 0
            self.linked = 0
            self.last = 0.0

        def _emit(self, message: str, force: bool = False) -> None:
            now = time.monotonic()
            if not force and now - self.last < 0.25:
                return
            self.last = now
            done = (self.downloaded + self.linked) / max(1, self.downloads + self.total)
            progress(start + (1 - start) * done, message)

        def on_transaction_start(self, total_operations):
            self.total = total_operations
            self._emit(f"installing {total_operations} packages", force=True)

        def on_download_start(self, cache_entry):
            self.downloads += 1
            return cache_entry

        def on_download_completed(self, download_idx):
            self.downloaded += 1
            self._emit(f"downloaded {self.downloaded} packages")

        def on_link_start(self, operation, package_name):
            return operation

        def on_link_complete(self, index):
            self.linked += 1
            self._emit(f"linked {self.linked}/{self.total} packages", force=self.linked == self.total)

    return Reporter()


def _explain(error: Exception) -> str:
    """The solver's explanation with its tree drawn in plain text."""
    text = str(error).strip()
    for glyph, plain in (("├─ ", "- "), ("└─ ", "- "), ("│  ", "   "), ("│", " ")):
        text = text.replace(glyph, plain)
    return text


async def solve_and_install(data: dict, reporter: Optional[object] = None, show: bool = True) -> list:
    """Solve `data["specs"]` on `data["channels"]` and link the result into `data["prefix"]` (py-rattler)."""
    import rattler

    platform = str(rattler.Platform.current())
    gateway = rattler.Gateway(cache_dir=data.get("repodata_dir") or None)
    started = time.monotonic()
    if show:
        print(f"solving {len(data['specs'])} specs ({', '.join(data['specs'])}) for {platform} on "
              f"{', '.join(redact(c) for c in data['channels'])}", flush=True)
    records = await rattler.solve(
        sources=data["channels"], specs=data["specs"], gateway=gateway, platforms=[platform, "noarch"],
        virtual_packages=rattler.VirtualPackage.detect(),
    )
    if show:
        print(f"solved in {time.monotonic() - started:.1f}s: {len(records)} packages", flush=True)
        for r in sorted(records, key=lambda r: r.name.normalized):
            print(f"  {r.name.normalized} {r.version} {r.build} ({redact(str(r.channel).rstrip('/'))})", flush=True)
        progress(0.2, f"solved: {len(records)} packages")
    await rattler.install(
        records, target_prefix=data["prefix"], cache_dir=data.get("pkgs_dir") or None,
        show_progress=False, reporter=reporter,
    )
    return records


def cmd_install(data: dict) -> int:
    import asyncio

    import rattler  # noqa: F401 - fail here, with a clear message, when py-rattler is missing

    started = time.monotonic()
    try:
        records = asyncio.run(solve_and_install(data, reporter=_reporter()))
    except Exception as e:  # noqa: BLE001 - the solver's and the installer's own errors
        kind = type(e).__name__
        what = "could not solve the environment" if "Solver" in kind else f"could not install the environment ({kind})"
        print(f"error: {what}:", flush=True)
        print(_explain(e), flush=True)
        return 1
    print(f"installed {len(records)} conda packages into {data['prefix']} in {time.monotonic() - started:.1f}s", flush=True)
    progress(1.0, f"installed {len(records)} conda packages")
    return 0


def activation(prefix: str, env_name: str, variables: dict, base_env: Optional[dict] = None,
               bash: Optional[str] = None) -> dict:
    """What activating `prefix` adds to a process's environment, as kernelspec env values.

    `conda env config vars` (conda-meta/state), CONDA_PREFIX and PATH, and whatever the prefix's
    etc/conda/activate.d/*.sh scripts export, evaluated once here. PATH-like values keep the kernel's
    own value as ${VAR} (jupyter_client substitutes it at kernel start); other '$' are escaped.
    """
    base = dict(base_env if base_env is not None else os.environ)
    state_vars = _state_vars(prefix)
    start = dict(base)
    start.update({"CONDA_PREFIX": prefix, "CONDA_DEFAULT_ENV": env_name,
                  "PATH": os.path.join(prefix, "bin") + os.pathsep + base.get("PATH", "")})
    start.update(state_vars)
    start.update(variables)
    after = dict(start)
    scripts = sorted(f for f in _listdir(os.path.join(prefix, "etc", "conda", "activate.d")) if f.endswith(".sh"))
    if scripts:
        bash = bash or shutil.which("bash")
        if bash is None:
            print("warning: bash is not installed, so the activate.d scripts "
                  f"{', '.join(scripts)} could not be evaluated; their variables are missing", flush=True)
        else:
            after = _run_activate_scripts(bash, prefix, start)
    out = {}
    for key, value in after.items():
        if key in SHELL_NOISE or key.startswith("BASH_FUNC_") or base.get(key) == value:
            continue
        old = base.get(key)
        escaped = value.replace("$", "$$")
        if old and old in value and key.endswith("PATH"):
            escaped = value.replace(old, "\0").replace("$", "$$").replace("\0", "${" + key + "}")
        out[key] = escaped
    return out


def _listdir(path: str) -> list:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def _state_vars(prefix: str) -> dict:
    try:
        with open(os.path.join(prefix, "conda-meta", "state")) as f:
            return {str(k): str(v) for k, v in (json.load(f).get("env_vars") or {}).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def _run_activate_scripts(bash: str, prefix: str, env: dict) -> dict:
    import tempfile

    fd, out = tempfile.mkstemp(prefix="envmgr-activate-")
    os.close(fd)
    try:
        proc = subprocess.run([bash, "--noprofile", "--norc", "-c", ACTIVATE_SCRIPT, "envmgr-activate", prefix, out],
                              env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=120, cwd=prefix)
        for line in (proc.stdout + proc.stderr).decode(errors="replace").splitlines():
            print(f"  activate.d: {line}", flush=True)
        if proc.returncode != 0:
            raise RuntimeError(f"the activate.d scripts of {prefix} failed (exit {proc.returncode})")
        with open(out, "rb") as f:
            pairs = [p.split(b"=", 1) for p in f.read().split(b"\0") if b"=" in p]
        return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}
    finally:
        os.unlink(out)


def cmd_activate(data: dict) -> int:
    prefix = data["prefix"]
    if data.get("variables"):
        # What `conda env config vars set` keeps: the environment.yaml's `variables:`.
        state = os.path.join(prefix, "conda-meta", "state")
        current = {}
        try:
            with open(state) as f:
                current = json.load(f)
        except (OSError, ValueError):
            pass
        current.setdefault("env_vars", {}).update(data["variables"])
        write_text(state, json.dumps(current, indent=2))
    scripts = sorted(f for f in _listdir(os.path.join(prefix, "etc", "conda", "activate.d")))
    print(f"evaluating activation of {prefix}: {len(scripts)} activate.d script(s)"
          + (f" ({', '.join(scripts)})" if scripts else ""), flush=True)
    env = activation(prefix, data.get("env_name", ""), {})
    for key in sorted(env):
        print(f"  {key}={env[key]}", flush=True)
    write_text(data["activate_env"], json.dumps(env, indent=2, sort_keys=True))
    return 0


def cmd_lock(data: dict) -> int:
    import platform as _platform

    machine = {"x86_64": "64", "aarch64": "aarch64", "arm64": "arm64", "ppc64le": "ppc64le"}.get(_platform.machine(), _platform.machine())
    system = {"linux": "linux", "darwin": "osx"}.get(sys.platform, sys.platform)
    text = explicit_lock(data["prefix"], f"{system}-{machine}")
    write_text(data["lock"], text)
    count = sum(1 for line in text.splitlines() if line and not line.startswith(("#", "@")))
    pips = sum(1 for line in text.splitlines() if line.startswith("# pip "))
    print(f"wrote the lock: {count} conda packages, {pips} pip packages", flush=True)
    return 0


def cmd_compile(data: dict) -> int:
    """Bytecode at build time: the prefix's own interpreter compiles its lib/ (its magic number, its
    optimization level), so a kernel on shared storage imports .pyc files and writes none; what another
    build compiled from the same package file is linked from the bytecode cache (bytecode.py).
    A file that does not compile (a package's deliberately broken test data) is noted, not fatal."""
    from . import bytecode

    prefix = data["prefix"]
    python = os.path.join(prefix, "bin", "python")
    lib = os.path.join(prefix, "lib")
    if not os.path.exists(python):
        print("no bin/python in the prefix: nothing to compile", flush=True)
        return 0
    started = time.monotonic()
    counts = bytecode.share(python, data.get("bytecode_cache"), [lib])
    if counts["failed"]:
        print(f"note: {counts['failed']} files of {lib} did not compile (they are imported from source, as before)", flush=True)
    print(f"bytecode in {time.monotonic() - started:.1f}s: {counts['linked']} linked from the cache, "
          f"{counts['compiled']} compiled", flush=True)
    return 0


COMMANDS = {"install": cmd_install, "compile": cmd_compile, "activate": cmd_activate, "lock": cmd_lock}


def main(argv: Optional[list] = None) -> int:
    """python -m jupyter_envmgr.conda_build COMMAND [COMMAND...] INPUT.json: the commands run in order, in one process."""
    argv = list(sys.argv[1:] if argv is None else argv)
    commands, path = argv[:-1], argv[-1] if argv else ""
    if not commands or any(c not in COMMANDS for c in commands):
        print(f"usage: python -m jupyter_envmgr.conda_build {{{'|'.join(COMMANDS)}}}... INPUT.json", file=sys.stderr)
        return 2
    with open(path) as f:
        data = json.load(f)
    if commands[0] == "install" or data.get("solver", "rattler") != "rattler":  # once per build, into its log
        for note in data.get("notes", []):
            print(f"note: {note}", flush=True)
    took = []  # each command's time, for the last line (as the runner's own last line lists its steps)
    for command in commands:
        if len(commands) > 1:
            print(f"--> {command}", flush=True)
        started = time.monotonic()
        code = COMMANDS[command](data)
        if code:
            return code
        took.append(f"{command} {time.monotonic() - started:.2f}s")
    if len(commands) > 1:
        print(f"--> done ({', '.join(took)})", flush=True)
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Leave without interpreter finalization: py-rattler's runtime threads can crash (SIGSEGV) while
    # Python tears down after a failed solve, which would turn "exit 1, here is why" into "exit -11".
    os._exit(code)
