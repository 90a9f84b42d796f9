"""The state machine of an environment's revisions, pure: no I/O, no clock, no server.

Each transition takes a record (the dict of `env.json`) and returns a new one, or raises a 409 that
says why the change is refused. `records.py` applies them under the record lock; everything else only
reads records. The record's top-level `status`, `message`, `progress` and `revision` follow the newest
revision; `ready_revision` names the one that serves kernels.
"""
from __future__ import annotations

import copy
import enum
from typing import Optional

from .errors import EnvmgrError, conflict


class Status(str, enum.Enum):
    PENDING = "pending"      # accepted, waiting for a build slot (held by a server's lease)
    WARMING = "warming"      # a builder runs it
    READY = "ready"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


ACTIVE = frozenset({Status.PENDING, Status.WARMING})
ENDED = frozenset({Status.READY, Status.FAILED, Status.CANCELLED})

#: Which status a revision may move to from each status.
TRANSITIONS = {
    Status.PENDING: frozenset({Status.PENDING, Status.WARMING, Status.FAILED, Status.CANCELLED}),
    Status.WARMING: frozenset({Status.WARMING, Status.READY, Status.FAILED, Status.CANCELLED}),
    Status.READY: frozenset(),
    Status.FAILED: frozenset(),
    Status.CANCELLED: frozenset(),
}


def is_active(status) -> bool:
    return status in (Status.PENDING.value, Status.WARMING.value)


def check(current, target) -> None:
    """Raise 409 unless a revision may go from `current` to `target`."""
    if Status(target) not in TRANSITIONS[Status(current)]:
        raise conflict("invalid_transition", f"a {current} revision cannot become {target}")


def revision_of(record: dict, number: int) -> dict:
    for rev in record.get("revisions", []):
        if rev["revision"] == number:
            return rev
    raise EnvmgrError(404, "not_found", f"{record.get('name')!r} has no revision {number}")


def _move(record: dict, number: int, status: Status, now: str, **fields) -> dict:
    """A copy of `record` with revision `number` in `status`; the top level follows when it is the newest."""
    record = copy.deepcopy(record)
    rev = revision_of(record, number)
    check(rev["status"], status)
    rev["status"] = status.value
    for key in ("handle", "lease", "started", "finished", "message"):
        if key in fields:
            rev[key] = fields[key]
    if record.get("revision") == number:
        record["status"] = status.value
        record["updated"] = now
        for key in ("message", "progress"):
            if key in fields:
                record[key] = fields[key]
    return record


def refuse_if_active(record: dict) -> None:
    if is_active(record.get("status")):
        raise conflict(
            "build_running",
            f"revision {record['revision']} of {record['name']!r} is still {record['status']}; "
            "wait for it or cancel it first (POST .../actions {\"action\": \"cancel\"})",
        )


def new_record(spec: dict, inputs: dict, owner: str, prefix: str, lease: dict, now: str) -> dict:
    """Revision 1 of a new environment (`inputs`: what its build depends on), pending under `lease`."""
    return {
        **spec,
        "status": Status.PENDING.value, "message": "queued", "progress": 0.0, "revision": 1, "ready_revision": None,
        "created": now, "updated": now, "owner": owner, "kernel_name": None, "prefix": prefix,
        "revisions": [_revision(1, inputs, lease, now)],
    }


def start_revision(record: dict, spec: dict, inputs: dict, lease: dict, now: str) -> dict:
    """A new pending revision N+1 with these inputs; refused while another one is active."""
    refuse_if_active(record)
    record = copy.deepcopy(record)
    number = max([r["revision"] for r in record.get("revisions", [])] + [0]) + 1
    record.update(spec, status=Status.PENDING.value, message="queued", progress=0.0, revision=number, updated=now)
    record.setdefault("revisions", []).append(_revision(number, inputs, lease, now))
    return record


def claim(record: dict, number: int, lease: dict, now_seconds: float) -> dict:
    """Take (or renew) the lease on an active revision: refused while another server's lease is valid.

    The holder of a pending revision's lease is the only server that launches it; the holder of a
    warming one follows it and records its end.
    """
    rev = revision_of(record, number)
    if not is_active(rev["status"]):
        raise conflict("not_active", f"revision {number} of {record['name']!r} is {rev['status']}; its build is over")
    held = rev.get("lease") or {}
    if held.get("server") not in (None, lease["server"]) and held.get("expires", 0) > now_seconds:
        raise conflict("leased", f"revision {number} of {record['name']!r} is queued on server {held['server']}")
    record = copy.deepcopy(record)
    revision_of(record, number)["lease"] = dict(lease)
    return record


def lease_expired(rev: dict, now_seconds: float) -> bool:
    return (rev.get("lease") or {}).get("expires", 0) <= now_seconds


def started(record: dict, number: int, server: str, handle: dict, now: str) -> dict:
    """The build runs: only the holder of the lease may say so."""
    rev = revision_of(record, number)
    holder = (rev.get("lease") or {}).get("server")
    if rev["status"] == Status.PENDING.value and holder not in (None, server):
        raise conflict("leased", f"revision {number} of {record['name']!r} was claimed by server {holder}")
    return _move(record, number, Status.WARMING, now, handle=handle, started=now, message="starting", progress=0.0)


def progressed(record: dict, number: int, progress: float, message: str, now: str) -> dict:
    rev = revision_of(record, number)
    if rev["status"] != Status.WARMING.value:
        return record  # a late tick after the end: nothing to do
    return _move(record, number, Status.WARMING, now, progress=progress, message=message)


def finished(record: dict, number: int, status, message: str, kernel_name: Optional[str], now: str) -> dict:
    """The build ended: ready moves `ready_revision`; failed and cancelled leave the serving one alone."""
    status = Status(status)
    if status not in ENDED:
        raise conflict("invalid_transition", f"a build cannot finish as {status}")
    record = _move(record, number, status, now, message=message, finished=now)
    if status is Status.READY and record.get("revision") == number:
        record.update(ready_revision=number, progress=1.0, kernel_name=kernel_name)
    return record


def rolled_back(record: dict, number: int, now: str) -> dict:
    """Serve an earlier ready revision again, with its inputs as the record's spec."""
    refuse_if_active(record)
    rev = revision_of(record, number)
    if rev["status"] != Status.READY.value:
        raise conflict("not_ready", f"revision {number} of {record['name']!r} is {rev['status']}; only a ready revision can serve")
    record = copy.deepcopy(record)
    record.update(rev["inputs"], status=Status.READY.value, message=f"rolled back to revision {number}", progress=1.0,
                  revision=number, ready_revision=number, updated=now)
    return record


def pruned(record: dict, numbers) -> dict:
    """Forget revisions whose files went to the trash; never the serving or an active one."""
    numbers = set(numbers)
    keep = {record.get("ready_revision"), record.get("revision")}
    if numbers & keep:
        raise conflict("protected", f"revisions {sorted(numbers & keep)} of {record['name']!r} serve or build; they stay")
    record = copy.deepcopy(record)
    record["revisions"] = [r for r in record.get("revisions", []) if r["revision"] not in numbers]
    return record


def metadata_changed(record: dict, changes: dict, now: str) -> dict:
    record = copy.deepcopy(record)
    record.update(changes, updated=now)
    return record


def _revision(number: int, inputs: dict, lease: dict, now: str) -> dict:
    return {"revision": number, "status": Status.PENDING.value, "message": "", "created": now, "finished": None,
            "inputs": dict(inputs), "lease": dict(lease)}
