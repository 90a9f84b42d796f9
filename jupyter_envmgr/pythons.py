"""The Python interpreters this server can base environments on.

Found once at start by reading the file system (pyenv's, uv-managed, the system's and the
server's own), then asked for their exact version; no network, no shell.
"""
from __future__ import annotations

import functools
import glob
import os
import pwd
import shutil
import subprocess
import sys
from typing import Iterable

MIN_VERSION = (3, 9)
_VERSION_CODE = "import sys; print('.'.join(map(str, sys.version_info[:3])))"


def candidate_paths() -> list:
    home = pwd.getpwuid(os.getuid()).pw_dir  # not $HOME: test harnesses and services change it
    pyenv = os.environ.get("PYENV_ROOT", os.path.join(home, ".pyenv"))
    uv_dir = os.environ.get("UV_PYTHON_INSTALL_DIR", os.path.join(home, ".local", "share", "uv", "python"))
    paths = [sys.executable]
    paths += sorted(glob.glob(os.path.join(pyenv, "versions", "*", "bin", "python3")))
    paths += sorted(glob.glob(os.path.join(uv_dir, "*", "bin", "python3")))
    paths += sorted(glob.glob("/usr/bin/python3.[0-9]*")) + sorted(glob.glob("/usr/local/bin/python3.[0-9]*"))
    paths += [p for p in (shutil.which(f"python3.{minor}") for minor in range(9, 16)) if p]
    return paths


def interpreter_version(path: str) -> str:
    try:
        out = subprocess.run([path, "-c", _VERSION_CODE], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


@functools.lru_cache(maxsize=8)
def _discover(paths: tuple) -> tuple:
    return tuple(_discover_uncached(paths).items())


def discover(paths: Iterable[str]) -> dict:
    """{full version: interpreter path}, first path wins, versions below MIN_VERSION skipped.

    Remembered per process: interpreters do not come and go while a server runs.
    """
    return dict(_discover(tuple(paths)))


def _discover_uncached(paths: tuple) -> dict:
    found: dict = {}
    seen = set()
    for path in paths:
        if path.endswith(("-config", "m")) or not os.access(path, os.X_OK):
            continue
        real = os.path.realpath(path)
        if real in seen:
            continue
        seen.add(real)
        version = interpreter_version(path)
        if not version or tuple(int(p) for p in version.split(".")[:2]) < MIN_VERSION:
            continue
        found.setdefault(version, path)
    return found


def short_versions(found: dict) -> list:
    """The X.Y versions offered, sorted ascending."""
    return sorted({".".join(v.split(".")[:2]) for v in found}, key=lambda v: tuple(map(int, v.split("."))))


def pick(found: dict, requested: str) -> str:
    """The interpreter for `3.12` (newest 3.12.x) or `3.12.3` (exactly)."""
    matches = [v for v in found if v == requested or v.startswith(requested + ".")]
    if not matches:
        raise LookupError(f"no interpreter for Python {requested}")
    best = max(matches, key=lambda v: tuple(map(int, v.split("."))))
    return found[best]
