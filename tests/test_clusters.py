"""Clusters' storage, fast: a namespace belongs to one cluster, whose root holds everything of it (layout.py),
and a configuration that puts a namespace in two clusters is refused at start."""
from __future__ import annotations

import json
import os

import pytest
from traitlets.config import Config

from jupyter_envmgr.app import EnvManagerApp
from jupyter_envmgr.builders.kubernetes.config import clusters
from jupyter_envmgr.kernels import KernelRegistry
from jupyter_envmgr.layout import Layout, namespace_roots, relocate
from jupyter_envmgr.recipes import RecipeBook, Toolchain
from jupyter_envmgr.store import Store


def test_namespace_roots_map_each_namespace_to_its_clusters_root(tmp_path):
    east, west = str(tmp_path / "east"), str(tmp_path / "west")
    roots = namespace_roots({"east": (east, ("team-a", "team-b")), "west": (west, ("team-c",))})
    assert roots == {"team-a": east, "team-b": east, "team-c": west}
    assert list(roots) == ["team-a", "team-b", "team-c"]  # the default cluster's first
    with pytest.raises(ValueError, match="'team-a' is in clusters 'east' and 'west'"):
        namespace_roots({"east": (east, ("team-a",)), "west": (west, ("team-c", "team-a"))})


def test_a_namespace_in_two_clusters_is_a_configuration_error():
    app = EnvManagerApp(config=Config(EnvManagerApp={"backend": "kubernetes", "root_dir": "/envs", "namespaces": ["a"],
                                                     "clusters": {"east": {}, "west": {"mount_path": "/west"}}}))
    with pytest.raises(ValueError, match="namespace 'a' is in clusters 'east' and 'west'"):
        clusters(app)
    app.clusters = {"east": {}, "west": {"namespaces": ["b"], "mount_path": "/west"}}
    assert [(c.name, c.namespaces, c.mount_path) for c in clusters(app)] == [("east", ("a",), "/envs"), ("west", ("b",), "/west")]


def test_every_path_follows_the_namespace_to_its_root(tmp_path):
    east, west = str(tmp_path / "east"), str(tmp_path / "west")
    store = Store(east, roots={"a": east, "b": west})
    assert store.all_roots == [east, west]
    assert store.record_path("b", "env") == os.path.join(west, "envs", "b", "env", "env.json")
    assert store.prefix("a", "env", 2) == os.path.join(east, "envs", "a", "env", "rev-0002")
    assert store.request_path("b", "r1") == os.path.join(west, "requests", "b", "r1.json")
    assert store.namespaces_of(west) == ["b"]
    assert store.root_holding(os.path.join(west, "envs", "b", "x")) == west
    assert store.root_holding("/elsewhere") == east
    import errno

    from jupyter_envmgr.store import storage_error
    full = OSError(errno.ENOSPC, "No space left on device", os.path.join(west, "envs", "b", "env", "env.json"))
    assert west in storage_error(full, store.root_of_fault(full)).message  # the full volume, not the default one
    assert store.root_of_fault(OSError(errno.EROFS, "Read-only file system")) == east

    store.ensure_layout(["a", "b"])
    store.create("b", "env", {"name": "env", "namespace": "b", "revisions": []})
    assert os.path.exists(os.path.join(west, "envs", "b", "env", "env.json"))
    assert store.names("b") == ["env"] and store.names("a") == []
    os.makedirs(os.path.join(east, "envs", "b"))  # b's directory under a root that is not b's: not b's
    assert store.namespaces_on_disk() == ["a", "b"]
    # A delete renames into the trash of the environment's own root (never across filesystems).
    gone = store.remove("b", "env")
    assert os.path.dirname(gone) == os.path.join(west, "trash")
    assert store.empty_trash() == 1 and os.listdir(os.path.join(west, "trash")) == []


def test_a_build_elsewhere_uses_that_roots_caches_and_pythons(tmp_path):
    east, west = str(tmp_path / "east"), str(tmp_path / "west")
    tools = Toolchain(uv="uv", python_for=str, uv_cache_dir=os.path.join(east, "cache", "uv"),
                      python_install_dir=os.path.join(east, "python"), bytecode_cache_dir=os.path.join(east, "cache", "bytecode"),
                      bytecode_program=os.path.join(east, ".envmgr", "bytecode-abc.py"))
    book = RecipeBook(tools, {"pip": ["ipykernel"]})
    assert book.rooted(east, east) is book
    moved = book.rooted(east, west)
    assert (moved.tools.uv_cache_dir, moved.tools.python_install_dir) == (os.path.join(west, "cache", "uv"), os.path.join(west, "python"))
    # the bytecode cache and the program a Job runs (a copy on the volume) are that root's too
    assert (moved.tools.bytecode_cache_dir, moved.tools.bytecode_program) == (
        os.path.join(west, "cache", "bytecode"), os.path.join(west, ".envmgr", "bytecode-abc.py"))
    assert book.tools.uv_cache_dir == os.path.join(east, "cache", "uv")  # the original is unchanged
    assert relocate("/shared/uv-cache", east, west) == "/shared/uv-cache"  # configured outside the root: stays


def test_kernelspecs_go_to_the_root_of_their_environment(tmp_path):
    east, west, user = str(tmp_path / "east"), str(tmp_path / "west"), str(tmp_path / "user")
    store = Store(east, roots={"a": east, "b": west})
    registry = KernelRegistry(store, [user], "a")
    record = {"name": "env", "namespace": "b", "python": "3.12", "ready_revision": 1}
    name = registry.write(record, {})
    assert name == "envmgr-env"  # short in the first namespace of its root, as a server of that root names it
    with open(os.path.join(west, "jupyter", "kernels", name, "kernel.json")) as f:
        spec = json.load(f)
    assert spec["argv"][0] == os.path.join(west, "envs", "b", "env", "rev-0001", "bin", "python")
    assert spec["env"]["PYTHONPATH"] == os.path.join(west, "jupyter", "lib")
    assert spec["metadata"]["envmgr"]["root"] == west
    assert os.path.exists(os.path.join(user, name, "kernel.json"))
    assert not os.path.exists(os.path.join(east, "jupyter", "kernels", name))
    assert registry.root_dirs == [os.path.join(east, "jupyter", "kernels"), os.path.join(west, "jupyter", "kernels")]
    registry.resync({})
    assert not os.path.exists(os.path.join(west, "jupyter", "kernels", name))
    assert Layout(east).root_of("anything") == east


@pytest.mark.parametrize("envmgr_overrides", [{"namespaces": ["default", "team-b"]}])
async def test_the_local_backend_has_one_cluster(api, envmgr_root):
    """?cluster= on the local backend: `local` (its namespaces) or a 422 that names the field; nothing written."""
    info = await api.ok("GET", "info")
    assert info["clusters"] == [{"name": "local", "namespaces": ["default", "team-b"]}]
    dry = await api.ok("POST", "environments", {"name": "here", "cluster": "local"}, expect=(200,), dry_run=1, namespace="team-b")
    assert (dry["cluster"], dry["namespace"]) == ("local", "team-b")
    for method, path, body, params, field in (
            ("POST", "environments", {"name": "here", "cluster": "north"}, {}, "cluster"),
            ("POST", "environments", {"name": "here", "cluster": 5}, {}, "cluster"),
            ("POST", "environments", {"name": "here"}, {"cluster": "local", "namespace": "team-z"}, "namespace"),
            ("GET", "environments", None, {"cluster": "north"}, "cluster"),
            ("GET", "environments/here", None, {"cluster": "local", "namespace": "team-z"}, "namespace"),
            ("GET", "events", None, {"cluster": "north"}, "cluster")):
        status, error = await api.call(method, path, body, **params)
        assert status == 422 and error["field"] == field, (path, params, error)
    status, error = await api.call("GET", "environments", cluster="local", namespace="team-z")
    assert "default, team-b" in error["message"] and "'local'" in error["message"]
    assert os.listdir(os.path.join(envmgr_root, "envs", "team-b")) == []


def test_placement_of_cluster_and_namespace():
    """?cluster= and ?namespace= to one namespace, or a 422 naming the field at fault."""
    from jupyter_envmgr.errors import EnvmgrError
    from jupyter_envmgr.placement import Placement

    place = Placement([{"name": "east", "namespaces": ["a", "a2"]}, {"name": "west", "namespaces": ["b"]}], "a")
    assert place.namespaces == ["a", "a2", "b"]
    assert [place.check_place(c, n) for c, n in ((None, None), ("west", None), (None, "b"), ("east", "a2"))] == ["a", "b", "b", "a2"]
    assert (place.cluster_of("b"), place.cluster_of("a2"), place.check_cluster("")) == ("west", "east", "east")
    for cluster, namespace, field in (("north", None, "cluster"), ("west", "a", "namespace"), (None, "zz", "namespace"), (5, None, "cluster")):
        with pytest.raises(EnvmgrError) as e:
            place.check_place(cluster, namespace)
        assert (e.value.status, e.value.field) == (422, field), (cluster, namespace)
