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
    assert made.stdout.splitlines()[-1] == "cli-env: ready, kernel envmgr-cli-env (revision 1)"  # said once
    assert "ready: ready" not in made.stdout + made.stderr and "/rev-" not in made.stdout + made.stderr

    listed = envmgr(server, "list", runtime=True)
    assert listed.returncode == 0, listed.stderr
    assert "cli-env" in listed.stdout and "team=data" in listed.stdout and "ready" in listed.stdout
    assert json.loads(envmgr(server, "show", "cli-env", "--json").stdout)["env_vars"] == {"MY_VAR": "1"}
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
    assert failed.returncode == 1 and "error: will-fail: revision 1 failed: " in failed.stderr, failed.stderr
    assert "jupyter envmgr log will-fail" in failed.stderr
    unknown = envmgr(server, "lsit")
    assert unknown.returncode == 2 and "did you mean 'list'?" in unknown.stderr and "usage:" not in unknown.stderr


@pytest.mark.slow
def test_dry_runs_print_what_would_change_and_list_says_ready_for_a_failed_update(server, local_index):
    made = envmgr(server, "create", "diff-env", "envmgr-demo-pkg==1.0", "--index-url", local_index.url, "--wait")
    assert made.returncode == 0, made.stderr
    before = server.client.get("diff-env")

    up = envmgr(server, "update", "diff-env", "envmgr-demo-pkg==2.0", "envmgr-extra-pkg", "--dry-run")
    assert up.returncode == 0, up.stderr
    assert up.stdout.splitlines() == [
        "diff-env: would build revision 2; revision 1 keeps serving until it is ready. Resolved, not installed, "
        "against revision 1's lock:",
        "  requested:",
        "    ↑ envmgr-demo-pkg 1.0 → 2.0 (major)",
        "    + envmgr-extra-pkg 0.3 (added)",
        "  1 major change",
    ]
    same = envmgr(server, "rebuild", "diff-env", "--dry-run")
    assert same.returncode == 0 and same.stdout.startswith("diff-env: nothing would change:"), same.stdout + same.stderr
    meta = envmgr(server, "update", "diff-env", "--description", "team baseline", "--dry-run")
    assert "metadata only" in meta.stdout
    assert server.client.get("diff-env") == before  # three dry runs wrote nothing

    assert envmgr(server, "update", "diff-env", "envmgr-demo-pkg==2.0", "--wait").returncode == 0
    down = envmgr(server, "update", "diff-env", "envmgr-demo-pkg<2", "--dry-run")
    assert "    ↓ envmgr-demo-pkg 2.0 → 1.0 (DOWNGRADE, major)" in down.stdout.splitlines(), down.stdout
    pin = envmgr(server, "pin", "diff-env", "--dry-run")
    assert pin.stdout.startswith("diff-env: the packages would be:\n  envmgr-demo-pkg==2.0\n"), pin.stdout
    bad = envmgr(server, "update", "diff-env", "envmgr-demo-pkg==7.0", "--dry-run")
    assert bad.returncode == 1 and bad.stderr.startswith("error: ") and bad.stderr.count("\n") == 1, bad.stderr

    failed = envmgr(server, "update", "diff-env", "envmgr-no-such-pkg-24", "--wait")
    assert failed.returncode == 1 and "revision 3 failed" in failed.stderr and "revision 2 keeps serving" in failed.stderr
    listed = envmgr(server, "list")
    head, row = listed.stdout.splitlines()[0], next(l for l in listed.stdout.splitlines() if l.startswith("diff-env"))
    assert head.split()[3:6] == ["STATUS", "SERVING", "LATEST"]
    assert "ready · update 3 failed" in row and row.split()[-2:] == ["2", "3"], row
    shown = envmgr(server, "show", "diff-env").stdout
    assert not shown.startswith("{") and ["serving", "revision", "2,", "kernel", "envmgr-diff-env"] in [
        l.split() for l in shown.splitlines()], shown


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
    assert json.loads(envmgr(server, "show", "order-env", "--json").stdout)["packages"] == "envmgr-demo-pkg==1.0\n"
