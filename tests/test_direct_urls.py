"""Issue 23.2: a direct-URL requirement is refused as a direct URL, naming c.EnvManagerApp.allow_direct_urls
(not as a local path naming allowed_source_dirs), and the quoted line keeps the file or distribution name."""

import pytest

from jupyter_envmgr.errors import EnvmgrError
from jupyter_envmgr.policy import Policy
from jupyter_envmgr.requirements import identify, parse_requirements

from test_validation import nothing_written

WHEEL = "flask-3.0.0-py3-none-any.whl"
LONG = "https://host.example/packages/36/42/015c23096649b908c809c69388a805a571a3bea44362fe87e33fc3afa01f/"
DIRECT = [
    ("named-wheel", f"flask @ {LONG}{WHEEL}\n", WHEEL),
    ("bare-wheel-marker", f"{LONG}{WHEEL} ; python_version >= '3.8'\n", WHEEL),
    ("bare-wheel-marker-glued", f"{LONG}{WHEEL}; python_version >= '3.8'\n", WHEEL),
    ("bare-wheel-hash", f"{LONG}{WHEEL} --hash=sha256:{'a' * 64}\n", WHEEL),
    ("named-extras-sdist", f"flask[async] @ {LONG}flask-3.0.0.tar.gz ; python_version >= '3.8'\n", "flask[async] @"),
    ("credentials", f"flask @ https://user:s3cret@host.example/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/{WHEEL}\n", WHEEL),
]


@pytest.mark.parametrize("packages,kept", [c[1:] for c in DIRECT], ids=[c[0] for c in DIRECT])
def test_a_direct_url_is_refused_as_one(packages, kept):
    with pytest.raises(EnvmgrError) as e:
        Policy(allowed_source_dirs=["/srv/wheels"]).check_requirement_lines(packages)
    message = e.value.message
    assert e.value.status == 403 and e.value.field == "packages", message
    assert "direct URL" in message and "c.EnvManagerApp.allow_direct_urls" in message, message
    assert "allowed_source_dirs" not in message and "local path" not in message, message
    assert kept in message and "s3cret" not in message, message


@pytest.mark.parametrize("packages", [c[1] for c in DIRECT], ids=[c[0] for c in DIRECT])
def test_allow_direct_urls_lets_them_through_as_urls(packages):
    lines = Policy(allow_direct_urls=True).check_requirement_lines(packages)
    assert [l.kind for l in lines] == ["url"]
    if packages.startswith("flask"):  # a named URL keeps its requirement: its name is what was requested
        assert lines[0].requirement.name == "flask"


@pytest.mark.parametrize("packages,target", [
    ("evil-1.0-py3-none-any.whl\n", "evil-1.0-py3-none-any.whl"),
    ("x @ ./dist/x-1.0-py3-none-any.whl\n", "./dist/x-1.0-py3-none-any.whl"),
    ("flask @ file:///srv/other/flask-3.0.0-py3-none-any.whl\n", "file:///srv/other/flask-3.0.0-py3-none-any.whl"),
])
def test_a_local_file_is_still_a_local_path(packages, target):
    """Only a URL with a scheme is a direct URL: files where the build runs stay under allowed_source_dirs."""
    (line,) = parse_requirements(packages)
    assert (line.kind, line.target) == ("path", target)
    with pytest.raises(EnvmgrError) as e:
        Policy(allow_direct_urls=True, allowed_source_dirs=["/srv/wheels"]).check_requirement_lines(packages)
    assert e.value.status == 403 and "allowed_source_dirs" in e.value.message


def test_a_file_url_under_an_allowed_dir_passes():
    lines = Policy(allowed_source_dirs=["/srv/wheels"]).check_requirement_lines(f"flask @ file:///srv/wheels/{WHEEL}\n")
    assert lines[0].kind == "path" and lines[0].requirement.name == "flask"


def test_identify_keeps_short_lines_whole_and_cuts_the_middle_of_long_urls():
    assert identify("six==1.16") == "'six==1.16'"
    assert identify(f"flask @ https://host.example/{WHEEL}") == f"'flask @ https://host.example/{WHEEL}'"
    assert identify(f"flask @ {LONG}{WHEEL} --hash=sha256:{'a' * 64}") == f"'flask @ https://host.example/…/{WHEEL}'"
    long_marker = f"{LONG}{WHEEL} ; python_version >= '3.8' and sys_platform == 'linux'"
    assert identify(long_marker) == f"\"https://host.example/…/{WHEEL} ; python_version >= '3.8' and sy…\""
    assert identify(f"https://host.example/{'x' * 90}/pkg.zip#egg=pkg") == "'https://host.example/…/pkg.zip#egg=pkg'"


@pytest.mark.parametrize("envmgr_overrides", [{"allowed_source_dirs": ["/srv/wheels"]}])
async def test_the_route_refuses_a_direct_url_naming_its_setting(api, envmgr_root):
    status, data = await api.call("POST", "environments", {"name": "direct", "packages": f"flask @ {LONG}{WHEEL}\n"})
    assert status == 403 and data["field"] == "packages", data
    assert "c.EnvManagerApp.allow_direct_urls" in data["message"] and WHEEL in data["message"], data
    assert "allowed_source_dirs" not in data["message"], data
    nothing_written(envmgr_root)


@pytest.mark.parametrize("envmgr_overrides", [{"allow_direct_urls": True}])
async def test_the_route_accepts_a_wheel_url_where_direct_urls_are_allowed(api, envmgr_root):
    record = await api.ok("POST", "environments", {"name": "direct", "packages": f"flask @ {LONG}{WHEEL}\n"},
                          expect=(200,), dry_run=1)
    assert record["name"] == "direct"
    nothing_written(envmgr_root)
