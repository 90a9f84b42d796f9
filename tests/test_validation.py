"""Every bad-input class of the contract: the status, a message naming the field, and nothing written."""
import json
import os

import pytest

GOOD = {"name": "fine-name", "packages": "six\n"}

CASES = [
    # (id, body, status, word the message must contain)
    ("no-name", {"packages": "six"}, 422, "name"),
    ("name-upper", {"name": "Bad"}, 422, "name"),
    ("name-underscore", {"name": "bad_name"}, 422, "name"),
    ("name-leading-dash", {"name": "-bad"}, 422, "name"),
    ("name-trailing-dash", {"name": "bad-"}, 422, "name"),
    ("name-one-char", {"name": "a"}, 422, "name"),
    ("name-too-long", {"name": "a" * 64}, 422, "name"),
    ("name-dots", {"name": "../etc"}, 422, "name"),
    ("name-not-string", {"name": 5}, 422, "name"),
    ("unknown-field", dict(GOOD, colour="red"), 400, "colour"),
    ("manager", dict(GOOD, manager="poetry"), 422, "manager"),
    ("python-old", dict(GOOD, python="2.7"), 422, "python"),
    ("python-not-offered", dict(GOOD, python="3.99"), 422, "python"),
    ("python-number", dict(GOOD, python=3.11), 422, "python"),
    ("labels-key", dict(GOOD, labels={"bad key": "v"}), 422, "labels"),
    ("labels-prefix", dict(GOOD, labels={"Bad_Prefix/k": "v"}), 422, "labels"),
    ("labels-value", dict(GOOD, labels={"k": "bad value!"}), 422, "labels"),
    ("labels-value-long", dict(GOOD, labels={"k": "v" * 64}), 422, "labels"),
    ("labels-type", dict(GOOD, labels=["a"]), 422, "labels"),
    ("annotations-key", dict(GOOD, annotations={"no spaces": "x"}), 422, "annotations"),
    ("annotations-value-type", dict(GOOD, annotations={"k": 1}), 422, "annotations"),
    ("env-name", dict(GOOD, env_vars={"1BAD": "x"}), 422, "env_vars"),
    ("env-value", dict(GOOD, env_vars={"GOOD": 1}), 422, "env_vars"),
    ("gpu-negative", dict(GOOD, gpu=-1), 422, "gpu"),
    ("gpu-string", dict(GOOD, gpu="2"), 422, "gpu"),
    ("gpu-float", dict(GOOD, gpu=1.5), 422, "gpu"),
    ("gpu-bool", dict(GOOD, gpu=True), 422, "gpu"),
    ("index-scheme", dict(GOOD, index_urls=["ftp://mirror.example/simple"]), 422, "index_urls"),
    ("index-type", dict(GOOD, index_urls="https://mirror.example/simple"), 422, "index_urls"),
    ("index-not-allowed", dict(GOOD, index_urls=["https://elsewhere.example/simple"]), 403, "index_urls"),
    ("opt-r", dict(GOOD, packages="-r other.txt\n"), 403, "packages"),
    ("opt-e", dict(GOOD, packages="-e .\n"), 403, "packages"),
    ("opt-f", dict(GOOD, packages="-f https://x.example/links\nsix\n"), 403, "packages"),
    ("opt-index-url", dict(GOOD, packages="--index-url https://x.example/simple\nsix\n"), 403, "packages"),
    ("opt-extra-index-url", dict(GOOD, packages="six\n--extra-index-url https://x.example/simple\n"), 403, "packages"),
    ("opt-trusted-host", dict(GOOD, packages="--trusted-host x.example\n"), 403, "packages"),
    ("direct-url", dict(GOOD, packages="six @ https://x.example/six-1.0-py3-none-any.whl\n"), 403, "packages"),
    ("local-path", dict(GOOD, packages="./src/pkg\n"), 403, "packages"),
    ("local-archive", dict(GOOD, packages="/tmp/pkg-1.0.zip\n"), 403, "packages"),
    ("bad-requirement", dict(GOOD, packages="numpy>=>2\n"), 422, "packages"),
    ("packages-type", dict(GOOD, packages=["six"]), 422, "packages"),
    ("packages-too-big", dict(GOOD, packages="six\n" * 20000), 422, "packages"),
    ("base-pin", dict(GOOD, packages="ipykernel<5\n"), 422, "ipykernel"),
    ("namespace", dict(GOOD, namespace="nowhere"), 422, "namespace"),
    ("storage", dict(GOOD, storage="elsewhere"), 422, "storage"),
    ("description-type", dict(GOOD, description=5), 422, "description"),
    ("init-script-syntax", dict(GOOD, init_script="def (:\n"), 422, "init_script"),
]


def nothing_written(root):
    envs = os.path.join(root, "envs", "default")
    assert not [e for e in os.listdir(envs)] if os.path.isdir(envs) else True, os.listdir(envs)
    kernels = os.path.join(root, "jupyter", "kernels")
    assert not os.path.isdir(kernels) or not os.listdir(kernels)


@pytest.mark.parametrize("envmgr_overrides", [{"allowed_index_urls": ["https://mirror.example/"]}])
async def test_every_bad_input_is_refused_and_writes_nothing(api, envmgr_root):
    for case, body, status, word in CASES:
        got, data = await api.call("POST", "environments", body)
        assert got == status, (case, got, data)
        assert data["reason"] and word in data["message"], (case, data)
        # API.md: "field" names the request field at fault (an unknown one too).
        expected = "packages" if case == "base-pin" else word
        assert data.get("field") == expected, (case, data)
        nothing_written(envmgr_root)
    assert (await api.ok("GET", "environments"))["environments"] == []


async def test_malformed_and_oversized_bodies(api, envmgr_root, envmgr_config):
    status, data = await api.call("POST", "environments", raw_body="{not json")
    assert status == 400 and data["reason"] == "invalid_json"
    status, data = await api.call("POST", "environments", raw_body="[1, 2]")
    assert status == 400
    big = json.dumps({"name": "big", "description": "x" * (2 * 1024 * 1024)})
    status, data = await api.call("POST", "environments", raw_body=big)
    assert status == 413 and "max_body_bytes" in data["message"]
    nothing_written(envmgr_root)


async def test_patch_validation_changes_nothing(api, envmgr_root):
    await api.create({"name": "keep-me", "packages": "six\n"})
    before = await api.wait("keep-me")
    for body, status in [
        ({"packages": "-e .\n"}, 403), ({"gpu": -2}, 422), ({"name": "renamed"}, 422),
        ({"manager": "conda"}, 422), ({"status": "ready", "bogus": 1}, 400), ({"labels": {"a b": "c"}}, 422),
    ]:
        got, data = await api.call("PATCH", "environments/keep-me", body)
        assert got == status, (body, got, data)
    after = await api.get("keep-me")
    assert after == before
    assert (await api.call("PATCH", "environments/nope", {"description": "x"}))[0] == 404
    assert (await api.call("GET", "environments/Bad_Name"))[0] == 404
    assert (await api.call("POST", "environments/keep-me/actions", {"action": "explode"}))[0] == 422
    assert (await api.call("POST", "environments/keep-me/actions", {"action": "cancel"}))[0] == 409


async def test_name_taken_is_409(api):
    await api.create({"name": "taken", "packages": ""})
    status, data = await api.call("POST", "environments", {"name": "taken", "packages": ""})
    assert status == 409 and "taken" in data["message"]
    await api.wait("taken")
