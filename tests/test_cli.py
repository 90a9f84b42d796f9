"""`jupyter envmgr` against a real server process: found through runtime files or --url/--token."""
import json
import os
import subprocess
import sys

import pytest


def envmgr(server, *args, runtime=False, stdin=None):
    env = dict(os.environ)
    argv = [sys.executable, "-m", "jupyter_envmgr.cli"]
    if runtime:  # find the server the way a user's terminal would: Jupyter's runtime files
        env["JUPYTER_RUNTIME_DIR"] = os.path.join(server.base, "runtime")
    else:
        argv += ["--url", f"http://127.0.0.1:{server.port}/", "--token", server.token]
    return subprocess.run(argv + list(args), env=env, capture_output=True, text=True, timeout=300, input=stdin)


@pytest.fixture
def server(servers):
    return servers("cli")


@pytest.mark.slow
def test_cli_round_trip(server, local_index, tmp_path):
    made = envmgr(server, "create", "cli-env", "envmgr-demo-pkg==1.0", "--index-url", local_index.url,
                  "--label", "team=data", "--env", "MY_VAR=1", "--wait")
    assert made.returncode == 0, made.stderr
    assert "ready, kernel envmgr-cli-env" in made.stdout
    assert "100%" in made.stderr  # the progress bar's last state

    listed = envmgr(server, "list", runtime=True)
    assert listed.returncode == 0, listed.stderr
    assert "cli-env" in listed.stdout and "team=data" in listed.stdout and "ready" in listed.stdout
    assert json.loads(envmgr(server, "show", "cli-env").stdout)["env_vars"] == {"MY_VAR": "1"}
    assert "==> done" in envmgr(server, "log", "cli-env").stdout

    updated = envmgr(server, "update", "cli-env", "envmgr-demo-pkg==2.0", "--wait")
    assert updated.returncode == 0, updated.stderr
    followed = envmgr(server, "log", "cli-env", "--follow")
    assert "envmgr-demo-pkg==2.0" in followed.stdout or "==> done" in followed.stdout
    assert "envmgr-demo-pkg==2.0" in envmgr(server, "export", "cli-env", "--format", "requirements").stdout

    rolled = envmgr(server, "rollback", "cli-env", "1")
    assert rolled.returncode == 0 and "revision 1" in rolled.stdout

    spec_file = tmp_path / "spec.json"
    assert envmgr(server, "export", "cli-env", "-o", str(spec_file)).returncode == 0
    spec = json.loads(spec_file.read_text())
    spec["index_urls"] = [local_index.url]
    spec_file.write_text(json.dumps(spec))
    imported = envmgr(server, "import", str(spec_file), "--name", "cli-copy", "--wait")
    assert imported.returncode == 0, imported.stderr

    assert envmgr(server, "wait", "cli-copy").returncode == 0
    assert envmgr(server, "delete", "cli-env").returncode == 0
    assert envmgr(server, "delete", "cli-copy").returncode == 0
    assert "cli-env" not in envmgr(server, "list").stdout


@pytest.mark.slow
def test_cli_errors_are_the_servers_message(server):
    bad = envmgr(server, "create", "Bad_Name")
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: name:") and "Traceback" not in bad.stderr
    missing = envmgr(server, "show", "nope")
    assert missing.returncode == 1 and "no environment named 'nope'" in missing.stderr
    wrong_token = subprocess.run(
        [sys.executable, "-m", "jupyter_envmgr.cli", "--url", f"http://127.0.0.1:{server.port}/", "--token", "wrong", "list"],
        capture_output=True, text=True,
    )
    assert wrong_token.returncode == 1 and "error:" in wrong_token.stderr
    failed = envmgr(server, "create", "will-fail", "envmgr-no-such-package-at-all", "--wait")
    assert failed.returncode == 1 and "will-fail is failed" in failed.stderr


def test_options_and_packages_in_any_order():
    from jupyter_envmgr import cli

    parser = cli.build_parser()
    for argv in (["create", "n", "--wait", "six"], ["create", "n", "six", "--wait"], ["create", "--wait", "n", "six"]):
        args = cli.parse_args(parser, argv)
        assert args.packages == ["six"] and args.wait and args.name == "n", argv
    args = cli.parse_args(parser, ["update", "n", "six", "--python", "3.12", "numpy>=2", "--label", "a=b"])
    assert args.packages == ["six", "numpy>=2"] and args.python == "3.12" and args.label == ["a=b"]
    with pytest.raises(SystemExit):
        cli.parse_args(parser, ["create", "n", "--bogus"])


def test_environment_yaml_implies_conda_unless_manager_says_otherwise(tmp_path):
    from jupyter_envmgr import cli

    parser = cli.build_parser()
    yml = tmp_path / "environment.yml"
    yml.write_text("channels:\n  - conda-forge\ndependencies:\n  - numpy\n")
    spec = cli.spec_from_args(cli.parse_args(parser, ["create", "n", "-r", str(yml)]), creating=True)
    assert spec["manager"] == "conda" and spec["packages"].startswith("channels:")
    spec = cli.spec_from_args(cli.parse_args(parser, ["create", "n", "-r", str(yml), "--manager", "pip"]), creating=True)
    assert spec["manager"] == "pip"
    text = tmp_path / "deps.txt"
    text.write_text("dependencies:\n  - numpy\n")  # YAML by its content, whatever the file is called
    assert cli.spec_from_args(cli.parse_args(parser, ["create", "n", "-r", str(text)]), creating=True)["manager"] == "conda"
    plain = tmp_path / "requirements.txt"
    plain.write_text("six\n")
    assert "manager" not in cli.spec_from_args(cli.parse_args(parser, ["create", "n", "-r", str(plain)]), creating=True)


@pytest.mark.slow
def test_cli_takes_packages_after_options(server, local_index):
    made = envmgr(server, "create", "order-env", "--wait", "--index-url", local_index.url, "envmgr-demo-pkg==1.0")
    assert made.returncode == 0, made.stderr
    assert "ready, kernel envmgr-order-env" in made.stdout
    assert json.loads(envmgr(server, "show", "order-env").stdout)["packages"] == "envmgr-demo-pkg==1.0\n"
