"""Hostile input: every case of issue 12 gets a 4xx that names the field and writes nothing; never a 500.

The requirement parser is checked against pip's own reading (a comment ends at its line's end, even
after a backslash), and what reaches uv is the text the policy judged.
"""

import pytest

from jupyter_envmgr.errors import EnvmgrError
from jupyter_envmgr.policy import Policy
from jupyter_envmgr.recipes import BuildPaths, RecipeBook, Toolchain, write_plan
from jupyter_envmgr.requirements import normalized_requirements, parse_requirements
from jupyter_envmgr.spec import EnvSpec

from test_validation import nothing_written

SHA = "a" * 64
SMUGGLED = [
    # (id, packages, the option the policy must see)
    ("comment-continued", "# pinned by ops \\\n--index-url http://host/simple\nsix\n", "--index-url"),
    ("inline-comment-continued", "six # note \\\n--index-url http://host/simple\n", "--index-url"),
    ("comment-continued-r", "# x \\\n-r /etc/passwd\nsix\n", "--requirement"),
    ("tab-comment-continued", "six\t# note \\\n-i http://host/simple\n", "--index-url"),
    ("short-glued", "-ihttp://host/simple\nsix\n", "--index-url"),
    ("option-with-equals", "--extra-index-url=http://host/simple\n", "--extra-index-url"),
    ("per-requirement-option", "six --config-settings=x=y\n", "--config-settings"),
    ("variable-makes-option", "${OPT}\nsix\n", "--index-url"),
    ("bare-archive-name", "evil-1.0-py3-none-any.whl\n", "allowed_source_dirs"),
    ("editable-vcs-url", "-e git+https://host/x.git#egg=x\n", "--editable"),
]


@pytest.mark.parametrize("packages,option", [c[1:] for c in SMUGGLED], ids=[c[0] for c in SMUGGLED])
def test_no_option_line_gets_past_the_policy(packages, option):
    with pytest.raises(EnvmgrError) as e:
        Policy().check_requirement_lines(packages, variables={"OPT": "--index-url http://host/simple"})
    assert e.value.status == 403 and e.value.field == "packages" and option in e.value.message


def test_requirements_are_read_as_pip_reads_them():
    text = (
        "# a lock as pip-compile --generate-hashes writes it\n"
        f"numpy==1.24.3 \\\n    --hash=sha256:{SHA} \\\n    --hash sha256:{SHA.upper()}\n    # via -r requirements.in\n"
        "requests[socks] >= 2.31 ; python_version >= '3.8'  # a marker and extras\n"
        "pkg-from-var==${PKG_VERSION}\n"
        "split-\\\nname\n"
    )
    lines = parse_requirements(text, {"PKG_VERSION": "1.2"})
    assert [(l.lineno, l.kind) for l in lines] == [(2, "requirement"), (6, "requirement"), (7, "requirement"), (8, "requirement")]
    assert normalized_requirements(lines) == (
        f"numpy==1.24.3 --hash=sha256:{SHA} --hash=sha256:{SHA}\n"
        "requests[socks] >= 2.31 ; python_version >= '3.8'\n"
        "pkg-from-var==1.2\n"
        "split-name\n"
    )
    assert lines[0].hashes == [f"sha256:{SHA}", f"sha256:{SHA}"]


@pytest.mark.parametrize("packages,word", [
    ("pkg==${NOT_SET}\n", "NOT_SET"),
    ("six --hash=sha256:xyz\n", "--hash=sha256:xyz"),
    ("six --hash\n", "--hash needs a value"),
    ("numpy>=>2\n", "line 1"),
    ("six\n\0\n", "NUL"),
    ("six @ https://host/${lower_case}\n", "upper-case"),
    ("x==${NESTED}\n", "upper-case"),
    ("numpy===\n", "=== with no version"),
    ("six\npandas>=1,<\n", "line 2: 'pandas>=1,<' has < with no version"),
])
def test_malformed_requirements_are_422_naming_the_line(packages, word):
    with pytest.raises(EnvmgrError) as e:
        Policy().check_requirement_lines(packages, variables={"NESTED": "${OTHER}"})
    assert e.value.status == 422 and e.value.field == "packages" and word in e.value.message


def test_allowed_options_are_still_checked(tmp_path):
    (tmp_path / "base.txt").write_text("six\n")
    policy = Policy(allowed_requirement_options=["-i", "--requirement"], allowed_index_urls=["https://mirror.example/"],
                    allowed_source_dirs=[str(tmp_path)])
    policy.check_requirement_lines("-i https://mirror.example/simple\nsix\n")
    for text, status, word in [
        ("-i https://elsewhere.example/simple\n", 403, "allowed_index_urls"),
        ("-i http://[::1/simple\n", 422, "not a valid URL"),
        ("-r /etc/passwd\n", 403, "allowed_source_dirs"),
        (f"-r {tmp_path}/../../etc/passwd\n", 403, "allowed_source_dirs"),
    ]:
        with pytest.raises(EnvmgrError) as e:
            policy.check_requirement_lines(text)
        assert e.value.status == status and word in e.value.message, (text, e.value.message)
    assert [l.text for l in policy.check_requirement_lines(f"-r {tmp_path}/base.txt\n")] == ["six"]


def book(policy):
    return RecipeBook(Toolchain(uv="uv", python_for=str, uv_cache_dir=""), policy.base_packages, policy=policy)


def test_uv_gets_the_judged_text_not_the_raw_text(tmp_path):
    spec = EnvSpec(name="x", packages="# ops \\\nsix  # pinned \\\n\n${EXTRA}\n", env_vars={"EXTRA": "attrs==23.1"})
    paths = BuildPaths(prefix=str(tmp_path / "p"), build_dir=str(tmp_path / "b"), log=None, resources_dir=str(tmp_path))
    steps, env = book(Policy()).steps(spec, paths)
    write_plan(spec, paths, steps, env, 60)
    assert open(tmp_path / "b" / "requirements.txt").read() == "six\nattrs==23.1\n"


def test_an_allowed_r_file_is_judged_and_inlined_and_never_quoted(tmp_path):
    policy = Policy(allowed_requirement_options=["-r", "-c"], allowed_source_dirs=[str(tmp_path)])
    (tmp_path / "base.txt").write_text("six  # a comment\nattrs==23.1 \\\n  --hash=sha256:" + SHA + "\n")
    (tmp_path / "pins.txt").write_text("six<2\n")
    spec = EnvSpec(name="x", packages=f"-r {tmp_path}/base.txt\n-c {tmp_path}/pins.txt\nnumpy\n")
    paths = BuildPaths(prefix=str(tmp_path / "p"), build_dir=str(tmp_path / "b"), log=None, resources_dir=str(tmp_path))
    book(policy).steps(spec, paths)
    assert open(tmp_path / "b" / "requirements.txt").read() == (
        f"six\nattrs==23.1 --hash=sha256:{SHA}\n--constraint {tmp_path}/pins.txt\nnumpy\n")
    for content, status in [("--index-url http://host/simple\n", 403), ("root:x:0:0:root:/root:/bin/bash\n", 422),
                            ("evil @ https://host/evil.whl\n", 403), (f"-r {tmp_path}/bad.txt\n", 422)]:
        (tmp_path / "bad.txt").write_text(content)
        for line in (f"-r {tmp_path}/bad.txt\n", f"-c {tmp_path}/bad.txt\n"):
            with pytest.raises(EnvmgrError) as e:
                policy.check_requirement_lines(line)
            assert e.value.status == status and e.value.field == "packages", (content, e.value.message)
            assert "host" not in e.value.message and "root:x" not in e.value.message, e.value.message
    with pytest.raises(EnvmgrError) as e:
        policy.check_requirement_lines(f"-r {tmp_path}/missing.txt\n")
    assert e.value.status == 422 and "cannot be read" in e.value.message


GOOD = {"name": "fine-name", "packages": "six\n"}
HOSTILE = [
    # (id, body, status, field)
    ("name-newline", {"name": "nl-name\n"}, 422, "name"),
    ("name-cr", {"name": "nl-name\r"}, 422, "name"),
    ("name-nul", {"name": "nl\0name"}, 422, "name"),
    ("name-cyrillic", {"name": "n\u0430me"}, 422, "name"),
    ("name-list", {"name": ["a"]}, 422, "name"),
    ("name-object", {"name": {"a": 1}}, 422, "name"),
    ("python-newline", dict(GOOD, python="3.12\n"), 422, "python"),
    ("python-superscript", dict(GOOD, python="3.1\u00b2"), 422, "python"),
    ("python-arabic-digit", dict(GOOD, python="3.\u0661\u0662"), 422, "python"),
    ("python-list", dict(GOOD, python=["3.12"]), 422, "python"),
    ("label-key-newline", dict(GOOD, labels={"team\n": "a"}), 422, "labels"),
    ("label-value-newline", dict(GOOD, labels={"team": "a\n"}), 422, "labels"),
    ("label-prefix-newline", dict(GOOD, labels={"example.com\n/team": "a"}), 422, "labels"),
    ("label-value-object", dict(GOOD, labels={"team": {"a": 1}}), 422, "labels"),
    ("annotation-key-newline", dict(GOOD, annotations={"k\n": "v"}), 422, "annotations"),
    ("env-key-newline", dict(GOOD, env_vars={"HOME\n": "x"}), 422, "env_vars"),
    ("env-key-nul", dict(GOOD, env_vars={"A": "x\0y"}), 422, "env_vars"),
    ("env-not-object", dict(GOOD, env_vars=["A=1"]), 422, "env_vars"),
    ("index-bad-ipv6", dict(GOOD, index_urls=["http://[::1/simple"]), 422, "index_urls"),
    ("index-bad-ipv6-2", dict(GOOD, index_urls=["http://[zz::1]/simple"]), 422, "index_urls"),
    ("index-port-abc", dict(GOOD, index_urls=["http://mirror.example:abc/simple"]), 422, "index_urls"),
    ("index-port-99999", dict(GOOD, index_urls=["http://mirror.example:99999/simple"]), 422, "index_urls"),
    ("index-port-empty", dict(GOOD, index_urls=["http://mirror.example:/simple"]), 422, "index_urls"),
    ("index-newline", dict(GOOD, index_urls=["http://mirror.example/simple\n"]), 422, "index_urls"),
    ("index-nested", dict(GOOD, index_urls=[["http://mirror.example/simple"]]), 422, "index_urls"),
    ("gpu-huge", dict(GOOD, gpu=10 ** 30), 422, "gpu"),
    ("gpu-float-huge", dict(GOOD, gpu=1e308), 422, "gpu"),
    ("packages-object", dict(GOOD, packages={"six": "1"}), 422, "packages"),
    ("packages-null-byte", dict(GOOD, packages="six\0\n"), 422, "packages"),
    ("smuggled-index", dict(GOOD, packages=SMUGGLED[0][1]), 403, "packages"),
    ("smuggled-inline", dict(GOOD, packages=SMUGGLED[1][1]), 403, "packages"),
    ("smuggled-r", dict(GOOD, packages=SMUGGLED[2][1]), 403, "packages"),
    ("conda-python-not-offered", {"name": "conda-env", "manager": "conda",
                                  "packages": "dependencies:\n  - python=3.8\n"}, 422, "packages"),
    ("namespace-newline", dict(GOOD, namespace="default\n"), 422, "namespace"),
    ("init-script-nul", dict(GOOD, init_script="print(1)\0"), 422, "init_script"),
    ("description-object", dict(GOOD, description={"a": 1}), 422, "description"),
]


@pytest.mark.parametrize("envmgr_overrides", [{"conda_channels": ["conda-forge"]}])
async def test_hostile_bodies_get_4xx_naming_the_field_and_write_nothing(api, envmgr_root):
    for case, body, status, field in HOSTILE:
        got, data = await api.call("POST", "environments", body)
        assert got == status, (case, got, data)
        assert data.get("field") == field and data["message"], (case, data)
        nothing_written(envmgr_root)
    # The smuggled -r never shows the file's contents.
    got, data = await api.call("POST", "environments", dict(GOOD, packages=SMUGGLED[2][1]))
    assert "root:" not in data["message"]


async def test_any_body_shape_and_depth_is_a_4xx(api, envmgr_root):
    deep = "[" * 100_000 + "]" * 100_000
    deep_object = '{"name": ' + "[" * 100_000 + "]" * 100_000 + "}"
    for raw in [deep, deep_object, "[]", '"name"', "5", "null", "true", "{", "\xff\xfe", '{"name": "a"} x',
                '{"name": NaN}', '{"name": "dup-one", "name": "dup-two", "bogus": 1}']:
        for method, path in [("POST", "environments"), ("PATCH", "environments/nobody-here"),
                             ("POST", "environments/nobody-here/actions")]:
            got, data = await api.call(method, path, raw_body=raw.encode("utf-8", "surrogatepass"))
            assert 400 <= got < 500, (raw[:40], method, path, got, data)
            assert isinstance(data, dict) and data["message"], (raw[:40], data)
    nothing_written(envmgr_root)


async def test_any_query_is_a_4xx_or_fine(api, envmgr_root):
    await api.create({"name": "query-env", "packages": ""})
    for path, params in [
        ("environments", {"namespace": "default\n"}), ("environments", {"namespace": "\0"}),
        ("environments", {"label": "%%=="}), ("environments", {"status": "\n"}), ("environments", {"label": "="}),
        ("environments/query-env/log", {"revision": "\u00b2"}), ("environments/query-env/log", {"revision": "-1"}),
        ("environments/query-env/log", {"revision": "1e3"}), ("environments/query-env/log", {"revision": "9" * 40}),
        ("environments/query-env/log", {"follow": "\n"}), ("environments/query-env/export", {"format": "\n"}),
        ("environments/query-env", {"namespace": "nope"}), ("environments/query-env%0A", {}),
        ("environments/query-env/revisions", {"namespace": "x" * 10_000}),
    ]:
        got, data = await api.call("GET", path, **params)
        assert got < 500, (path, params, got, data)
        if got >= 400:
            assert data["message"], (path, params, data)
    for body in [{"action": "rollback", "revision": "\u00b2"}, {"action": "rollback", "revision": 10 ** 40},
                 {"action": "rollback", "revision": True}, {"action": "clone", "name": "nl-name\n"},
                 {"action": "clone", "name": ["x"]}, {"action": ["cancel"]}, {"action": None}, {"action": "rebuild", "x": 1},
                 {"action": "clone", "name": "query-env"}]:
        got, data = await api.call("POST", "environments/query-env/actions", body)
        assert 400 <= got < 500 and data["message"], (body, got, data)
    for body in [{"packages": ["six"]}, {"python": "3.12\n"}, {"labels": {"a\n": "b"}}, {"index_urls": ["http://[::1/x"]},
                 {"env_vars": {"A": None}}, {"name": "query-env", "manager": "conda"}, {"revision": 7}]:
        got, data = await api.call("PATCH", "environments/query-env", body)
        assert 400 <= got < 500 and data["message"], (body, got, data)
    listed = (await api.ok("GET", "environments"))["environments"]
    assert [r["name"] for r in listed] == ["query-env"]


def test_messages_never_echo_a_huge_value():
    for text in ["x" * 60_000 + " >=< 1\n", "-r " + "/" * 60_000 + "\n", "six @ https://host/" + "a" * 60_000 + "\n"]:
        with pytest.raises(EnvmgrError) as e:
            Policy().check_requirement_lines(text)
        assert len(e.value.message) < 1000, len(e.value.message)
