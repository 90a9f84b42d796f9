"""A real conda channel made here: small noarch packages, a `python` package cut from an interpreter
on this machine, indexed with rattler's indexer and served over http on 127.0.0.1.

No conda channel on the internet is reachable from the test machines, so every package the tests
install comes from here. The packages are ordinary `.tar.bz2` conda packages (info/index.json,
info/paths.json, info/files, info/link.json for noarch python), so any conda client can use them.
"""
from __future__ import annotations

import asyncio
import glob
import hashlib
import io
import json
import os
import shutil
import sys
import sysconfig
import tarfile
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

#: Bump when the packages made here change, so a cached channel is rebuilt.
CHANNEL_VERSION = "5"
PLACEHOLDER = "/opt/envmgr-test-placeholder-prefix-" + "_" * 40

#: Parts of a CPython install that a kernel never needs (keeps the package small and quick to make).
PYTHON_SKIP_DIRS = {"site-packages", "test", "tests", "idlelib", "tkinter", "turtledemo", "ensurepip",
                    "lib2to3", "__pycache__", "unittest/test"}


def _tarinfo(name: str, data: bytes, mode: int = 0o644) -> tuple:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 1_700_000_000
    return info, io.BytesIO(data)


def write_package(path: str, index: dict, files: dict, link: dict | None = None, symlinks: dict | None = None,
                  has_prefix: dict | None = None) -> str:
    """Write a `.tar.bz2` conda package.

    files: {relative path: (bytes, mode)}; symlinks: {relative path: target};
    has_prefix: {relative path: placeholder} for text files holding the build prefix.
    """
    has_prefix = has_prefix or {}
    symlinks = symlinks or {}
    paths = []
    for rel, (data, _mode) in sorted(files.items()):
        entry = {"_path": rel, "path_type": "hardlink", "sha256": hashlib.sha256(data).hexdigest(),
                 "size_in_bytes": len(data)}
        if rel in has_prefix:
            entry.update(prefix_placeholder=has_prefix[rel], file_mode="text")
        paths.append(entry)
    for rel, target in sorted(symlinks.items()):
        paths.append({"_path": rel, "path_type": "softlink", "sha256": hashlib.sha256(target.encode()).hexdigest(),
                      "size_in_bytes": len(target)})
    info_files = {
        "info/index.json": json.dumps(index, indent=2, sort_keys=True).encode(),
        "info/paths.json": json.dumps({"paths": paths, "paths_version": 1}, indent=2).encode(),
        "info/files": "".join(p["_path"] + "\n" for p in paths).encode(),
        "info/about.json": json.dumps({"summary": f"{index['name']} made by the jupyter-envmgr tests"}).encode(),
    }
    if has_prefix:
        info_files["info/has_prefix"] = "".join(f"{ph} text {rel}\n" for rel, ph in sorted(has_prefix.items())).encode()
    if link:
        info_files["info/link.json"] = json.dumps(link).encode()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".part"
    with tarfile.open(tmp, "w:bz2", compresslevel=1) as tar:
        for rel, data in info_files.items():
            tar.addfile(*_tarinfo(rel, data))
        for rel, (data, mode) in sorted(files.items()):
            tar.addfile(*_tarinfo(rel, data, mode))
        for rel, target in sorted(symlinks.items()):
            info = tarfile.TarInfo(rel)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            info.mtime = 1_700_000_000
            tar.addfile(info)
    os.replace(tmp, path)
    return path


def noarch_python_package(channel_dir: str, name: str, version: str, module_code: str = "", depends=(),
                          activate_sh: str = "", build_number: int = 0) -> str:
    """A `noarch: python` package with one module (and optionally an etc/conda/activate.d script)."""
    module = name.replace("-", "_")
    dist = f"{module}-{version}.dist-info"
    files = {
        f"site-packages/{module}/__init__.py": ((module_code or f"__version__ = {version!r}\n").encode(), 0o644),
        f"site-packages/{dist}/METADATA": (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(), 0o644),
        f"site-packages/{dist}/INSTALLER": (b"conda\n", 0o644),
    }
    if activate_sh:
        files[f"etc/conda/activate.d/{module}.sh"] = (activate_sh.encode(), 0o644)
    index = {"name": name, "version": version, "build": f"py_{build_number}", "build_number": build_number,
             "depends": ["python >=3.8", *depends], "noarch": "python", "subdir": "noarch", "license": "BSD-3-Clause",
             "timestamp": 1_700_000_000_000}
    link = {"noarch": {"type": "python", "entry_points": []}, "package_metadata_version": 1}
    path = os.path.join(channel_dir, "noarch", f"{name}-{version}-py_{build_number}.tar.bz2")
    return write_package(path, index, files, link)


def noarch_generic_package(channel_dir: str, name: str, version: str, depends=()) -> str:
    files = {f"share/{name}/README.txt": (f"{name} {version}\n".encode(), 0o644)}
    index = {"name": name, "version": version, "build": "0", "build_number": 0, "depends": list(depends),
             "noarch": "generic", "subdir": "noarch", "license": "BSD-3-Clause", "timestamp": 1_700_000_000_000}
    return write_package(os.path.join(channel_dir, "noarch", f"{name}-{version}-0.tar.bz2"), index, files)


def python_package(channel_dir: str, base: str = sys.base_prefix) -> str:
    """A `python` conda package cut from the CPython install at `base` (the stdlib, the interpreter).

    Text files that mention the install's prefix get a prefix placeholder, as conda-build does, so
    the linked copy names its own prefix; the interpreter finds its stdlib relative to itself.
    """
    version = sysconfig.get_python_version()  # "3.11"
    full = ".".join(map(str, sys.version_info[:3])) if base == sys.base_prefix else version
    stdlib = f"lib/python{version}"
    files, symlinks, has_prefix = {}, {}, {}
    prefix_bytes = base.encode()

    def add(rel: str, src: str) -> None:
        if os.path.islink(src):
            symlinks[rel] = os.readlink(src)
            return
        with open(src, "rb") as f:
            data = f.read()
        mode = os.stat(src).st_mode & 0o777
        if prefix_bytes in data and b"\0" not in data[:8192]:
            data = data.replace(prefix_bytes, PLACEHOLDER.encode())
            has_prefix[rel] = PLACEHOLDER
        files[rel] = (data, mode)

    for exe in (f"python{version}", "python3", "python"):
        src = os.path.join(base, "bin", exe)
        if os.path.lexists(src):
            add(f"bin/{exe}", src)
    root = os.path.join(base, stdlib)
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        dirnames[:] = [d for d in dirnames if d not in PYTHON_SKIP_DIRS
                       and os.path.normpath(os.path.join(rel_dir, d)) not in PYTHON_SKIP_DIRS
                       and not d.startswith("config-")]
        for fn in filenames:
            rel = os.path.normpath(os.path.join(stdlib, rel_dir, fn))
            add(rel, os.path.join(dirpath, fn))
    # Installs with a shared libpython (pyenv's): ship it too.
    for lib in glob.glob(os.path.join(base, "lib", "libpython*.so*")):
        add(f"lib/{os.path.basename(lib)}", lib)
    files[f"{stdlib}/site-packages/README.txt"] = (b"site-packages of the envmgr test python\n", 0o644)
    index = {"name": "python", "version": full, "build": "h_envmgr_0", "build_number": 0, "depends": [],
             "subdir": "linux-64", "arch": "x86_64", "platform": "linux", "license": "PSF-2.0",
             "timestamp": 1_700_000_000_000, "python_site_packages_path": f"{stdlib}/site-packages"}
    path = os.path.join(channel_dir, "linux-64", f"python-{full}-h_envmgr_0.tar.bz2")
    return write_package(path, index, files, symlinks=symlinks, has_prefix=has_prefix)


def wheel_package(channel_dir: str, wheel: str) -> str:
    """A conda package holding what the wheel `wheel` installs, as conda-forge's repackaged wheels do.

    A pure wheel becomes `noarch: python` (site-packages/ remapped at link time); a binary one a
    linux-64 package for this interpreter's python X.Y. Its depends are the wheel's Requires-Dist for
    this platform, names only (the channel holds one version of each); extras are left out.
    """
    import zipfile

    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name, parse_wheel_filename

    name, version, _, tags = parse_wheel_filename(os.path.basename(wheel))
    name, version = canonicalize_name(name), str(version)
    pure = all(t.platform == "any" for t in tags)
    xy = sysconfig.get_python_version()
    site = "site-packages" if pure else f"lib/python{xy}/site-packages"
    env = dict(default_environment(), extra="")
    files, depends = {}, []
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            if info.is_dir():
                continue
            parts = info.filename.split("/")
            if parts[0].endswith(".data"):  # <name>.data/{purelib,platlib,scripts,data}/...
                kind, rest = parts[1], "/".join(parts[2:])
                rel = {"purelib": f"{site}/{rest}", "platlib": f"{site}/{rest}", "scripts": f"bin/{rest}",
                       "data": rest}.get(kind)
                if rel is None:
                    continue
            else:
                rel = f"{site}/{info.filename}"
            mode = (info.external_attr >> 16) & 0o777 or 0o644
            files[rel] = (z.read(info), mode)
            if parts[0].endswith(".dist-info") and parts[-1] == "METADATA":
                for line in z.read(info).decode().splitlines():
                    if line.startswith("Requires-Dist:"):
                        req = Requirement(line.split(":", 1)[1].strip())
                        if req.marker is None or req.marker.evaluate(env):
                            depends.append(canonicalize_name(req.name))
    build = "py_0" if pure else f"py{xy.replace('.', '')}_0"
    index = {"name": name, "version": version, "build": build, "build_number": 0,
             "depends": (["python >=3.9"] if pure else [f"python {xy}.*"]) + sorted(set(depends)),
             "subdir": "noarch" if pure else "linux-64", "license": "see the wheel", "timestamp": 1_700_000_000_000}
    link = None
    if pure:
        index["noarch"] = "python"
        link = {"noarch": {"type": "python", "entry_points": []}, "package_metadata_version": 1}
    else:
        index.update(arch="x86_64", platform="linux")
    path = os.path.join(channel_dir, index["subdir"], f"{name}-{version}-{build}.tar.bz2")
    return write_package(path, index, files, link)


DEMO_CODE = '''"""envmgr-conda-demo: a conda package made by the tests."""
import os
__version__ = {version!r}
def where():
    return os.path.dirname(__file__)
'''

ACTIVATE_SH = '''# set by envmgr-conda-demo's activation script
export ENVMGR_DEMO_HOME="${CONDA_PREFIX}/share/envmgr-demo"
export ENVMGR_DEMO_FLAG=on
'''


def build_channel(channel_dir: str) -> str:
    """Make every package of the test channel in `channel_dir` and index it with rattler."""
    from rattler.index import index_fs

    os.makedirs(os.path.join(channel_dir, "noarch"), exist_ok=True)
    os.makedirs(os.path.join(channel_dir, "linux-64"), exist_ok=True)
    python_package(channel_dir)
    for version in ("1.0", "2.0"):
        noarch_python_package(channel_dir, "envmgr-conda-demo", version, DEMO_CODE.format(version=version),
                              depends=["envmgr-conda-data"], activate_sh=ACTIVATE_SH)
    noarch_generic_package(channel_dir, "envmgr-conda-data", "0.1")
    noarch_python_package(channel_dir, "envmgr-needs-missing", "1.0", depends=["envmgr-does-not-exist >=1"])
    # Served slowly by ChannelServer (a download that takes a while, to cancel mid-build).
    noarch_python_package(channel_dir, "envmgr-conda-slow", "1.0",
                          module_code="BLOB = %r\n" % os.urandom(96 * 1024).hex())
    asyncio.run(index_fs(channel_dir, write_zst=False, write_shards=False))
    return channel_dir


def cached_channel(cache_root: str) -> str:
    """The test channel under `cache_root`, built once per CHANNEL_VERSION and interpreter."""
    key = hashlib.sha256(f"{CHANNEL_VERSION}|{sys.base_prefix}|{sys.version}".encode()).hexdigest()[:12]
    target = os.path.join(cache_root, f"channel-{key}")
    if os.path.exists(os.path.join(target, "noarch", "repodata.json")):
        return target
    tmp = f"{target}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    build_channel(tmp)
    try:
        os.rename(tmp, target)
    except OSError:  # another run made it first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def real_channel(cache_root: str, packages: list) -> str:
    """A channel of real packages under `cache_root`: the wheels that pip resolves `packages` to for this
    interpreter (numpy, pandas... from the Python package index), each repackaged by `wheel_package`, and
    the `python` package cut from this interpreter. Built once per package list and interpreter."""
    import subprocess

    key = hashlib.sha256(f"{CHANNEL_VERSION}|{sys.base_prefix}|{sys.version}|{sorted(packages)}".encode()).hexdigest()[:12]
    target = os.path.join(cache_root, f"real-channel-{key}")
    if os.path.exists(os.path.join(target, "noarch", "repodata.json")):
        return target
    wheels = os.path.join(cache_root, f"real-wheels-{key}")
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary", ":all:", "--dest", wheels,
                    *packages], check=True)
    tmp = f"{target}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    for sub in ("noarch", "linux-64"):
        os.makedirs(os.path.join(tmp, sub))
    python_package(tmp)
    for wheel in sorted(glob.glob(os.path.join(wheels, "*.whl"))):
        wheel_package(tmp, wheel)
    asyncio.run(__import__("rattler.index", fromlist=["index_fs"]).index_fs(tmp, write_zst=False, write_shards=False))
    try:
        os.rename(tmp, target)
    except OSError:  # another run made it first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


class ChannelServer:
    """Serves a channel directory over http on 127.0.0.1 from a thread; counts requests."""

    def __init__(self, directory: str, slow_seconds: float = 30.0):
        self.directory = directory
        self.requests: list = []
        self.slow_seconds = slow_seconds
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append(self.path)
                if os.path.basename(self.path).startswith("envmgr-conda-slow-"):
                    return self._trickle()
                super().do_GET()

            def _trickle(self):
                path = self.translate_path(self.path)
                if not os.path.isfile(path):
                    return self.send_error(404)
                with open(path, "rb") as f:
                    data = f.read()
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                pieces = 30
                step = max(1, len(data) // pieces)
                try:
                    for i in range(0, len(data), step):
                        self.wfile.write(data[i:i + step])
                        self.wfile.flush()
                        time.sleep(server.slow_seconds / pieces)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=directory))
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/envmgr-test-channel"
        # Serve the directory under a channel-looking path: /envmgr-test-channel/noarch/...
        os.makedirs(os.path.join(directory, ".served"), exist_ok=True)
        link = os.path.join(directory, ".served", "envmgr-test-channel")
        if not os.path.islink(link):
            try:
                os.symlink("..", link)
            except FileExistsError:
                pass
        self.httpd.RequestHandlerClass = partial(Handler, directory=os.path.join(directory, ".served"))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


if __name__ == "__main__":  # python tests/conda/channel.py DIR: make a channel to look at
    start = time.monotonic()
    print(build_channel(sys.argv[1]), f"{time.monotonic() - start:.1f}s")
