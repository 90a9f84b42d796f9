"""Issue 24 "GPU": on the local backend a gpu count is accepted (a spec moves between backends) and the answer
says that it does nothing there; on kubernetes it is a build's GPU request and needs no note."""
from jupyter_envmgr.manager import notes


def test_a_gpu_on_the_local_backend_is_noted_not_refused():
    (note,) = notes({"gpu": 2}, "local")
    assert note.startswith("gpu 2 does nothing on this server's local backend") and "kubernetes" in note
    assert notes({"gpu": 0}, "local") == [] and notes({}, "local") == []
    assert notes({"gpu": 2}, "kubernetes") == []


async def test_the_record_says_so_in_every_answer(api):
    created = await api.ok("POST", "environments", {"name": "gpu-local", "packages": "", "gpu": 1}, expect=(202,))
    assert created["gpu"] == 1 and created["notes"] and "does nothing" in created["notes"][0], created
    assert (await api.get("gpu-local"))["notes"] == created["notes"]
    listed = {e["name"]: e for e in (await api.ok("GET", "environments"))["environments"]}
    assert listed["gpu-local"]["notes"] == created["notes"]
    record = await api.wait("gpu-local")
    assert record["status"] == "ready" and record["notes"] == created["notes"], record
    # A whole record echoed back is a valid PATCH (notes is read-only), and gpu 0 drops the note.
    echo = {k: v for k, v in record.items() if k not in ("cluster",)}
    status, data = await api.call("PATCH", "environments/gpu-local", dict(echo, gpu=0), dry_run=1)
    assert status == 200 and data["notes"] == [], data
    plain = await api.ok("POST", "environments", {"name": "no-gpu", "packages": ""}, expect=(200,), dry_run=1)
    assert plain["notes"] == []
