"""Builds of real requirements files (tests/corpus) and of a hash-pinned lock, against the tests' local
index, then notebooks run on their kernels by nbconvert and papermill, as a user's batch job would.

The local index serves a small wheel for each name a file lists, so the files are built as written
(comments, markers, pins) without downloading the real packages.
"""
import os
import subprocess
import sys

import nbformat
import pytest
import uv

from jupyter_envmgr.requirements import parse_requirements

CORPUS = os.path.join(os.path.dirname(__file__), "corpus")
BUILT = ["pip/whisper.requirements.txt", "pip/clip.requirements.txt", "pip/pytorch-examples-mnist.requirements.txt"]

pytestmark = pytest.mark.slow


def serve(local_index, text):
    """A wheel on the local index for each requirement of `text`, at a version its specifier allows."""
    for line in parse_requirements(text):
        spec = line.requirement.specifier
        have = [f.split("-")[1] for f in local_index.project(line.requirement.name)]
        if not any(spec.contains(v) for v in have):
            local_index.add(line.requirement.name, next((s.version.rstrip(".*") for s in spec
                                                         if s.operator in ("==", "~=", ">=")), "1.0"))


def notebook(tmp_path, kernel, cells, env, tool):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    path = tmp_path / f"{kernel}-{tool}.ipynb"
    nbformat.write(nb, str(path))
    out = tmp_path / f"{kernel}-{tool}-out.ipynb"
    if tool == "papermill":
        argv = [sys.executable, "-m", "papermill", str(path), str(out), "-k", kernel, "--no-progress-bar"]
    else:
        argv = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", "--output", str(out),
                f"--ExecutePreprocessor.kernel_name={kernel}", str(path)]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return nbformat.read(str(out), as_version=4)


def texts(nb):
    """Each cell's outputs as a text-only client sees them."""
    found = []
    for cell in nb.cells:
        parts = []
        for o in cell.get("outputs", []):
            parts.append(o.get("text") or o.get("data", {}).get("text/plain", ""))
        found.append("".join(parts))
    return found


def test_corpus_files_build_and_run_under_nbconvert_and_papermill(servers, local_index, tmp_path):
    server = servers("corpus")
    env = dict(os.environ, JUPYTER_PATH=os.path.join(servers.root, "jupyter"),
               JUPYTER_RUNTIME_DIR=os.path.join(server.base, "runtime"))
    names = {}
    for file in BUILT:
        text = open(os.path.join(CORPUS, file)).read()
        serve(local_index, text)
        name = "corpus-" + file.split("/")[1].split(".")[0]
        server.client.create({"name": name, "packages": text, "index_urls": [local_index.url]})
        names[name] = text
    for name, text in names.items():
        record = server.client.wait(name, timeout=300)
        assert record["status"] == "ready", (name, record["message"])
        assert record["packages"] == text  # the record keeps the file as written; uv got the judged lines
    # whisper's file: `triton>=2.0.0;platform_machine=="x86_64" and sys_platform=="linux" or ...` (a marker)
    lock = server.client.export("corpus-whisper", "requirements")
    assert "torch==" in lock and "more-itertools==" in lock
    assert ("triton==" in lock) == (os.uname().machine == "x86_64")

    cells = ["import torch, tqdm; print('torch', torch.__version__)", "%envmgr list"]
    for tool in ("nbconvert", "papermill"):
        out = texts(notebook(tmp_path, "envmgr-corpus-whisper", cells, env, tool))
        assert out[0].startswith("torch 1."), out  # a wheel the local index serves
        assert "corpus-whisper" in out[1] and "ready" in out[1] and "<IPython" not in out[1], out
    out = texts(notebook(tmp_path, "envmgr-corpus-clip", ["import torchvision; print(torchvision.__version__)"], env, "papermill"))
    assert out[0].strip() == "0.8.2"


def test_a_hash_pinned_lock_builds_and_a_tampered_one_fails_clearly(servers, local_index, tmp_path):
    """pip-compile / `uv pip compile --generate-hashes` output, made here by uv from the local index."""
    server = servers("locked")
    src = tmp_path / "requirements.in"
    src.write_text("envmgr-demo-pkg==2.0\nenvmgr-extra-pkg\n")
    compiled = subprocess.run(
        [uv.find_uv_bin(), "pip", "compile", "--generate-hashes", "--index-url", local_index.url, "--no-header", str(src)],
        capture_output=True, text=True, timeout=120, env=dict(os.environ, UV_CACHE_DIR=str(tmp_path / "cache")),
    )
    assert compiled.returncode == 0, compiled.stderr
    lock = compiled.stdout
    assert "--hash=sha256:" in lock and "\\\n" in lock and "# via" in lock  # the real shape of such a file
    server.client.create({"name": "locked", "packages": lock, "index_urls": [local_index.url]})
    record = server.client.wait("locked", timeout=300)
    assert record["status"] == "ready", record["message"]
    assert "envmgr-demo-pkg==2.0" in server.client.export("locked", "requirements")

    tampered = lock.replace(lock.split("--hash=sha256:")[1][:64], "0" * 64)
    server.client.update("locked", {"packages": tampered})
    record = server.client.wait("locked", timeout=300)
    assert record["status"] == "failed" and record["ready_revision"] == 1
    assert "does not match its --hash" in record["message"] and len(record["message"]) <= 300, record["message"]
