"""The solve diff and the pin rewrite, pure (changes.py): milliseconds, in the fast tier."""
from jupyter_envmgr import changes
from jupyter_envmgr.conda import parse_environment

CONDA_LOCK = """# jupyter-envmgr lock of a conda environment: an explicit list of every package (URL and hash).
# platform: linux-64
@EXPLICIT
http://127.0.0.1:1/chan/linux-64/python-3.11.9-h1234_0.conda#sha256:ab
http://127.0.0.1:1/chan/noarch/typing-extensions-4.12.2-pyha770c72_0.conda#sha256:cd
http://127.0.0.1:1/chan/linux-64/numpy-1.26.4-py311h_0.tar.bz2#0123
# pip envmgr-demo-pkg==1.0
"""


def test_parse_lock_reads_freeze_and_conda_explicit_locks():
    assert changes.parse_lock("numpy==1.26.4\nEnvmgr_Demo.Pkg==2.0\nflask @ file:///w/flask-3.0.0-py3-none-any.whl\n") == {
        "numpy": ("numpy", "1.26.4"), "envmgr-demo-pkg": ("Envmgr_Demo.Pkg", "2.0"),
        "flask": ("flask", "@ file:///w/flask-3.0.0-py3-none-any.whl")}
    assert changes.parse_lock(CONDA_LOCK) == {
        "python": ("python", "3.11.9"), "typing-extensions": ("typing-extensions", "4.12.2"),
        "numpy": ("numpy", "1.26.4"), "envmgr-demo-pkg": ("envmgr-demo-pkg", "1.0")}


def test_diff_says_added_removed_upgraded_downgraded_major_and_requested():
    old = changes.parse_lock("numpy==1.26.4\npandas==2.2.3\nsix==1.16.0\ntzdata==2024.1\n")
    new = changes.parse_lock("numpy==2.1.3\npandas==2.1.0\nsix==1.16.0\nrich==13.9.4\n")
    out = changes.diff(old, new, {"numpy", "rich"}, {"numpy", "pandas", "tzdata"}, "3.11", "3.12")
    assert out["python"] == {"from": "3.11", "to": "3.12"}
    assert out["packages"] == [
        {"name": "numpy", "from": "1.26.4", "to": "2.1.3", "change": "upgraded", "major": True, "requested": True},
        {"name": "pandas", "from": "2.2.3", "to": "2.1.0", "change": "downgraded", "major": False, "requested": False},
        {"name": "rich", "from": None, "to": "13.9.4", "change": "added", "major": False, "requested": True},
        {"name": "tzdata", "from": "2024.1", "to": None, "change": "removed", "major": False, "requested": True},
    ]
    assert changes.diff(old, old, set(), None, "3.12", "3.12") == {"python": None, "packages": []}


def test_versions_compare_as_versions_not_text():
    old, new = {"a": ("a", "1.9.0")}, {"a": ("a", "1.10.0")}
    assert changes.diff(old, new, set())["packages"][0]["change"] == "upgraded"
    assert changes.diff(new, old, set())["packages"][0]["change"] == "downgraded"
    assert not changes.is_major("1.9", "1.10") and changes.is_major("0.9", "1.0") and changes.is_major("2024.1", "2025.1")
    assert changes.diff({"o": ("o", "1.1.1w_x")}, {"o": ("o", "1.1.1x_y")}, set())["packages"][0]["change"] == "upgraded"


def test_pin_requirements_keeps_extras_markers_comments_and_other_lines():
    lock = changes.parse_lock("numpy==1.26.4\nrequests==2.32.3\nenvmgr-demo-pkg==2.0\n")
    text = ("# team baseline\nnumpy>=1.2  # the array library\nrequests[socks]; python_version >= '3.8'\n"
            "--extra-index-url https://example.invalid/simple\nnot-in-lock>=1\nenvmgr_demo_pkg==2.0\n")
    pinned = changes.pin_requirements(text, lock)
    assert pinned == ("# team baseline\nnumpy==1.26.4  # the array library\n"
                      "requests[socks]==2.32.3 ; python_version >= \"3.8\"\n"
                      "--extra-index-url https://example.invalid/simple\nnot-in-lock>=1\nenvmgr_demo_pkg==2.0\n")
    assert changes.satisfied([("numpy", "==1.26.4"), ("envmgr-demo-pkg", "==2.0")], lock)
    assert not changes.satisfied([("not-in-lock", ">=1")], lock)
    assert not changes.satisfied([("numpy", "==2.0")], lock)
    assert not changes.satisfied([("numpy", None)], lock)


def test_pin_environment_rewrites_dependency_lines_in_place_and_leaves_python():
    text = ("name: x\nchannels:\n  - chan\ndependencies:\n  - python=3.11\n  - numpy>=1.20   # arrays\n"
            "  - chan::typing-extensions\n  - pip:\n      - envmgr-demo-pkg\n")
    env = parse_environment(text)
    pinned = changes.pin_environment(text, env.specs, env.pip, changes.parse_lock(CONDA_LOCK))
    assert pinned == ("name: x\nchannels:\n  - chan\ndependencies:\n  - python=3.11\n  - numpy==1.26.4   # arrays\n"
                      "  - chan::typing-extensions==4.12.2\n  - pip:\n      - envmgr-demo-pkg==1.0\n")
    assert parse_environment(pinned).specs[1].text == "numpy==1.26.4"
