"""The lifecycle's state machine alone: every transition and every refused one, in milliseconds."""
import itertools

import pytest

from jupyter_envmgr import lifecycle
from jupyter_envmgr.errors import EnvmgrError
from jupyter_envmgr.lifecycle import Status

SPEC = {"name": "env", "manager": "pip", "python": "3.11", "packages": "six\n"}
INPUTS = {"manager": "pip", "python": "3.11", "packages": "six\n"}
A = {"server": "a", "expires": 100.0}
B = {"server": "b", "expires": 100.0}


def fresh():
    return lifecycle.new_record(SPEC, INPUTS, "alice", "/root/envs/default/env/current", A, "t0")


def refused(fn, *args, reason=None):
    with pytest.raises(EnvmgrError) as e:
        fn(*args)
    assert e.value.status == 409
    if reason:
        assert e.value.reason == reason
    return e.value


def test_table_covers_every_status_and_ended_ones_are_final():
    assert set(lifecycle.TRANSITIONS) == set(Status)
    for status in lifecycle.ENDED:
        assert lifecycle.TRANSITIONS[status] == frozenset()


@pytest.mark.parametrize("current,target", list(itertools.product(Status, Status)))
def test_check_follows_the_table(current, target):
    if target in lifecycle.TRANSITIONS[current]:
        lifecycle.check(current.value, target.value)
    else:
        refused(lifecycle.check, current.value, target.value, reason="invalid_transition")


def test_new_record_is_pending_under_the_lease():
    r = fresh()
    assert (r["status"], r["revision"], r["ready_revision"], r["kernel_name"]) == ("pending", 1, None, None)
    assert r["revisions"][0]["lease"] == A and r["revisions"][0]["inputs"] == INPUTS


def test_build_to_ready_moves_ready_revision_and_the_input_is_not_mutated():
    r0 = fresh()
    r1 = lifecycle.started(r0, 1, "a", None, "t1")
    assert r0["status"] == "pending"  # pure: a new dict each time
    r2 = lifecycle.started(r1, 1, "a", {"pid": 5}, "t1")
    assert r2["status"] == "warming" and r2["revisions"][0]["handle"] == {"pid": 5}
    r3 = lifecycle.progressed(r2, 1, 0.5, "installing", "t2")
    assert (r3["progress"], r3["message"]) == (0.5, "installing")
    r4 = lifecycle.finished(r3, 1, "ready", "ready", "envmgr-env", "t3")
    assert (r4["status"], r4["ready_revision"], r4["kernel_name"], r4["progress"]) == ("ready", 1, "envmgr-env", 1.0)
    assert r4["revisions"][0]["finished"] == "t3"


def test_only_the_lease_holder_starts_a_pending_revision():
    refused(lifecycle.started, fresh(), 1, "b", None, "t1", reason="leased")


def test_claim_renews_own_lease_and_refuses_a_valid_foreign_one():
    r = fresh()
    renewed = lifecycle.claim(r, 1, dict(A, expires=200.0), 50.0)
    assert renewed["revisions"][0]["lease"]["expires"] == 200.0
    refused(lifecycle.claim, r, 1, B, 50.0, reason="leased")
    taken = lifecycle.claim(r, 1, B, 150.0)  # A's lease ran out at 100
    assert taken["revisions"][0]["lease"]["server"] == "b"
    assert lifecycle.lease_expired(r["revisions"][0], 150.0) and not lifecycle.lease_expired(r["revisions"][0], 50.0)


def test_claim_refused_once_the_build_ended():
    r = lifecycle.finished(lifecycle.started(fresh(), 1, "a", None, "t"), 1, "failed", "boom", None, "t")
    refused(lifecycle.claim, r, 1, A, 0.0, reason="not_active")


def test_failed_update_keeps_the_serving_revision():
    ready = lifecycle.finished(lifecycle.started(fresh(), 1, "a", None, "t"), 1, "ready", "ready", "envmgr-env", "t")
    r = lifecycle.start_revision(ready, dict(SPEC, packages="nope\n"), dict(INPUTS, packages="nope\n"), A, "t4")
    assert (r["revision"], r["status"], r["ready_revision"]) == (2, "pending", 1)
    failed = lifecycle.finished(lifecycle.started(r, 2, "a", None, "t"), 2, "failed", "no such package", None, "t5")
    assert (failed["status"], failed["ready_revision"], failed["kernel_name"]) == ("failed", 1, "envmgr-env")


def test_start_revision_refused_while_active():
    refused(lifecycle.start_revision, fresh(), SPEC, INPUTS, A, "t", reason="build_running")


def test_a_late_end_or_tick_cannot_rewrite_an_ended_revision():
    r = lifecycle.finished(lifecycle.started(fresh(), 1, "a", None, "t"), 1, "cancelled", "cancelled", None, "t")
    refused(lifecycle.finished, r, 1, "ready", "ready", "k", "t", reason="invalid_transition")
    refused(lifecycle.started, r, 1, "a", None, "t", reason="invalid_transition")
    assert lifecycle.progressed(r, 1, 0.9, "late", "t") == r
    refused(lifecycle.finished, r, 1, "warming", "x", None, "t", reason="invalid_transition")


def test_rollback_only_to_a_ready_revision_and_not_while_building():
    ready = lifecycle.finished(lifecycle.started(fresh(), 1, "a", None, "t"), 1, "ready", "ready", "k", "t")
    r2 = lifecycle.start_revision(ready, dict(SPEC, packages="a\n"), dict(INPUTS, packages="a\n"), A, "t")
    refused(lifecycle.rolled_back, r2, 1, "t", reason="build_running")
    failed = lifecycle.finished(lifecycle.started(r2, 2, "a", None, "t"), 2, "failed", "x", None, "t")
    refused(lifecycle.rolled_back, failed, 2, "t", reason="not_ready")
    back = lifecycle.rolled_back(failed, 1, "t9")
    assert (back["revision"], back["ready_revision"], back["status"], back["packages"]) == (1, 1, "ready", "six\n")


def test_pruned_never_drops_the_serving_or_the_newest_revision():
    ready = lifecycle.finished(lifecycle.started(fresh(), 1, "a", None, "t"), 1, "ready", "ready", "k", "t")
    r2 = lifecycle.finished(lifecycle.started(lifecycle.start_revision(ready, SPEC, INPUTS, A, "t"), 2, "a", None, "t"),
                            2, "ready", "ready", "k", "t")
    refused(lifecycle.pruned, r2, [2], reason="protected")
    assert [r["revision"] for r in lifecycle.pruned(r2, [1])["revisions"]] == [2]


def test_unknown_revision_is_404():
    with pytest.raises(EnvmgrError) as e:
        lifecycle.started(fresh(), 7, "a", None, "t")
    assert e.value.status == 404
