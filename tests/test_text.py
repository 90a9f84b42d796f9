"""What `jupyter envmgr` and `%envmgr` print, pure (text.py, the one formatter): milliseconds, in the fast tier."""
import pytest

from jupyter_envmgr import cli, magics
from jupyter_envmgr import text as fmt

READY = {"name": "demo", "manager": "pip", "python": "3.12", "status": "ready", "message": "ready", "revision": 1,
         "ready_revision": 1, "kernel_name": "envmgr-demo", "labels": {"team": "data"}, "packages": "six\n",
         "namespace": "default", "owner": "alice", "created": "2026-11-21T10:00:00Z", "updated": "2026-11-21T10:03:12Z"}
UPDATE_FAILED = dict(READY, status="failed", revision=3, message="envmgr-no-such-pkg was not found in the index")
FIRST_FAILED = dict(READY, status="failed", revision=1, ready_revision=None, kernel_name=None, message="no such package")
BUILDING = dict(READY, status="warming", revision=2, message="installing packages", progress=0.4)


def test_status_is_the_panels_words():
    assert fmt.status_words(READY) == "ready"
    assert fmt.status_words(UPDATE_FAILED) == "ready · update 3 failed"
    assert fmt.status_words(BUILDING) == "ready · update 2 building"
    assert fmt.status_words(dict(BUILDING, status="cancelled")) == "ready · update 2 cancelled"
    assert fmt.status_words(FIRST_FAILED) == "failed"
    assert fmt.status_words(dict(FIRST_FAILED, status="warming")) == "warming"


def test_list_says_ready_for_a_failed_update_and_shows_the_serving_revision():
    text = fmt.table_text([READY, UPDATE_FAILED | {"name": "other"}, FIRST_FAILED | {"name": "broken"}])
    head, *rows = text.splitlines()
    assert head.split() == ["NAME", "MANAGER", "PYTHON", "STATUS", "SERVING", "LATEST", "LABELS"]
    other = next(r for r in rows if r.startswith("other"))
    assert "ready · update 3 failed" in other and "failed 3" not in other
    assert other.split()[-3:] == ["1", "3", "team=data"]  # serving 1, latest 3
    assert next(r for r in rows if r.startswith("broken")).split()[3:6] == ["failed", "—", "1"]
    assert magics.table_text([]).endswith("no environments yet: %envmgr create NAME PKG... --wait")
    html = magics.table_html([UPDATE_FAILED])
    assert "<th>serving</th>" in html and "ready · update 3 failed" in html


def test_show_is_text_not_json():
    text = fmt.record_text(dict(UPDATE_FAILED, env_vars={"MY_VAR": "1"}, index_urls=["https://***@mirror/simple"]))
    assert not text.lstrip().startswith("{") and '"name"' not in text
    lines = text.splitlines()
    assert lines[0] == "demo (namespace default)"
    assert "  status      ready · update 3 failed: envmgr-no-such-pkg was not found in the index" in lines
    assert "  serving     revision 1, kernel envmgr-demo" in lines and "  latest      revision 3 (failed)" in lines
    assert any(l.split() == ["env", "vars", "MY_VAR=1"] for l in lines) and any("https://***@mirror/simple" in l for l in lines)
    assert "ready: ready" not in fmt.record_text(READY)  # a message that only repeats the status is left out


def test_progress_and_outcome_say_it_once():
    assert fmt.progress_line(dict(READY, message="ready")).endswith("100%  ready")
    assert fmt.progress_line(BUILDING).endswith(" 40%  warming: installing packages")
    assert fmt.outcome_line(READY) == "demo: ready, kernel envmgr-demo (revision 1)"
    assert fmt.outcome_line(UPDATE_FAILED) == ("demo: revision 3 failed: envmgr-no-such-pkg was not found in the index; "
                                                  "revision 1 keeps serving")
    assert "<pre" not in magics.progress_html(BUILDING) and "installing packages" in magics.progress_html(BUILDING)


CHANGES = {"python": {"from": "3.11", "to": "3.12"}, "packages": [
    {"name": "numpy", "from": "1.26.4", "to": "2.1.3", "change": "upgraded", "major": True, "requested": True},
    {"name": "pandas", "from": None, "to": "2.2.3", "change": "added", "major": False, "requested": True},
    {"name": "six", "from": "1.16.0", "to": None, "change": "removed", "major": False, "requested": False},
    {"name": "tzdata", "from": "2024.1", "to": "2023.4", "change": "downgraded", "major": False, "requested": False}]}


def test_dry_run_changes_as_text():
    text = fmt.changes_text(dict(READY, revision=2, status="pending", changes=CHANGES))
    assert text.splitlines() == [
        "demo: would build revision 2; revision 1 keeps serving until it is ready. Resolved, not installed, against revision 1's lock:",
        "  Python 3.11 → 3.12",
        "  requested:",
        "    ↑ numpy 1.26.4 → 2.1.3 (major)",
        "    + pandas 2.2.3 (added)",
        "  dependencies:",
        "    - six 1.16.0 (removed)",
        "    ↓ tzdata 2024.1 → 2023.4 (DOWNGRADE)",
        "  1 downgrade and 1 major change",
    ]
    same = fmt.changes_text(dict(READY, revision=2, status="pending", changes={"python": None, "packages": []}))
    assert same.startswith("demo: nothing would change:") and "revision 1 serves" in same
    assert fmt.changes_text(READY) == "demo: metadata only: no new revision, nothing to install; revision 1 keeps serving"
    first = fmt.changes_text(dict(FIRST_FAILED, revision=2, changes={"python": None, "packages": CHANGES["packages"][1:2]}))
    assert "against nothing installed" in first and "keeps serving" not in first
    assert cli.pin_text(dict(READY, packages="six==1.16.0\n")).startswith("demo: the packages would be:\n  six==1.16.0\ndemo: metadata only")


@pytest.mark.parametrize("argv, expected", [
    (["lsit"], "no subcommand 'lsit' (did you mean 'list'?); the subcommands are: list, create, update, rebuild, pin, show"),
    ([], "name a subcommand; the subcommands are: list, create"),
    (["--url", "http://x", "--token", "t", "frob"], "no subcommand 'frob'; the subcommands are: list"),
])
def test_an_unknown_subcommand_names_the_subcommands(argv, expected, capsys):
    with pytest.raises(SystemExit):
        cli.parse_args(cli.build_parser(prog="%envmgr", in_kernel=True), argv)
    err = capsys.readouterr().err
    assert expected in err and "usage:" not in err and "--timeout" not in err and "install" in err
    assert err.count("\n") == 1


def test_update_rebuild_and_pin_take_dry_run():
    parser = cli.build_parser()
    assert cli.parse_args(parser, ["update", "n", "numpy>=2", "--dry-run"]).dry_run
    assert cli.parse_args(parser, ["rebuild", "n", "--dry-run"]).dry_run
    assert not cli.parse_args(parser, ["pin", "n"]).dry_run
    assert cli.parse_args(parser, ["show", "n", "--json"]).json
