"""An environment from a notebook: the reader, the import-name table, the route, and the real corpus end to end."""
from __future__ import annotations

import ast
import asyncio
import json
import os
from importlib import metadata

import pytest
from packaging.utils import canonicalize_name

from jupyter_envmgr import suggestions
from jupyter_envmgr.suggestions import SuggestionError, from_body, suggest

HERE = os.path.dirname(__file__)
CORPUS = os.path.join(HERE, "corpus")
MANIFEST = json.load(open(os.path.join(CORPUS, "notebooks.json")))["notebooks"]
CHECK = json.load(open(os.path.join(CORPUS, "import_names_check.json")))


def packages(result: dict) -> list:
    return result["packages"].splitlines()


# ---------------------------------------------------------------- the shipped table


def test_table_has_at_least_100_mismatches():
    table = suggestions.table()
    mismatches = {k: v for k, v in table.items() if canonicalize_name(k.split(".")[0]) != canonicalize_name(v)}
    assert len(mismatches) >= 100, len(mismatches)
    for name, dist in {"sklearn": "scikit-learn", "cv2": "opencv-python", "PIL": "pillow", "yaml": "PyYAML",
                       "bs4": "beautifulsoup4", "dateutil": "python-dateutil"}.items():
        assert table[name] == dist


def test_every_table_entry_was_checked_against_its_real_wheel():
    """tests/corpus/check_import_names.py read each distribution's wheel; the cached proof must cover the table."""
    table = suggestions.table()
    assert not CHECK["failed"]
    assert set(CHECK["proof"]) == set(table), "re-run tests/corpus/check_import_names.py after changing the table"
    for name, dist in table.items():
        wheel = CHECK["wheels"][canonicalize_name(dist)]["wheel"]
        assert canonicalize_name(wheel.split("-")[0]) == canonicalize_name(dist), (name, wheel)
        path = name.replace(".", "/")
        proof = CHECK["proof"][name]
        assert proof.startswith(path + "/") or proof == path + ".py" or (
            proof.startswith(path + ".") and proof.endswith((".so", ".pyd"))), (name, proof)


def test_table_agrees_with_installed_distributions():
    """Where a table distribution is installed here, its own RECORD provides the import name."""
    checked = 0
    for name, dist in suggestions.table().items():
        try:
            files = metadata.distribution(dist).files or []
        except metadata.PackageNotFoundError:
            continue
        path = name.replace(".", "/")
        assert any(str(f).startswith(path + "/") or str(f) == path + ".py" or
                   (str(f).startswith(path + ".") and str(f).endswith(".so")) for f in files), (name, dist)
        checked += 1
    assert checked >= 5  # numpy, PyYAML, requests, ... are installed beside the server


# ---------------------------------------------------------------- reading code


def test_magics_shell_lines_and_pip_pins():
    cell = (
        "%matplotlib inline\n"
        "%pip install -q 'pandas==2.2.3' \"openpyxl>=3\" --index-url https://mirror.example/simple\n"
        "!pip install --upgrade seaborn\n"
        "!{sys.executable} -m pip install tabulate==0.9.0\n"
        "files = !ls\n"
        "np?\n"
        "import numpy as np, sklearn.linear_model\n"
        "from PIL import Image\n"
        "import os, json, cv2\n"
        "if True:\n"
        "    !pip install rich\n"
    )
    result = suggest([cell])
    assert packages(result) == ["numpy", "opencv-python", "openpyxl>=3", "pandas==2.2.3", "pillow", "rich",
                                "scikit-learn", "seaborn", "tabulate==0.9.0"]
    assert result == {"manager": "pip", "packages": result["packages"], "python": None, "unresolved": []}


def test_pin_wins_over_the_bare_import():
    assert packages(suggest(["import pandas\n", "%pip install pandas==2.1.0\n"])) == ["pandas==2.1.0"]


def test_stdlib_local_modules_and_relative_imports_are_dropped():
    cells = ["import os, sys, json, collections.abc, __future__\nfrom . import sibling\nimport helpers\nimport mylib.sub\n",
             "%%writefile tools.py\nimport requests\n", "import tools\n"]
    result = suggest(cells, local_modules=["helpers", "mylib"])
    assert result["packages"] == "" and result["unresolved"] == []


def test_cell_magics_with_python_bodies_are_read_others_are_not():
    result = suggest(["%%time\nimport yaml\n", "%%bash\nimport notpython\n", "%%capture\nfrom bs4 import BeautifulSoup\n"])
    assert packages(result) == ["beautifulsoup4", "PyYAML"]


def test_dotted_table_entries_and_unresolved():
    result = suggest(["import google.cloud.storage\nfrom google.protobuf import message\nimport surely_not_a_dist\n"])
    assert packages(result) == ["google-cloud-storage", "protobuf"]
    assert result["unresolved"] == ["surely_not_a_dist"]


def test_optional_imports_are_not_unresolved():
    result = suggest(["try:\n    import cPickle as pickle\nexcept ImportError:\n    import pickle\n"])
    assert result == {"manager": "pip", "packages": "", "python": None, "unresolved": []}


def test_python2_cells_still_give_their_imports():
    result = suggest(['import numpy as np\nprint "hello"\nfrom sklearn import svm\n'])
    assert packages(result) == ["numpy", "scikit-learn"]


def test_pep723_block_gives_pins_and_python():
    code = (
        "# /// script\n"
        '# requires-python = ">=3.12"\n'
        "# dependencies = [\n"
        '#   "requests<3",\n'
        '#   "rich",\n'
        "# ]\n"
        "# ///\n"
        "import requests, rich\n"
    )
    result = suggest([code], pythons=["3.11", "3.12.3", "3.13"], default_python="3.11")
    assert packages(result) == ["requests<3", "rich"] and result["unresolved"] == []
    assert result["python"] == "3.13"
    assert suggest([code], pythons=["3.11", "3.12"], default_python="3.12")["python"] == "3.12"
    assert suggest([code], pythons=["3.11"], default_python="3.11")["python"] is None


def test_nbformat_3_notebooks():
    nb = {"nbformat": 3, "worksheets": [{"cells": [{"cell_type": "code", "input": ["import numpy\n", "import yaml"]}]}]}
    assert packages(from_body({"notebook": nb})) == ["numpy", "PyYAML"]


@pytest.mark.parametrize("body, field", [
    ([], "notebook"),
    ({}, "notebook"),
    ({"notebook": {"cells": []}, "code": ""}, "notebook"),
    ({"notebook": "not a notebook"}, "notebook"),
    ({"notebook": {"metadata": {}}}, "notebook"),
    ({"notebook": {"cells": [{"cell_type": "code", "source": 7}]}}, "notebook"),
    ({"notebook": {"cells": ["cell"]}}, "notebook"),
    ({"code": 12}, "code"),
    ({"code": "", "local_modules": "helpers"}, "local_modules"),
    ({"code": "", "extra": 1}, "extra"),
    ({"code": "# /// script\n# dependencies = [\n# ///\n"}, "code"),
    ({"code": "# /// script\n# dependencies = [1]\n# ///\n"}, "code"),
    ({"code": '# /// script\n# requires-python = "not a spec"\n# ///\n'}, "code"),
])
def test_bad_bodies_name_the_field(body, field):
    with pytest.raises(SuggestionError) as e:
        from_body(body, ["3.12"], "3.12")
    assert e.value.field == field and str(e.value)


def test_hostile_sources_get_an_answer_or_a_named_field():
    """Whatever code arrives, the reader answers or raises SuggestionError (a 422), never anything else."""
    import random

    pieces = ["import ", "from ", "%pip install ", "!pip install ", "# /// script\n", "# ///\n", "# dependencies = [\n",
              '"x==1",', "\n", "    ", "(", ")", "%%writefile ", "a.py", "\x00", "try:\n", "except ImportError:\n", "'",
              '"', "{", "}", "\\", "=", "# requires-python = 3\n", "numpy", "sklearn", ".", "..", ",", "as ", "?", "!",
              "%%time\n", "%%bash\n"]
    rng = random.Random(7)
    samples = ["x = " + "-" * 20000 + "1", "+".join(["a"] * 20000), "[" * 20000, "import numpy\n" + "(" * 300 + ")" * 300]
    samples += ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 30))) for _ in range(120)]
    for code in samples:
        for body in ({"code": code}, {"notebook": {"cells": [{"cell_type": "code", "source": code}]}}):
            try:
                result = from_body(body, ["3.12"], "3.12")
            except SuggestionError as e:
                assert e.field in ("code", "notebook")
            else:
                assert set(result) == {"manager", "packages", "python", "unresolved"}


# ---------------------------------------------------------------- the corpus


def corpus_notebook(entry: dict) -> dict:
    with open(os.path.join(CORPUS, "notebooks", entry["file"])) as f:
        return json.load(f)


def import_cell(entry: dict) -> str:
    """The notebook's module-level imports, in order, without its own local modules: its import cell."""
    lines = []
    for source in suggestions.notebook_sources(corpus_notebook(entry)):
        try:
            tree = ast.parse(suggestions.to_python(source))
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            if not any(n.split(".")[0] in entry["local_modules"] for n in names):
                lines.append(ast.unparse(node))
    return "\n".join(dict.fromkeys(lines))


def test_corpus_is_real_and_recorded():
    assert len(MANIFEST) >= 20
    assert len({e["repository"] for e in MANIFEST}) >= 5
    for entry in MANIFEST:
        assert len(entry["commit"]) == 40 and entry["path"].endswith(".ipynb")
        assert corpus_notebook(entry)["cells"], entry["file"]
    assert sorted(e["file"] for e in MANIFEST) == sorted(f for f in os.listdir(os.path.join(CORPUS, "notebooks")))


@pytest.mark.parametrize("entry", MANIFEST, ids=[e["file"][:60] for e in MANIFEST])
def test_corpus_notebooks_resolve_completely(entry):
    result = from_body({"notebook": corpus_notebook(entry), "local_modules": entry["local_modules"]})
    assert result["unresolved"] == [] and result["packages"], result
    assert import_cell(entry)


# ---------------------------------------------------------------- the route


async def test_route_answers_and_writes_nothing(api, envmgr_root):
    nb = corpus_notebook(MANIFEST[0])
    data = await api.ok("POST", "suggestions", {"notebook": nb}, expect=(200,))
    assert set(data) == {"manager", "packages", "python", "unresolved"} and "numpy" in data["packages"]
    data = await api.ok("POST", "suggestions", {"code": "import sklearn\n%pip install cv2-nonsense==1\n"}, expect=(200,))
    assert data["packages"] == "cv2-nonsense==1\nscikit-learn\n"
    for raw, status in [(b"{not json", 400), (b"[1, 2]", 422), (json.dumps({"notebook": 5}).encode(), 422),
                        (json.dumps({"code": "x", "notebook": {}}).encode(), 422), (json.dumps({"cells": []}).encode(), 422)]:
        code, err = await api.call("POST", "suggestions", raw_body=raw)
        assert code == status and err["message"] and err["reason"], (raw, code, err)
    assert os.listdir(os.path.join(envmgr_root, "envs", "default")) == []


@pytest.mark.slow
async def test_corpus_environments_build_and_their_import_cells_run(api):
    """Every corpus notebook: suggestions → create (real packages through uv and its cache) → ready →
    the notebook's import cell runs in the environment's kernel."""
    names = {}
    for i, entry in enumerate(MANIFEST):
        suggestion = await api.ok("POST", "suggestions", {"notebook": corpus_notebook(entry),
                                                          "local_modules": entry["local_modules"]}, expect=(200,))
        name = f"corpus-{i:02d}"
        await api.create({"name": name, "packages": suggestion["packages"]})
        names[name] = entry
    failures = []
    for name, entry in names.items():
        record = await api.wait(name, timeout=900)
        if record["status"] != "ready":
            failures.append((entry["file"], record["message"]))
            continue
        try:
            await api.run(record["kernel_name"], import_cell(entry))
        except Exception as e:  # collect all, then fail with the whole list
            failures.append((entry["file"], str(e)))
    assert not failures, failures


@pytest.mark.slow
def test_from_notebook_in_the_cli_and_the_magics(servers, local_index, tmp_path, capsys):
    """`jupyter envmgr create NAME --from-notebook PATH` and `%envmgr create NAME --from-notebook PATH`:
    the notebook's %pip pin is kept, its own helpers.py is not a package, an unknown import is reported."""
    from jupyter_envmgr import cli

    server = servers("from-notebook")
    (tmp_path / "helpers.py").write_text("X = 1\n")
    notebook = tmp_path / "analysis.ipynb"
    notebook.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": "# analysis"},
        {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
         "source": ["%pip install envmgr-demo-pkg==2.0\n"]},
        {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
         "source": ["import envmgr_demo_pkg\n", "import helpers\n", "import not_a_known_thing\n"]}]}))
    connect = ["--url", f"http://127.0.0.1:{server.port}/", "--token", server.token]
    assert cli.main(connect + ["create", "from-cli", "envmgr-extra-pkg", "--from-notebook", str(notebook),
                               "--index-url", local_index.url, "--wait"]) == 0
    assert "not_a_known_thing" in capsys.readouterr().err
    record = server.client.get("from-cli")
    assert record["status"] == "ready" and record["packages"] == "envmgr-demo-pkg==2.0\nenvmgr-extra-pkg\n"
    assert cli.main(connect + ["create", "conda-nb", "--manager", "conda", "--from-notebook", str(notebook)]) == 1
    assert "leave out --manager conda" in capsys.readouterr().err

    out = asyncio.run(server.client.run_code("envmgr-from-cli", f"%envmgr create from-magic --from-notebook {notebook} "
                                                                f"--index-url {local_index.url} --wait", timeout=300))
    assert "from-magic: ready" in out and "not_a_known_thing" in out and "Traceback" not in out
    assert server.client.get("from-magic")["packages"] == "envmgr-demo-pkg==2.0\n"
    out = asyncio.run(server.client.run_code("envmgr-from-magic", "import envmgr_demo_pkg; print(envmgr_demo_pkg.__version__)"))
    assert out.strip() == "2.0"
    assert cli.main(connect + ["create", "nope", "--from-notebook", str(tmp_path / "missing.ipynb")]) == 1
    assert "cannot read the notebook" in capsys.readouterr().err
