"""The team case on a real JupyterHub (issue 22): every attack of the issue, tried as bob, fails; bob still uses
what alice makes, from a root he cannot write; the service going down leaves kernels alone.

alice may write namespace team-a; bob (group team-a-readers) may only read it; both may write `default`.
Every request goes through a real hub, proxy, service and single-user servers (conftest.py, hubkit.py), and
every file operation is made by bob's own Unix user.
"""
from __future__ import annotations

import asyncio
import json
import os
import pwd
import secrets
import time
from urllib.parse import quote

import pytest

import hubkit
from hubkit import SERVICE_UV_CACHE, http, python_as, wait_until

pytestmark = pytest.mark.slow

DENIED = ("EACCES", "EPERM")


def ready(client, name: str, timeout: float = 600) -> dict:
    record = client.wait(name, timeout=timeout)
    assert record["status"] == "ready", f"{name}: {record['status']}: {record['message']}"
    return record


def kernelspecs(hub, user: str) -> dict:
    status, data, _ = http("GET", hub.server_url(user) + "api/kernelspecs", hub.tokens[user])
    assert status == 200, (status, data)
    return data["kernelspecs"]


def run_code(hub, user: str, kernel: str, code: str) -> str:
    return asyncio.run(hub.client(user).run_code(kernel, code, timeout=120))


@pytest.fixture(scope="module")
def envs(hub, local_index):
    """alice's `shared` in team-a and bob's own `bobs` in default, each made through its owner's server.

    Both install envmgr-demo-pkg==1.0 from the tests' index, so uv links the same cached files into both
    (the hard link of the issue's first attack)."""
    alice, bob = hub.client("alice", "team-a"), hub.client("bob", "default")
    spec = {"packages": "envmgr-demo-pkg==1.0\n", "index_urls": [local_index.url]}
    alice.create({"name": "shared", **spec})
    bob.create({"name": "bobs", **spec})
    return {"shared": ready(alice, "shared"), "bobs": ready(bob, "bobs")}


def serving(record: dict) -> str:
    """The serving revision's prefix, where kernels run (the record's `prefix` is `current`, for scripts)."""
    path = os.path.join(os.path.dirname(record["prefix"]), "rev-%04d" % record["ready_revision"])
    assert os.path.isdir(path), path
    return path


def site_packages(prefix: str) -> str:
    lib = os.path.join(prefix, "lib")
    return os.path.join(lib, next(d for d in os.listdir(lib) if d.startswith("python")), "site-packages")


# ------------------------------------------------------------------------------------------- REST

def test_bobs_writes_in_team_a_are_403_through_his_server_and_at_the_service(hub, envs):
    before = hub.service_client("alice", "team-a").get("shared")
    clients = {
        "his server": hub.client("bob", "team-a"),
        "the service, direct": hub.service_client("bob", "team-a"),
        "the service, through the proxy": hub.service_client("bob", "team-a", direct=False),
    }
    for where, client in clients.items():
        assert client.get("shared")["name"] == "shared", where  # he may read
        assert [e["name"] for e in client.list()] == ["shared"], where
        attempts = {
            "PATCH": lambda: client.update("shared", {"packages": "envmgr-demo-pkg==2.0\n"}),
            "DELETE": lambda: client.delete("shared"),
            "create": lambda: client.create({"name": "bob-was-here", "packages": ""}),
            "create with the namespace in the body": lambda: hubkit.EnvmgrClient(client.url, client.token).create(
                {"name": "bob-was-here", "packages": "", "namespace": "team-a"}),
            "rebuild": lambda: client.action("shared", "rebuild"),
        }
        for what, attempt in attempts.items():
            with pytest.raises(hubkit.ClientError) as denied:
                attempt()
            assert denied.value.status == 403, f"bob's {what} in team-a through {where}: {denied.value.status} {denied.value.message}"
            assert "team-a" in denied.value.message, denied.value.message
    after = hub.service_client("alice", "team-a").get("shared")
    assert (after["revision"], after["status"], after["packages"]) == (before["revision"], "ready", before["packages"])
    assert not os.path.exists(os.path.join(hub.root, "envs", "team-a", "bob-was-here"))


def test_owner_and_requester_are_hub_user_names(hub, envs):
    assert envs["shared"]["owner"] == "alice" and envs["bobs"]["owner"] == "bob"
    request = hub.client("bob", "team-a").submit_request({"name": "bobs-wish", "packages": ""})
    assert request["requester"] == "bob" and request["status"] == "requested", request
    mine = hub.client("alice", "team-a").requests()
    assert any(r["id"] == request["id"] and r["requester"] == "bob" for r in mine), mine
    hub.client("bob", "team-a").request_action(request["id"], "withdraw")


def test_a_bad_token_is_a_json_401_or_403_never_a_redirect(hub):
    for base in (hub.service_direct, hub.service_url, hub.server_url("bob")):
        for token in ("", "not-a-token-" + secrets.token_hex(8)):
            for method in ("GET", "POST"):
                status, data, headers = http(method, base + "envmgr/api/environments", token,
                                             body={"name": "x", "packages": ""} if method == "POST" else None)
                assert status in (401, 403), (base, token, method, status, data)
                assert headers.get("Content-Type", "").startswith("application/json"), (base, status, headers.get("Content-Type"))
                assert "Location" not in headers, headers.get("Location")
    # A server's own token that lacks access to the service is refused as well: a token of bob's without scopes.
    scoped = hub.new_token("bob", scopes=["read:users:name!user=bob"])
    for method in ("GET", "POST"):
        status, data, _ = http(method, hub.service_direct + "envmgr/api/environments", scoped,
                               body={"name": "x", "packages": ""} if method == "POST" else None)
        assert status == 403 and f"access:services!service={hubkit.SERVICE}" in data["message"], (method, status, data)


def server_token(user: str) -> tuple:
    """(pid, the hub API token) of the user's single-user server, read as root from its environment."""
    uid = pwd.getpwnam(user).pw_uid
    for pid in hubkit.processes_of(uid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"jupyterhub-singleuser" not in f.read():
                    continue
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
        except OSError:
            continue
        return pid, env[b"JUPYTERHUB_API_TOKEN"].decode()
    raise AssertionError(f"no single-user server of {user} runs")


def test_each_server_token_carries_access_to_the_service_and_no_one_elses(hub):
    # Both settings of the fixture at work: the users hold access:services!service=envmgr (their role) and the
    # server role asks for it, so the hub did not drop the scope when it spawned the server (it would, silently,
    # with either one alone).
    for user in hubkit.USERS:
        pid, token = server_token(user)
        status, model, _ = http("GET", f"{hub.url}/hub/api/user", token)
        assert status == 200 and model["name"] == user, (status, model)
        assert f"access:services!service={hubkit.SERVICE}" in model["scopes"], model["scopes"]
        status, data, _ = http("GET", hub.service_direct + "envmgr/api/environments?namespace=team-a", token)
        assert status == 200, (user, status, data)
    # What makes forwarding with that token safe: bob cannot read alice's (so he cannot act as her at the service).
    pid, _ = server_token("alice")
    tried = python_as("bob", "import errno, json, sys\n"
                             "out = {}\n"
                             "for path in sys.argv[1:]:\n"
                             "    try:\n        open(path, 'rb').read(); out[path] = 'OK'\n"
                             "    except OSError as e:\n        out[path] = errno.errorcode[e.errno]\n"
                             "print(json.dumps(out))",
                      f"/proc/{pid}/environ", os.path.join(pwd.getpwnam("alice").pw_dir, ".local"))
    assert set(tried.values()) <= set(DENIED), tried


# ------------------------------------------------------------------------------------------- storage

WALK = r"""
import json, os, sys
tops, secret = sys.argv[1:-1], sys.argv[-1].encode()
writable, leaked, seen = [], [], 0
for top in tops:
    for dirpath, dirnames, filenames in os.walk(top):
        for path in [dirpath] + [os.path.join(dirpath, f) for f in filenames]:
            seen += 1
            if os.path.islink(path):
                continue
            if os.access(path, os.W_OK):
                writable.append(path)
            if path != dirpath:
                try:
                    with open(path, "rb") as f:
                        if secret in f.read(4 << 20):
                            leaked.append(path)
                except OSError:
                    pass
print(json.dumps({"seen": seen, "writable": writable, "leaked": leaked}))
"""

ATTACKS = r"""
import errno, json, os, sys
t = json.loads(sys.argv[1])
trojan = "\nopen(%r, 'w').write('bob')\n" % t["marker"]
out = {}
def attempt(what, fn):
    try:
        fn()
        out[what] = "OK"
    except OSError as e:
        out[what] = errno.errorcode.get(e.errno, str(e.errno))
def append(path, text=trojan):
    with open(path, "a") as f:
        f.write(text)
def replace(path):
    mine = os.path.join(os.environ["HOME"], "trojan.py")
    with open(mine, "w") as f:
        f.write(trojan)
    os.rename(mine, path)
def link_in(directory):
    mine = os.path.join(os.environ["HOME"], "linked.py")
    with open(mine, "w") as f:
        f.write(trojan)
    os.link(mine, os.path.join(directory, "bob.py"))
def link_out_and_write(path):
    mine = os.path.join(os.environ["HOME"], "their-file.py")
    if os.path.exists(mine):
        os.unlink(mine)
    os.link(path, mine)  # protected_hardlinks refuses it; were it allowed, the write below is what matters
    append(mine)
attempt("append to the linked file through bob's own environment", lambda: append(t["bob_file"]))
attempt("append to the linked file through alice's environment", lambda: append(t["alice_file"]))
for i, path in enumerate(t["cache_files"]):
    attempt(f"append to the uv cache's copy {i}", lambda: append(path))
for i, path in enumerate(t["magics"]):
    attempt(f"append to the magics' shared copy {i}", lambda: append(path))
    attempt(f"replace the magics' shared copy {i}", lambda: replace(path))
attempt("write alice's kernel.json", lambda: append(t["kernel_json"], " "))
attempt("replace alice's kernel.json", lambda: replace(t["kernel_json"]))
attempt("forge an environment in team-a", lambda: os.mkdir(os.path.join(t["team_a"], "forged")))
attempt("forge a .pth in alice's site-packages", lambda: append(os.path.join(t["alice_site"], "zz-bob.pth"), "import os; " + trojan.strip() + "\n"))
attempt("rename alice's environment away", lambda: os.rename(t["alice_env"], t["alice_env"] + "-gone"))
attempt("rename alice's environment into the trash", lambda: os.rename(t["alice_env"], os.path.join(t["trash"], "gone")))
attempt("swap alice's current link", lambda: os.symlink(os.environ["HOME"], os.path.join(t["alice_env"], "current-bob")))
attempt("hard-link bob's file into alice's site-packages", lambda: link_in(t["alice_site"]))
attempt("hard-link alice's file into bob's home and write it", lambda: link_out_and_write(t["alice_file"]))
attempt("chmod alice's file", lambda: os.chmod(t["alice_file"], 0o666))
attempt("chmod alice's revision", lambda: os.chmod(t["alice_prefix"], 0o777))
attempt("unlink alice's file", lambda: os.unlink(t["alice_file"]))
attempt("truncate alice's env.json", lambda: os.truncate(t["record"], 0))
print(json.dumps(out))
"""


def test_bobs_trojans_get_eacces_and_alices_kernel_runs_none_of_them(hub, envs):
    shared, bobs = envs["shared"], envs["bobs"]
    alice_site, bob_site = site_packages(serving(shared)), site_packages(serving(bobs))
    alice_file = os.path.join(alice_site, "envmgr_demo_pkg", "__init__.py")
    bob_file = os.path.join(bob_site, "envmgr_demo_pkg", "__init__.py")
    svc = pwd.getpwnam(hubkit.SERVICE_USER)
    st = os.stat(alice_file)
    # The setting of the first attack: one file in both environments (and uv's cache), owned by the service, 0644.
    assert os.path.samestat(st, os.stat(bob_file)), "uv no longer links the same file into both environments"
    assert st.st_uid == svc.pw_uid and not st.st_mode & 0o022, (st.st_uid, oct(st.st_mode))
    cache_files = [os.path.join(d, f) for d, _, fs in os.walk(SERVICE_UV_CACHE) for f in fs
                   if os.path.samestat(os.stat(os.path.join(d, f)), st)]
    lib = os.path.join(hub.root, "jupyter", "lib")
    magics = [os.path.join(d, f) for d, _, fs in os.walk(lib) for f in fs if f.endswith(".py")]
    assert magics, f"no shared copy of the magics under {lib}"
    marker = f"/tmp/envmgr-hub-pwned-{secrets.token_hex(4)}"
    targets = {
        "marker": marker, "alice_file": alice_file, "bob_file": bob_file, "cache_files": cache_files[:2],
        "magics": magics[:3], "kernel_json": os.path.join(hub.root, "jupyter", "kernels", shared["kernel_name"], "kernel.json"),
        "team_a": os.path.join(hub.root, "envs", "team-a"), "alice_env": os.path.join(hub.root, "envs", "team-a", "shared"),
        "alice_site": alice_site, "alice_prefix": serving(shared), "trash": os.path.join(hub.root, "trash"),
        "record": os.path.join(hub.root, "envs", "team-a", "shared", "env.json"),
    }
    assert os.path.exists(targets["kernel_json"]) and os.path.exists(targets["record"])
    results = python_as("bob", ATTACKS, json.dumps(targets))
    allowed = {what: result for what, result in results.items() if result not in DENIED}
    assert not allowed, f"bob could: {allowed}"
    assert len(results) >= 17, results
    # Nothing on the root or in the service's cache is writable by bob, file or directory.
    walked = python_as("bob", WALK, hub.root, SERVICE_UV_CACHE, "no-secret-here")
    # Except uv's own lock files in its cache, 0666 on purpose (so that every user of a cache may lock it):
    # empty, never read or run, and linked into no environment.
    uv_locks = [p for p in walked["writable"] if p.startswith(SERVICE_UV_CACHE + os.sep) and p.endswith(".lock")]
    assert all(os.stat(p).st_nlink == 1 and os.stat(p).st_size == 0 for p in uv_locks), uv_locks
    writable = sorted(set(walked["writable"]) - set(uv_locks))
    assert walked["seen"] > 500 and not writable, writable[:20]
    # alice's kernel: starts (the magics load), imports the linked module; nothing of bob's ran.
    out = run_code(hub, "alice", shared["kernel_name"], "import envmgr_demo_pkg, os; print(envmgr_demo_pkg.__version__, os.getuid())")
    assert out.split() == ["1.0", str(pwd.getpwnam("alice").pw_uid)], out
    assert not os.path.exists(marker)
    with open(alice_file) as f:
        assert "bob" not in f.read()
    assert hub.client("alice", "team-a").get("shared")["status"] == "ready"
    assert [e["name"] for e in hub.client("alice", "team-a").list()] == ["shared"]


def test_index_credentials_are_readable_by_the_service_alone(hub, local_index):
    secret = "s3cr3t" + secrets.token_hex(6)
    url = local_index.url.replace("http://", f"http://envmgr:{secret}@")
    alice = hub.client("alice", "team-a")
    alice.create({"name": "with-creds", "packages": "envmgr-extra-pkg\n", "index_urls": [url]})
    record = ready(alice, "with-creds")
    assert secret not in json.dumps(record)
    as_root = [os.path.join(d, f) for d, _, fs in os.walk(hub.root) for f in fs
               if not os.path.islink(os.path.join(d, f)) and secret.encode() in open(os.path.join(d, f), "rb").read()]
    assert as_root, "the credentials are stored nowhere on the root: the build could not have used them"
    for user in ("bob", "alice"):
        walked = python_as(user, WALK, hub.root, SERVICE_UV_CACHE, secret)
        assert walked["seen"] > 100 and not walked["leaked"], (user, walked["leaked"])
    alice.delete("with-creds")


def test_bobs_own_config_grants_him_nothing(hub, envs):
    bob = pwd.getpwnam("bob")
    config_dir = os.path.join(bob.pw_dir, ".jupyter")
    config = os.path.join(config_dir, "jupyter_server_config.py")
    hubkit.as_user("bob", ["mkdir", "-p", config_dir])
    with open(config, "w") as f:
        f.write(
            "c.ServerApp.authorizer_class = 'jupyter_server.auth.authorizer.AllowAllAuthorizer'\n"
            "c.NamespaceAuthorizer.namespace_access = {'team-a': {'read': ['*'], 'write': ['bob']}}\n"
            "c.EnvService.tokens = {'bobs-token': 'alice'}\n"  # a writer's setting: his server has no use for it
        )
    os.chown(config, bob.pw_uid, bob.pw_gid)
    try:
        hub.stop_server("bob")
        hub.spawn("bob")
        # His server did load it: it now believes anyone may do anything.
        status, me, _ = http("GET", hub.server_url("bob") + "api/me?permissions=" +
                             quote(json.dumps({"envmgr:team-a": ["write"], "kernels": ["write"]})), hub.tokens["bob"])
        assert status == 200 and me["permissions"].get("envmgr:team-a") == ["write"], me
        client = hub.client("bob", "team-a")
        for what, attempt in {
            "create": lambda: client.create({"name": "bob-was-here", "packages": ""}),
            "PATCH": lambda: client.update("shared", {"description": "bob was here"}),
            "DELETE": lambda: client.delete("shared"),
        }.items():
            with pytest.raises(hubkit.ClientError) as denied:
                attempt()
            assert denied.value.status == 403, f"{what}: {denied.value.status} {denied.value.message}"
            assert "team-a" in denied.value.message, denied.value.message  # the service's own rules said no
        # The token he wrote into that config means nothing to the service, as alice or at all (were his server
        # told to forward with it, c.EnvManagerApp.service_token, it would send just this).
        for method, body in (("GET", None), ("POST", {"name": "bob-was-here", "packages": ""})):
            status, data, headers = http(method, hub.service_direct + "envmgr/api/environments?namespace=team-a",
                                         "bobs-token", body)
            assert status in (401, 403) and "Location" not in headers, (method, status, data)
        record = hub.service_client("alice", "team-a").get("shared")
        assert record["status"] == "ready" and record["owner"] == "alice" and record.get("description", "") != "bob was here"
        assert not os.path.exists(os.path.join(hub.root, "envs", "team-a", "bob-was-here"))
    finally:
        os.unlink(config)
        hub.stop_server("bob")
        hub.spawn("bob")


# ------------------------------------------------------------------------------------------- use without writing

def tree(path: str) -> dict:
    found = {}
    for d, dirnames, fs in os.walk(path):
        for name in [d] + [os.path.join(d, f) for f in fs]:
            st = os.lstat(name)
            found[name] = (st.st_mtime_ns, st.st_size, st.st_mode, st.st_uid)
    return found


def owned_by(path: str, uid: int) -> list:
    return [os.path.join(d, f) for d, dirs, fs in os.walk(path) for f in fs + dirs
            if os.lstat(os.path.join(d, f)).st_uid == uid]


def test_bobs_kernel_on_the_read_only_root_imports_and_writes_nothing(hub, envs):
    shared = envs["shared"]
    prefix_dir = serving(shared)
    before = tree(prefix_dir), tree(os.path.join(hub.root, "jupyter"))
    bob = pwd.getpwnam("bob")
    assert shared["kernel_name"] in kernelspecs(hub, "bob")
    out = run_code(hub, "bob", shared["kernel_name"],
                   "import envmgr_demo_pkg, os, sys, json\n"
                   "try:\n    open(os.path.join(sys.prefix, 'bob.txt'), 'w')\n    w = 'wrote'\n"
                   "except OSError as e:\n    w = type(e).__name__\n"
                   "print(json.dumps([envmgr_demo_pkg.__version__, sys.prefix, os.getuid(), w, sys.dont_write_bytecode]))")
    version, prefix, uid, wrote, _ = json.loads(out.strip().splitlines()[-1])
    assert (version, prefix, uid, wrote) == ("1.0", prefix_dir, bob.pw_uid, "PermissionError")
    after = tree(prefix_dir), tree(os.path.join(hub.root, "jupyter"))
    changed = {p for p in set(before[0]) | set(after[0]) if before[0].get(p) != after[0].get(p)}
    changed |= {p for p in set(before[1]) | set(after[1]) if before[1].get(p) != after[1].get(p)}
    # A kernel's in-use mark may be touched by its lock (inuse.py); nothing else may change.
    assert not {p for p in changed if not p.endswith(".envmgr-in-use")}, sorted(changed)[:20]
    assert owned_by(hub.root, bob.pw_uid) == []


def test_alices_new_environment_is_in_bobs_picker_within_2_s(hub, envs):
    name = "fresh-" + secrets.token_hex(3)
    alice = hub.client("alice", "team-a")
    alice.create({"name": name, "packages": ""})
    kernel = f"envmgr-team-a.{name}"
    service = hub.service_client("alice", "team-a")
    wait_until(lambda: service.get(name)["status"] not in ("pending", "warming"), 600, f"{name} built", interval=0.05)
    ready_at = time.monotonic()
    assert service.get(name)["status"] == "ready"
    wait_until(lambda: kernel in kernelspecs(hub, "bob"), 10, f"{kernel} in bob's picker", interval=0.05)
    seen = time.monotonic() - ready_at
    assert seen <= 2.0, f"{kernel} reached bob's picker {seen:.2f} s after it was ready"
    print(f"{kernel} in bob's picker {seen:.2f} s after it was ready")  # shown with -s
    # It starts for him, on the root he cannot write.
    assert run_code(hub, "bob", kernel, "import sys; print(sys.prefix)").strip().startswith(hub.root)
    alice.delete(name)
    wait_until(lambda: kernel not in kernelspecs(hub, "bob"), 10, f"{kernel} gone from bob's picker", interval=0.1)


def test_a_revision_bobs_kernel_runs_on_is_kept_by_gc(hub, envs, local_index):
    alice = hub.client("alice", "team-a")
    name = "pinned-" + secrets.token_hex(3)
    alice.create({"name": name, "packages": "envmgr-demo-pkg==1.0\n", "index_urls": [local_index.url]})
    first = ready(alice, name)
    kernel, first_prefix = first["kernel_name"], serving(first)

    async def scenario():
        async with hub.client("bob").kernel(kernel, timeout=120) as k:
            assert (await k.execute("import envmgr_demo_pkg; print(envmgr_demo_pkg.__version__)")).strip() == "1.0"
            for version in ("2.0", "1.0", "2.0", "1.0"):  # more revisions than keep_revisions (3) keeps
                alice.update(name, {"packages": f"envmgr-demo-pkg=={version}\n"})
                ready(alice, name)
            deadline = time.monotonic() + 30  # pruning runs after a switch, off the build's path
            while time.monotonic() < deadline and len(alice.revisions(name)) > 4:
                await asyncio.sleep(0.5)
            kept = os.path.isdir(first_prefix)
            again = await k.execute("import importlib, envmgr_demo_pkg, sys; importlib.reload(envmgr_demo_pkg); print(envmgr_demo_pkg.__version__, sys.prefix)")
            return kept, again

    kept, again = asyncio.run(scenario())
    assert kept, f"{first_prefix} was pruned while bob's kernel ran on it"
    assert again.split() == ["1.0", first_prefix]
    revisions = [r["revision"] for r in alice.revisions(name)]
    assert 1 in revisions and 2 not in revisions, revisions  # GC ran (revision 2 went) and kept bob's revision 1
    alice.delete(name)


# ------------------------------------------------------------------------------------------- faults

def test_with_the_service_down_kernels_run_and_routes_say_503_naming_service_url(hub, envs):
    shared = envs["shared"]

    async def scenario():
        async with hub.client("bob").kernel(shared["kernel_name"], timeout=120) as running:
            assert (await running.execute("x = 41; print(x + 1)")).strip() == "42"
            hub.hold_service()
            try:
                assert not hub.service_pids()
                assert (await running.execute("print(x + 1)")).strip() == "42"  # untouched
                # A new kernel starts from the root alone.
                fresh = await hub.client("bob").run_code(shared["kernel_name"], "import envmgr_demo_pkg; print(envmgr_demo_pkg.__version__)")
                assert fresh.strip() == "1.0"
                assert shared["kernel_name"] in kernelspecs(hub, "bob")
                answers = {}
                for method, path, body in (("GET", "environments?namespace=team-a", None),
                                           ("POST", "environments?namespace=default", {"name": "while-down", "packages": ""})):
                    status, data, _ = http(method, hub.server_url("bob") + "envmgr/api/" + path, hub.tokens["bob"], body)
                    answers[method] = (status, data)
                info = hub.client("bob").info()
            finally:
                hub.release_service()
            assert (await running.execute("print(x + 2)")).strip() == "43"
            return answers, info

    answers, info = asyncio.run(scenario())
    for method, (status, data) in answers.items():
        assert status == 503, (method, status, data)
        assert hub.service_url in data["message"], (method, data)
    assert (info["service"]["url"], info["service"]["reachable"]) == (hub.service_url, False), info["service"]
    assert hub.service_url in info["service"]["message"], info["service"]
    # Back: the routes answer again, and bob's server follows the service's events again.
    wait_until(lambda: hub.client("bob", "team-a").list(), 60, "bob's list after the restart")
    assert hub.client("bob").info()["service"]["reachable"] is True
    name = "after-" + secrets.token_hex(3)
    alice = hub.client("alice", "team-a")
    alice.create({"name": name, "packages": ""})
    ready(alice, name)
    wait_until(lambda: f"envmgr-team-a.{name}" in kernelspecs(hub, "bob"), 5, "a new environment in bob's picker after the restart")
    alice.delete(name)
