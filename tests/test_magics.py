"""%envmgr in real kernels started through a real Jupyter server: the environments' own and a plain ipykernel."""
import asyncio

import pytest


CAPTURE = """from IPython.utils.capture import capture_output
with capture_output() as captured:
    get_ipython().run_line_magic("envmgr", {line!r})
for output in captured.outputs:
    print(sorted(output.data))
    print(output.data["text/plain"])
"""


def run(server, kernel, code):
    return asyncio.run(server.client.run_code(kernel, code, timeout=300))


@pytest.fixture
def server(servers):
    return servers("magics")


@pytest.mark.slow
def test_magics_in_an_environment_kernel(server, local_index):
    url = local_index.url
    server.client.create({"name": "nb-env", "packages": "envmgr-demo-pkg==1.0\n", "index_urls": [url]})
    assert server.client.wait("nb-env", timeout=180)["status"] == "ready"

    # Loaded by the kernels this project registers: no %load_ext needed.
    listed = run(server, "envmgr-nb-env", "%envmgr list")
    assert "<table>" in listed and "nb-env" in listed and "ready" in listed

    made = run(server, "envmgr-nb-env", f"%%envmgr create cell-env --index-url {url} --wait\nenvmgr-demo-pkg==2.0\n")
    assert "cell-env: ready, kernel envmgr-cell-env" in made and "<progress" in made
    assert server.client.get("cell-env")["packages"] == "envmgr-demo-pkg==2.0\n"
    made = run(server, "envmgr-nb-env", f"%envmgr create line-env envmgr-extra-pkg --label team=nb --index-url {url} --wait")
    assert "line-env: ready" in made
    assert server.client.get("line-env")["labels"] == {"team": "nb"}

    assert "ready: ready" not in made and "/rev-" not in made  # the outcome once, no log tail of paths
    preview = run(server, "envmgr-nb-env", "%envmgr update nb-env envmgr-demo-pkg==2.0 --dry-run")
    assert "↑ envmgr-demo-pkg 1.0 → 2.0 (major)" in preview and "would build revision 2" in preview, preview
    assert server.client.get("nb-env")["revision"] == 1
    shown = run(server, "envmgr-nb-env", "%envmgr show nb-env")
    assert not shown.lstrip().startswith("{") and "kernel envmgr-nb-env" in shown
    unknown = run(server, "envmgr-nb-env", "%envmgr lsit")
    assert "did you mean 'list'?" in unknown and "usage:" not in unknown, unknown

    # Text-only clients (papermill, nbconvert, consoles) get text/plain beside the HTML.
    shown = run(server, "envmgr-nb-env", CAPTURE.format(line="list"))
    assert "['text/html', 'text/plain']" in shown and "NAME" in shown and "nb-env" in shown, shown

    # %pip in an environment's kernel adds a revision through the server; it never edits this one in place.
    how = run(server, "envmgr-nb-env", "%pip uninstall -y envmgr-demo-pkg")
    assert "never changed in place" in how and "%envmgr install" in how and "Traceback" not in how
    listed_here = run(server, "envmgr-nb-env", "%pip list")
    assert "envmgr-demo-pkg" in listed_here and "1.0" in listed_here
    installed = run(server, "envmgr-nb-env", "%pip install envmgr-extra-pkg")
    assert "as a new revision" in installed and "restart the kernel" in installed and "Traceback" not in installed
    record = server.client.get("nb-env")
    assert record["ready_revision"] == 2 and "envmgr-extra-pkg" in record["packages"]
    fresh = run(server, "envmgr-nb-env", "import envmgr_extra_pkg, envmgr_demo_pkg; print(envmgr_extra_pkg.__version__, envmgr_demo_pkg.__version__)")
    assert fresh.split() == ["0.3", "1.0"]

    for command, expected in [
        ("%envmgr show line-env", "line-env (namespace default)"),
        ("%envmgr log line-env", "==> done"),
        ("%envmgr export nb-env --format requirements", "envmgr-extra-pkg==0.3"),
        ("%envmgr rollback nb-env 1", "revision 1"),
        ("%envmgr delete line-env", "line-env: deleted"),
    ]:
        assert expected in run(server, "envmgr-nb-env", command), command

    refused = run(server, "envmgr-nb-env", "%envmgr create Bad_Name six")
    assert refused.count("error: name:") == 1 and "Traceback" not in refused


@pytest.mark.slow
def test_magics_in_a_plain_kernel(server):
    out = run(server, "python3", "%load_ext jupyter_envmgr\n%envmgr list")
    assert "no environments yet" in out
    out = run(server, "python3", "%load_ext jupyter_envmgr\n%envmgr install six")
    assert "does not run in an envmgr environment" in out
    # An unauthenticated client is refused, and the token never shows.
    out = run(server, "python3", f"%load_ext jupyter_envmgr\n%envmgr --url http://127.0.0.1:{server.port}/ --token wrong list")
    assert "error:" in out and "Traceback" not in out
    assert server.token not in out


def test_pip_install_in_a_conda_environment_goes_to_its_pip_sub_list():
    from jupyter_envmgr.client import merge_pip_packages
    from jupyter_envmgr.conda import parse_environment

    text = "channels:\n  - conda-forge\ndependencies:\n  - numpy\n  - pip:\n      - six\nvariables:\n  A: b\n"
    merged = parse_environment(merge_pip_packages(text, "attrs==23.1\nsix"))
    assert [d.text for d in merged.specs] == ["numpy"] and [d.text for d in merged.pip] == ["six", "attrs==23.1"]
    assert merged.variables == {"A": "b"}
    fresh = parse_environment(merge_pip_packages("dependencies:\n  - numpy\n", "attrs"))
    assert [d.text for d in fresh.specs] == ["numpy"] and [d.text for d in fresh.pip] == ["attrs"]
