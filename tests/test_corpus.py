"""Real requirements.txt and environment.yml files from public projects (tests/corpus/manifest.json):
each one gets the outcome the manifest records, through the same parse + policy + recipe checks a create runs.
"""
import json
import os

import pytest

from jupyter_envmgr import conda
from jupyter_envmgr.errors import EnvmgrError
from jupyter_envmgr.policy import Policy
from jupyter_envmgr.recipes import RecipeBook, Toolchain
from jupyter_envmgr.requirements import normalized_requirements, parse_requirements
from jupyter_envmgr.spec import Offer, parse_create

CORPUS = os.path.join(os.path.dirname(__file__), "corpus")
MANIFEST = json.load(open(os.path.join(CORPUS, "manifest.json")))["files"]
OFFER = Offer(python_versions=["3.11.9", "3.12.3"], namespaces=["default"], storages=[{"name": "default"}],
              managers=["pip", "conda"])
DEFAULT_PYTHON = "3.11"


def checker():
    policy = Policy()
    settings = conda.CondaSettings(channels=["conda-forge"])
    book = RecipeBook(Toolchain(uv="uv", python_for=str, uv_cache_dir="/nonexistent"), policy.base_packages,
                      policy=policy, conda=settings)

    def check(body):
        """What POST /environments checks before it writes anything (manager.create's order)."""
        default = lambda values: book.pinned_python(values.get("manager", "pip"), values.get("packages", ""),
                                                    OFFER.python_versions, DEFAULT_PYTHON) or DEFAULT_PYTHON
        spec = parse_create(body, OFFER, default)
        policy.check_spec(spec)
        book.validate(spec)
        if spec.manager == "conda":
            resolved = conda.check(spec, settings, policy, policy.base_packages["conda"])
            return spec, f"python {spec.python}\n" + "\n".join(resolved.specs + resolved.pip + resolved.notes)
        return spec, f"python {spec.python}\n" + normalized_requirements(parse_requirements(spec.packages))

    return check


def test_the_corpus_is_real_and_large_enough():
    assert len(MANIFEST) >= 40
    assert len({(f["repo"], f["path"]) for f in MANIFEST}) == len(MANIFEST)
    for entry in MANIFEST:
        text = open(os.path.join(CORPUS, entry["file"])).read()
        assert text.strip() and len(entry["commit"]) == 40, entry["file"]
        for host in ("pypi" + ".org", "pythonhosted" + ".org", "anaconda" + ".org", "anaconda" + ".com"):
            assert host not in text, (entry["file"], host)  # registry host names are stripped


@pytest.mark.parametrize("entry", MANIFEST, ids=[e["file"] for e in MANIFEST])
def test_each_file_gets_its_recorded_outcome(entry):
    text = open(os.path.join(CORPUS, entry["file"])).read()
    body = {"name": "corpus-env", "manager": entry["manager"], "packages": text}
    expect = entry["expect"]
    try:
        spec, summary = checker()(body)
    except EnvmgrError as e:
        assert e.status == expect["status"], (entry["file"], e.status, e.message)
        assert e.field == "packages" and expect["message_contains"] in e.message, (entry["file"], e.message)
        assert "\n" not in e.message and len(e.message) <= 600
        return
    assert expect["status"] == 200, (entry["file"], "accepted, but the manifest expects", expect)
    assert expect["message_contains"] in summary, (entry["file"], summary[:2000])
    if spec.manager == "pip":  # what uv gets: no comments, no continuations, one requirement per line
        assert "#" not in summary and "\\" not in summary


DRY_RUN = hasattr(__import__("jupyter_envmgr.handlers", fromlist=["x"]).EnvmgrHandler, "dry_run")


@pytest.mark.skipif(not DRY_RUN, reason="POST ?dry_run=1 comes with the core branch")
@pytest.mark.parametrize("envmgr_overrides", [{
    "python_interpreters": {"3.11.9": os.path.realpath(os.sys.executable), "3.12.3": os.path.realpath(os.sys.executable)},
    "default_python": DEFAULT_PYTHON, "conda_channels": ["conda-forge"],
}])
async def test_each_file_posted_as_a_dry_run(api, envmgr_root):
    """The same outcomes through a real server's POST ?dry_run=1: 200 with the record it would create, or the 4xx."""
    for entry in MANIFEST:
        body = {"name": "corpus-env", "manager": entry["manager"],
                "packages": open(os.path.join(CORPUS, entry["file"])).read()}
        status, data = await api.call("POST", "environments", body, dry_run=1)
        expect = entry["expect"]
        assert status == expect["status"], (entry["file"], status, data)
        if status == 200:
            assert data["name"] == "corpus-env" and data["packages"] == body["packages"], entry["file"]
            if expect["message_contains"].startswith("python "):
                assert data["python"] == expect["message_contains"].split()[1], (entry["file"], data["python"])
        else:
            assert data["field"] == "packages" and expect["message_contains"] in data["message"], (entry["file"], data)
    assert not os.path.isdir(os.path.join(envmgr_root, "envs", "default")) or not os.listdir(
        os.path.join(envmgr_root, "envs", "default"))
