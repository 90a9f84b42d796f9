"""sharing.link_copy on a small prefix made here: what is linked, what is rewritten, what is left out."""
import os
import stat

from jupyter_envmgr import sharing
from jupyter_envmgr.inuse import FILE as IN_USE


def make_prefix(src: str) -> None:
    site = os.path.join(src, "lib", "python3.11", "site-packages")
    os.makedirs(os.path.join(site, "pkg", "__pycache__"))
    os.makedirs(os.path.join(src, "bin"))
    files = {
        "pyvenv.cfg": "home = /usr/bin\n",
        "bin/tool": f"#!{src}/bin/python\nimport pkg\n",
        "bin/activate": f"VIRTUAL_ENV='{src}'\n",
        "bin/plain": "#!/bin/sh\necho no prefix here\n",
        "lib/python3.11/site-packages/pkg/__init__.py": "X = 1\n",
        "lib/python3.11/site-packages/pkg/__pycache__/__init__.cpython-311.pyc": "bytecode",
        "lib/python3.11/site-packages/editable.pth": f"{src}/src\n",
        IN_USE: "",
    }
    for rel, text in files.items():
        with open(os.path.join(src, rel), "w") as f:
            f.write(text)
    os.chmod(os.path.join(src, "bin", "tool"), 0o755)
    os.chmod(os.path.join(site, "pkg"), 0o750)
    os.symlink("/usr/bin/python3", os.path.join(src, "bin", "python"))
    os.symlink(os.path.join(src, "bin", "tool"), os.path.join(src, "bin", "tool-abs"))
    os.symlink("lib", os.path.join(src, "lib64"))


def test_link_copy_links_package_files_and_rewrites_what_names_the_prefix(tmp_path):
    src, dst = str(tmp_path / "rev-0001"), str(tmp_path / "rev-0002")
    make_prefix(src)
    linked = sharing.link_copy(src, dst)
    site = "lib/python3.11/site-packages"
    for rel in ("pyvenv.cfg", "bin/plain", f"{site}/pkg/__init__.py", f"{site}/pkg/__pycache__/__init__.cpython-311.pyc"):
        assert os.stat(os.path.join(src, rel)).st_ino == os.stat(os.path.join(dst, rel)).st_ino, rel
    assert linked == 4
    for rel in ("bin/tool", "bin/activate", f"{site}/editable.pth"):  # own files naming dst; src's untouched
        with open(os.path.join(dst, rel)) as f:
            text = f.read()
        assert dst in text and src + "/" not in text and src + "'" not in text, rel
        with open(os.path.join(src, rel)) as f:
            assert src in f.read()
        assert os.stat(os.path.join(src, rel)).st_ino != os.stat(os.path.join(dst, rel)).st_ino
    assert os.access(os.path.join(dst, "bin", "tool"), os.X_OK)
    assert os.readlink(os.path.join(dst, "bin", "python")) == "/usr/bin/python3"
    assert os.readlink(os.path.join(dst, "bin", "tool-abs")) == os.path.join(dst, "bin", "tool")
    assert os.readlink(os.path.join(dst, "lib64")) == "lib"
    assert stat.S_IMODE(os.stat(os.path.join(dst, site, "pkg")).st_mode) == 0o750
    assert not os.path.exists(os.path.join(dst, IN_USE)) and os.path.exists(os.path.join(src, IN_USE))
    assert sorted(os.listdir(dst)) == ["bin", "lib", "lib64", "pyvenv.cfg"]
