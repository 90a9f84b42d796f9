"""The bytecode cache (bytecode.py), fast: real compiles by this interpreter, package files hard-linked
from a stand-in package cache as uv links them, no server."""
import importlib.util
import os
import subprocess
import sys

from jupyter_envmgr import bytecode

TAG = sys.implementation.cache_tag


def install(pkgs: str, env: str) -> str:
    """`env`/pkg/*.py as hard links of the package cache's files (what uv's link mode does)."""
    site = os.path.join(env, "site")
    for dirpath, _, files in os.walk(pkgs):
        target = os.path.join(site, os.path.relpath(dirpath, pkgs))
        os.makedirs(target, exist_ok=True)
        for name in files:
            os.link(os.path.join(dirpath, name), os.path.join(target, name))
    return site


def make_pkgs(tmp_path) -> str:
    pkgs = str(tmp_path / "pkgs")
    os.makedirs(os.path.join(pkgs, "demo", "sub"))
    for rel, text in {"demo/__init__.py": "VALUE = 1\n", "demo/sub/mod.py": "def f():\n    return 2\n",
                      "demo/broken.py": "def (:\n"}.items():
        with open(os.path.join(pkgs, rel), "w") as f:
            f.write(text)
    return pkgs


def pyc(site: str, rel: str) -> str:
    folder, name = os.path.split(os.path.join(site, rel))
    return os.path.join(folder, "__pycache__", name[:-3] + f".{TAG}.pyc")


def test_a_second_environment_links_what_the_first_compiled(tmp_path):
    pkgs, cache = make_pkgs(tmp_path), str(tmp_path / "cache")
    a = install(pkgs, str(tmp_path / "a"))
    first = bytecode.share(sys.executable, cache, [a], log=lambda *_: None)
    assert (first["compiled"], first["cached"], first["failed"], first["linked"]) == (2, 2, 1, 0)
    b = install(pkgs, str(tmp_path / "b"))
    second = bytecode.share(sys.executable, cache, [b], log=lambda *_: None)
    assert (second["linked"], second["compiled"], second["failed"]) == (2, 0, 1)
    for rel in ("demo/__init__.py", "demo/sub/mod.py"):
        assert os.stat(pyc(a, rel)).st_ino == os.stat(pyc(b, rel)).st_ino
    # the shared .pyc is valid where it is linked: importing from b writes nothing and names b's file
    out = subprocess.run([sys.executable, "-c", "import demo.sub.mod as m, sys; print(m.f.__code__.co_filename); "
                          "print(sys.modules['demo'].__cached__)"], cwd=b, env=dict(os.environ, PYTHONPATH=b),
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == os.path.join(b, "demo", "sub", "mod.py")
    assert os.stat(pyc(b, "demo/__init__.py")).st_nlink == 3  # a, b and the cache
    # a third run finds everything in place, and leaves no temporary file behind
    assert bytecode.share(sys.executable, cache, [b], log=lambda *_: None)["linked"] == 2
    for top in (b, cache):
        assert not [n for _, _, files in os.walk(top) for n in files if n.endswith(".tmp")]


def test_stale_or_damaged_entries_are_never_used(tmp_path):
    pkgs, cache = make_pkgs(tmp_path), str(tmp_path / "cache")
    bytecode.share(sys.executable, cache, [install(pkgs, str(tmp_path / "a"))], log=lambda *_: None)
    # another source at the same path (a new inode): not the cached file, compiled afresh
    mod = os.path.join(pkgs, "demo", "sub", "mod.py")
    os.unlink(mod)
    with open(mod, "w") as f:
        f.write("def f():\n    return 3\n")
    # a damaged entry (its header does not match its source) is not used either
    magic = importlib.util.MAGIC_NUMBER
    entry = bytecode.Cache(cache, TAG, magic).entry(os.stat(os.path.join(pkgs, "demo", "__init__.py")))
    with open(entry + ".pyc", "r+b") as f:
        f.write(b"\0\0\0\0")
    b = install(pkgs, str(tmp_path / "b"))
    counts = bytecode.share(sys.executable, cache, [b], log=lambda *_: None)
    assert (counts["linked"], counts["compiled"]) == (0, 2)
    out = subprocess.run([sys.executable, "-c", "import demo.sub.mod as m; print(m.f())"], env=dict(os.environ, PYTHONPATH=b),
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "3"
    assert bytecode._valid(pyc(b, "demo/__init__.py"), bytecode.header(magic, os.stat(os.path.join(b, "demo", "__init__.py"))))


def test_files_no_package_cache_links_are_compiled_not_cached(tmp_path):
    site = str(tmp_path / "site")
    os.makedirs(os.path.join(site, "own"))
    with open(os.path.join(site, "own", "__init__.py"), "w") as f:
        f.write("X = 1\n")
    counts = bytecode.share(sys.executable, str(tmp_path / "cache"), [site], log=lambda *_: None)
    assert (counts["compiled"], counts["cached"]) == (1, 0)
    assert os.path.isfile(pyc(site, "own/__init__.py"))


def test_prune_drops_entries_whose_source_nothing_links(tmp_path):
    pkgs, cache = make_pkgs(tmp_path), str(tmp_path / "cache")
    a = install(pkgs, str(tmp_path / "a"))
    bytecode.share(sys.executable, cache, [a], log=lambda *_: None)
    entries = lambda: sorted(n for _, _, files in os.walk(cache) for n in files)  # noqa: E731
    assert len(entries()) == 4
    assert bytecode.prune(cache) == 0  # the package cache and the environment still hold the sources
    import shutil
    shutil.rmtree(a)
    assert bytecode.prune(cache) == 0 and len(entries()) == 4  # the package cache does: kept for the next build
    os.unlink(os.path.join(pkgs, "demo", "__init__.py"))
    assert bytecode.prune(cache) > 0
    assert len(entries()) == 2


def test_concurrent_builds_fill_one_cache_safely(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    pkgs, cache = make_pkgs(tmp_path), str(tmp_path / "cache")
    sites = [install(pkgs, str(tmp_path / f"e{i}")) for i in range(3)]
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda s: bytecode.share(sys.executable, cache, [s], log=lambda *_: None), sites))
    assert all(r["compiled"] + r["linked"] == 2 for r in results), results
    magic = importlib.util.MAGIC_NUMBER
    for site in sites:
        for rel in ("demo/__init__.py", "demo/sub/mod.py"):
            assert bytecode._valid(pyc(site, rel), bytecode.header(magic, os.stat(os.path.join(site, rel))))
    assert not [n for _, _, files in os.walk(cache) for n in files if n.endswith(".tmp")]
    # whoever won each race, the next build links everything
    assert bytecode.share(sys.executable, cache, [install(pkgs, str(tmp_path / "late"))], log=lambda *_: None)["linked"] == 2


def test_a_cache_that_cannot_be_written_still_compiles(tmp_path):
    pkgs = make_pkgs(tmp_path)
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache's directory would be")
    site = install(pkgs, str(tmp_path / "a"))
    counts = bytecode.share(sys.executable, str(blocked / "cache"), [site], log=lambda *_: None)
    assert (counts["compiled"], counts["cached"]) == (2, 0)
    assert os.path.isfile(pyc(site, "demo/sub/mod.py"))


def test_a_symlinked_source_is_compiled_not_cached(tmp_path):
    pkgs = make_pkgs(tmp_path)
    site = install(pkgs, str(tmp_path / "a"))
    os.symlink(os.path.join(pkgs, "demo", "__init__.py"), os.path.join(site, "demo", "alias.py"))
    counts = bytecode.share(sys.executable, str(tmp_path / "cache"), [site], log=lambda *_: None)
    assert (counts["compiled"], counts["cached"]) == (3, 2)
    assert os.path.isfile(pyc(site, "demo/alias.py"))


def uv_install(tmp_path, env: str, wheels: str) -> str:
    """A real uv venv and install from a directory of wheels, with the test's uv cache: its site-packages."""
    import uv

    run = dict(os.environ, UV_CACHE_DIR=str(tmp_path / "uv-cache"), UV_PYTHON_DOWNLOADS="never", VIRTUAL_ENV="",
               NO_COLOR="1", UV_NO_PROGRESS="1")
    prefix = str(tmp_path / env)
    subprocess.run([uv.find_uv_bin(), "venv", "-q", "--no-project", "--python", sys.executable, prefix], env=run, check=True)
    subprocess.run([uv.find_uv_bin(), "pip", "install", "-q", "--python", os.path.join(prefix, "bin", "python"),
                    "--no-index", "--find-links", wheels, "envmgr-demo-pkg"], env=run, check=True)
    purelib = subprocess.run([os.path.join(prefix, "bin", "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    return purelib


def test_uv_carries_the_bytecode_into_later_installs(tmp_path):
    """Compiled once, the bytecode goes into uv's unpacked wheel; the next install brings it along and the
    bytecode step skips the distribution's directories. A copied (not linked) marker is not trusted."""
    from helpers import make_wheel

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    name, data = make_wheel("envmgr-demo-pkg", "1.0", "def f():\n    return 3\n")
    (wheels / name).write_bytes(data)
    archives, cache = str(tmp_path / "uv-cache" / "archive-v0"), str(tmp_path / "cache")
    quiet = lambda *_: None  # noqa: E731

    a = uv_install(tmp_path, "a", str(wheels))
    first = bytecode.share(sys.executable, cache, [a], log=quiet, archives=archives)
    assert (first["compiled"], first["seeded"], first["installed"]) == (1, 1, 0), first
    marker = f"envmgr-bytecode-{TAG}-{importlib.util.MAGIC_NUMBER.hex()}.json"

    b = uv_install(tmp_path, "b", str(wheels))
    source = os.path.join(b, "envmgr_demo_pkg", "__init__.py")
    assert os.path.isfile(pyc(b, "envmgr_demo_pkg/__init__.py"))  # uv linked it with the source
    second = bytecode.share(sys.executable, cache, [b], log=quiet, archives=archives)
    assert (second["installed"], second["compiled"], second["linked"], second["seeded"]) == (1, 0, 0, 0), second
    assert bytecode._valid(pyc(b, "envmgr_demo_pkg/__init__.py"),
                           bytecode.header(importlib.util.MAGIC_NUMBER, os.stat(source)))
    before = os.stat(pyc(b, "envmgr_demo_pkg/__init__.py")).st_ino
    subprocess.run([os.path.join(str(tmp_path / "b"), "bin", "python"), "-c", "import envmgr_demo_pkg"], check=True)
    assert os.stat(pyc(b, "envmgr_demo_pkg/__init__.py")).st_ino == before  # the import wrote nothing

    c = uv_install(tmp_path, "c", str(wheels))
    dist_info = os.path.join(c, "envmgr_demo_pkg-1.0.dist-info")
    with open(os.path.join(dist_info, marker)) as f:
        text = f.read()
    os.unlink(os.path.join(dist_info, marker))
    with open(os.path.join(dist_info, marker), "w") as f:  # a copy: its bytecode may be stale
        f.write(text)
    third = bytecode.share(sys.executable, cache, [c], log=quiet, archives=archives)
    assert third["installed"] == 0 and third["linked"] + third["kept"] == 1, third


def test_a_directory_an_uncompiled_distribution_shares_is_walked(tmp_path):
    """Two distributions fill one namespace directory; only one is marked: the directory is still walked."""
    site = tmp_path / "site"
    marker = f"envmgr-bytecode-{TAG}-{importlib.util.MAGIC_NUMBER.hex()}.json"
    for dist, module in (("one-1.0.dist-info", "ns/one.py"), ("two-1.0.dist-info", "ns/two.py")):
        (site / dist).mkdir(parents=True)
        (site / dist / "RECORD").write_text(f"{module},,\n")
        (site / module).parent.mkdir(exist_ok=True)
        (site / module).write_text("X = 1\n")
    spare = tmp_path / "spare-marker"
    spare.write_text('{"tops": ["ns"]}')
    os.link(spare, site / "one-1.0.dist-info" / marker)  # linked, as uv links it
    archives = bytecode.Archives(None, TAG, importlib.util.MAGIC_NUMBER)
    assert archives.complete(str(site)) == set()
    os.unlink(site / "two-1.0.dist-info" / "RECORD")
    (site / "two-1.0.dist-info" / "RECORD").write_text("two_elsewhere/x.py,,\n")
    assert archives.complete(str(site)) == {"ns"}
