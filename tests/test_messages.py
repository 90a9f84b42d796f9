"""A failed build's message: one line, at most 300 characters, naming the culprit and the fix.

The tool output behind each case is real: uv run by the real runner against the tests' local index
(or a port where nothing listens); the whole output stays in the build log.
"""
import hashlib
import json
import os
import subprocess
import sys

import pytest
import uv

from jupyter_envmgr import runner

UV = uv.find_uv_bin()


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("venv") / "v")
    subprocess.run([UV, "venv", "--no-project", "-q", "--python", sys.executable, path], check=True)
    return path


def run_plan(tmp_path, venv, index_url, *args):
    """Run one `uv pip install` step through runner.py, as a build does; return (result, log)."""
    plan = {"log": str(tmp_path / "build.log"), "result": str(tmp_path / "result.json"), "timeout": 120,
            "env": {"UV_INDEX_URL": index_url, "UV_HTTP_RETRIES": "0", "UV_NO_PROGRESS": "1", "NO_COLOR": "1",
                    "UV_CACHE_DIR": str(tmp_path / "cache"), "VIRTUAL_ENV": ""},
            "steps": [{"name": "install", "argv": [UV, "pip", "install", "--python", os.path.join(venv, "bin", "python"), *args]}]}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    subprocess.run([sys.executable, "-I", "-S", runner.__file__, str(tmp_path / "plan.json")], timeout=180)
    return json.loads((tmp_path / "result.json").read_text()), (tmp_path / "build.log").read_text()


def one_line(message):
    assert "\n" not in message and len(message) <= 300, message
    return message


def test_unknown_package_and_version(tmp_path, venv, local_index):
    result, log = run_plan(tmp_path, venv, local_index.url, "envmgr-no-such-package")
    message = one_line(result["message"])
    assert result["status"] == "failed" and "package envmgr-no-such-package was not found" in message
    assert "index_urls" in message and "No solution found" in log
    result, _ = run_plan(tmp_path, venv, local_index.url, "envmgr-demo-pkg==9.9")
    assert "no version matches envmgr-demo-pkg==9.9" in one_line(result["message"])


def test_unreachable_index_names_the_index_and_the_setting(tmp_path, venv):
    result, log = run_plan(tmp_path, venv, "http://user:secret@127.0.0.1:9/simple", "six")
    message = one_line(result["message"])
    assert "could not reach the package index http://" in message and "127.0.0.1:9/simple (connection refused)" in message, message
    assert "index_urls" in message and "allowed_index_urls" in message and "secret" not in message
    assert "Connection refused" in log  # the tool's own chain stays in the log


def test_hash_lock_installs_and_a_wrong_hash_is_named(tmp_path, venv, local_index):
    wheel = local_index.project("envmgr-demo-pkg")
    name = next(f for f in wheel if "-1.0-" in f)
    good = hashlib.sha256(wheel[name]).hexdigest()
    lock = tmp_path / "lock.txt"
    lock.write_text(f"envmgr-demo-pkg==1.0 --hash=sha256:{good}\n")
    result, _ = run_plan(tmp_path, venv, local_index.url, "-r", str(lock))
    assert result["status"] == "ready", result
    lock.write_text(f"envmgr-demo-pkg==2.0 --hash=sha256:{'0' * 64}\n")
    result, _ = run_plan(tmp_path, venv, local_index.url, "-r", str(lock))
    message = one_line(result["message"])
    assert "envmgr-demo-pkg==2.0 as downloaded does not match its --hash" in message, message


def test_an_included_file_is_named_never_quoted(tmp_path, venv, local_index):
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    top = tmp_path / "top.txt"
    top.write_text(f"-r {secret}\n")
    result, _ = run_plan(tmp_path, venv, local_index.url, "-r", str(top))
    assert result["status"] == "failed" and "root:x" not in result["message"], result["message"]
    assert "a local path in packages" in one_line(result["message"])
    top.write_text(f"-r {tmp_path / 'missing.txt'}\n")
    result, _ = run_plan(tmp_path, venv, local_index.url, "-r", str(top))
    assert f"could not read {tmp_path / 'missing.txt'}" in one_line(result["message"])


@pytest.mark.parametrize("step,tail,words", [
    ("conda", ["error: could not install the environment (GatewayError):",
               "error sending request for url (http://127.0.0.1:9/chan/linux-64/repodata.json)",
               "Caused by: Connection refused (os error 111)"],
     ["conda channel http://127.0.0.1:9/chan", "connection refused", "conda_channels"]),
    ("conda", ["error: could not solve the environment:",
               "Cannot solve the request because of: No candidates were found for nosuch *."],
     ["no conda package matches nosuch *", "environment.yaml"]),
    ("init", ["Traceback (most recent call last):", '  File "init.py", line 1', "ValueError: boom"],
     ["the init script failed: ValueError: boom", "init_script"]),
    ("install", ["error: " + "x" * 1000], ["step install failed (exit 1)"]),
])
def test_other_failures_are_one_short_line(step, tail, words):
    message = one_line(runner.summarize(step, 1, tail))
    for word in words:
        assert word in message, message


@pytest.mark.slow
async def test_a_failed_build_record_says_what_to_do(api):
    await api.create({"name": "unreachable", "packages": "six\n", "index_urls": ["http://127.0.0.1:9/simple"]})
    record = await api.wait("unreachable")
    assert record["status"] == "failed"
    assert "could not reach the package index http://127.0.0.1:9/simple" in one_line(record["message"]), record
    status, log = await api.call("GET", "environments/unreachable/log")
    assert status == 200 and "Connection refused" in log
