"""Issue 23.1 and 24 ("Required by"): every GET .../packages entry says `requested`, `base` and `required_by`,
worked out on the server from the revision's spec and the prefix's own metadata (dist-info, conda-meta)."""
import json
import os

import pytest

from jupyter_envmgr.recipes import marks


def dist(site: str, name: str, version: str, requires=(), installer: str = "uv") -> None:
    """A dist-info directory as an installer leaves it (METADATA headers with a multi-line License, INSTALLER)."""
    path = os.path.join(site, f"{name.replace('-', '_')}-{version}.dist-info")
    os.makedirs(path)
    headers = [f"Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
               "License: BSD", "        ", "        a second licence line"]
    headers += [f"Requires-Dist: {r}" for r in requires]
    with open(os.path.join(path, "METADATA"), "w") as f:
        f.write("\n".join(headers) + "\n\nRequires-Dist: not-a-header (the body)\n")
    with open(os.path.join(path, "INSTALLER"), "w") as f:
        f.write(installer + "\n")


@pytest.fixture
def pip_prefix(tmp_path):
    site = tmp_path / "rev-0001" / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    dist(str(site), "Flask", "3.0.0", ["Werkzeug>=3", "itsdangerous", "asyncio-extra; extra == 'async'",
                                       "importlib-metadata; python_version < '3.10'"])
    dist(str(site), "Werkzeug", "3.0.1", ["MarkupSafe>=2.1.1"])
    dist(str(site), "itsdangerous", "2.1.2")
    dist(str(site), "MarkupSafe", "2.1.3")
    dist(str(site), "importlib_metadata", "7.0.0")  # installed, but flask needs it only before 3.10
    dist(str(site), "asyncio-extra", "1.0")
    dist(str(site), "ipykernel", "6.29.0", ["traitlets>=5.4.0", "pytest; extra == 'test'"])
    dist(str(site), "traitlets", "5.14.0")
    dist(str(site), "pytest", "8.0.0")  # installed, asked for by nobody: ipykernel's test extra is not wanted
    dist(str(site), "six", "1.16.0")
    return str(tmp_path / "rev-0001")


def listed(prefix: str) -> list:
    """What `uv pip list` answers for the prefix, in its shape."""
    site = marks._site_packages(prefix)[0]
    out = []
    for entry in sorted(os.listdir(site)):
        name, _ = marks._headers(os.path.join(site, entry, "METADATA"))
        out.append({"name": name, "version": entry.split("-")[1].rsplit(".dist", 1)[0]})
    return out


def by_name(entries: list) -> dict:
    return {e["name"]: e for e in entries}


def test_pip_marks_requested_base_and_required_by(pip_prefix):
    spec = "# the team's list\nflask>=3  # web\nSix==1.16.* ; python_version >= '3'\n"
    got = by_name(marks.marked(listed(pip_prefix), "pip", spec, {}, ["ipykernel"], pip_prefix))
    assert {n for n, e in got.items() if e["requested"]} == {"Flask", "six"}
    assert {n for n, e in got.items() if e["base"]} == {"ipykernel"}
    assert all(isinstance(e["requested"], bool) and isinstance(e["base"], bool) for e in got.values())
    assert got["Werkzeug"]["required_by"] == ["Flask"]
    assert got["MarkupSafe"]["required_by"] == ["Werkzeug"]
    assert got["itsdangerous"]["required_by"] == ["Flask"]
    assert got["traitlets"]["required_by"] == ["ipykernel"]
    assert got["importlib_metadata"]["required_by"] == []  # its marker is false for the prefix's Python 3.11
    assert got["pytest"]["required_by"] == [] and got["asyncio-extra"]["required_by"] == []  # extras not asked for
    assert got["Flask"]["required_by"] == [] and got["Flask"]["version"] == "3.0.0"


def test_an_extra_in_the_spec_counts_its_dependencies(pip_prefix):
    got = by_name(marks.marked(listed(pip_prefix), "pip", "Flask[Async]\n", {}, ["ipykernel"], pip_prefix))
    assert got["asyncio-extra"]["required_by"] == ["Flask"] and not got["asyncio-extra"]["requested"]


@pytest.mark.parametrize("spec,expected", [
    ("FLASK_ext.x\n", {"flask-ext-x"}),  # PEP 503: case, '_' and '.' do not matter
    ("flask @ https://host.example/a/b/flask-3.0.0-py3-none-any.whl\n", {"flask"}),
    ("https://host.example/a/b/Werkzeug-3.0.1-py3-none-any.whl ; python_version >= '3.8'\n", {"werkzeug"}),
    ("https://host.example/a/b/archive.zip#egg=itsdangerous\n", {"itsdangerous"}),
    ("pkg==${VERSION}\nsix\n", {"pkg", "six"}),
    ("six\n--index-url https://host.example/simple\nmarkupsafe\n", {"six", "markupsafe"}),  # one line the policy refuses
    ("pkg==${UNSET}\nsix\n", {"six"}),  # a line that no longer parses hides no other
])
def test_requested_names_are_read_with_the_requirements_parser(spec, expected):
    from jupyter_envmgr.policy import Policy

    assert set(marks.pip_requested(spec, {"VERSION": "1.0"}, Policy(allow_direct_urls=True))) == expected


def test_conda_marks_match_specs_and_the_pip_sub_list(tmp_path):
    prefix = tmp_path / "rev-0001"
    meta = prefix / "conda-meta"
    meta.mkdir(parents=True)
    records = [
        ("python", "3.11.7", ["libzlib >=1.2", "__glibc >=2.17"]),
        ("libzlib", "1.3", []),
        ("numpy", "2.1.0", ["python >=3.11,<3.12.0a0", "python_abi 3.11.* *_cp311"]),
        ("python_abi", "3.11", []),
        ("requests", "2.32.0", ["python >=3.8", "urllib3 >=1.21"]),
        ("urllib3", "2.2.0", ["python >=3.8"]),
    ]
    for name, version, depends in records:
        (meta / f"{name}-{version}-0.json").write_text(json.dumps({"name": name, "version": version,
                                                                    "depends": depends}))
    site = prefix / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    dist(str(site), "ipykernel", "6.29.0", ["traitlets>=5.4.0", "requests"])
    dist(str(site), "traitlets", "5.14.0")
    dist(str(site), "urllib3", "2.2.0", ["not-installed"], installer="conda")  # conda's own dist-info: conda-meta says
    packages = [{"name": n, "version": v, "manager": "conda"} for n, v, _ in records]
    packages += [{"name": "ipykernel", "version": "6.29.0", "manager": "pip"},
                 {"name": "traitlets", "version": "5.14.0", "manager": "pip"}]
    spec = ("channels: [conda-forge]\ndependencies:\n  - conda-forge::numpy>=2\n  - python=3.11\n"
            "  - pip:\n    - Requests\n    - ipykernel\n")
    got = by_name(marks.marked(packages, "conda", spec, {}, ["python", "ipykernel"], str(prefix)))
    assert {n for n, e in got.items() if e["requested"]} == {"numpy", "python", "requests", "ipykernel"}
    assert {n for n, e in got.items() if e["base"]} == {"python", "ipykernel"}
    assert got["python"]["required_by"] == ["numpy", "requests", "urllib3"]
    assert got["python_abi"]["required_by"] == ["numpy"] and got["libzlib"]["required_by"] == ["python"]
    assert got["urllib3"]["required_by"] == ["requests"]
    assert got["requests"]["required_by"] == ["ipykernel"]  # a pip package depending on a conda one
    assert got["traitlets"]["required_by"] == ["ipykernel"]


def test_a_spec_that_no_longer_parses_marks_nothing_requested(pip_prefix):
    got = marks.marked(listed(pip_prefix), "conda", "dependencies: [unclosed\n", {}, ["python"], pip_prefix)
    assert not any(e["requested"] for e in got) and all("required_by" in e for e in got)


async def test_the_route_marks_every_entry_against_the_serving_revision(api, local_index):
    """A real build: the marks come from the server, and a failed update's spec does not change them."""
    local_index.add("envmgr-marks-lib", "1.0")
    local_index.add("envmgr-marks-app", "1.0", requires=("envmgr-marks-lib>=1", "envmgr-marks-absent; extra == 'x'"))
    await api.create({"name": "marked", "packages": "Envmgr_Marks.App\n", "index_urls": [local_index.url]})
    record = await api.wait("marked")
    assert record["status"] == "ready", record["message"]
    got = by_name((await api.ok("GET", "environments/marked/packages"))["packages"])
    assert all(set(e) >= {"name", "version", "requested", "base", "required_by"} for e in got.values())
    assert {n for n, e in got.items() if e["requested"]} == {"envmgr-marks-app"}
    assert {n for n, e in got.items() if e["base"]} == {"ipykernel"}
    assert got["envmgr-marks-lib"]["required_by"] == ["envmgr-marks-app"]
    assert "ipykernel" in got["traitlets"]["required_by"]

    # Revision 2 asks for the library itself and fails: revision 1 serves, and is marked by its own inputs.
    await api.ok("PATCH", "environments/marked", {"packages": "envmgr-marks-lib\nenvmgr-marks-absent\n"},
                 expect=(202,))
    record = await api.wait("marked")
    assert record["status"] == "failed" and record["ready_revision"] == 1, record
    got = by_name((await api.ok("GET", "environments/marked/packages"))["packages"])
    assert got["envmgr-marks-app"]["requested"] and not got["envmgr-marks-lib"]["requested"]
