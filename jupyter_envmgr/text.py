"""The text that `jupyter envmgr` and `%envmgr` show: one formatter for both.

Standard library only: kernels import this module from the root's copy of the magics.
"""
from __future__ import annotations

import sys

from .client import ACTIVE

def status_words(record: dict) -> str:
    """The status in the panel's words (labextension model.ts statusWords): an environment with a serving
    revision is "ready" whatever its latest revision does: "ready · update 3 failed", "ready · update 3 building"."""
    serving = record.get("ready_revision")
    shown = "ready" if serving is not None and record.get("kernel_name") else record.get("status", "")
    if shown != "ready" or record.get("status") == "ready" or record.get("revision") == serving:
        return shown
    what = "building" if record.get("status") in ACTIVE else record.get("status")
    return f"ready · update {record.get('revision')} {what}"


def serving_text(record: dict) -> str:
    return "—" if record.get("ready_revision") is None else str(record["ready_revision"])


TABLE_HEAD = ("NAME", "MANAGER", "PYTHON", "STATUS", "SERVING", "LATEST", "LABELS")


def table_rows(records: list) -> list:
    """The list as rows of text cells (TABLE_HEAD's columns), for the CLI's table and the magics' HTML."""
    rows = []
    for r in records:
        labels = ",".join(f"{k}={v}" for k, v in sorted((r.get("labels") or {}).items()))
        rows.append((r["name"], r.get("manager", ""), r.get("python", ""), status_words(r), serving_text(r),
                     str(r.get("revision", "")), labels))
    return rows


def table_text(records: list, empty: str = "") -> str:
    rows = [TABLE_HEAD] + table_rows(records)
    widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_HEAD))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    if not records and empty:
        lines.append(empty)
    return "\n".join(lines)


def one_line(text, limit: int = 300) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def record_text(record: dict) -> str:
    """One environment for a reader (`show`): what serves, what the latest revision does, the inputs."""
    r = record
    where = f" (namespace {r['namespace']})" if r.get("namespace") else ""
    lines = [(r["name"] + where, "")]
    status = status_words(r)
    message = one_line(r.get("message"))
    if message and message != r.get("status"):
        status += f": {message}"
    lines.append(("status", status))
    if r.get("ready_revision") is not None:
        lines.append(("serving", f"revision {r['ready_revision']}" + (f", kernel {r['kernel_name']}" if r.get("kernel_name") else "")))
    if r.get("revision") != r.get("ready_revision"):
        lines.append(("latest", f"revision {r.get('revision')} ({r.get('status')})"))
    lines.append(("manager", f"{r.get('manager')}, Python {r.get('python')}"))
    for label, key in (("description", "description"), ("owner", "owner"), ("cluster", "cluster")):
        if r.get(key):
            lines.append((label, str(r[key])))
    packages = [l for l in (r.get("packages") or "").splitlines() if l.strip()]
    lines += [("packages" if i == 0 else "", l) for i, l in enumerate(packages or ["(none)"])]
    for label, key in (("index URLs", "index_urls"), ("base packages", "base_packages")):
        values = r.get(key) or []
        lines += [(label if i == 0 else "", str(v)) for i, v in enumerate(values)]
    for label, key in (("labels", "labels"), ("annotations", "annotations"), ("env vars", "env_vars")):
        lines += [(label if i == 0 else "", f"{k}={v}") for i, (k, v) in enumerate(sorted((r.get(key) or {}).items()))]
    if r.get("gpu"):
        lines.append(("gpu", str(r["gpu"])))
    if r.get("init_script"):
        lines.append(("init script", f"{len(r['init_script'].splitlines())} lines (export --format spec shows it)"))
    lines.append(("created", f"{r.get('created', '')}, updated {r.get('updated', '')}"))
    width = max(len(k) for k, _ in lines[1:])
    return "\n".join([lines[0][0]] + [f"  {k.ljust(width)}  {v}".rstrip() for k, v in lines[1:]])


def change_line(p: dict) -> str:
    """One package of API.md's `changes`: `numpy 1.26.4 → 2.1.3 (major)`, `↓ numpy 2.1.3 → 1.26.4 (downgrade, major)`."""
    notes = []
    if p["change"] == "added":
        mark, versions, notes = "+", p["to"], ["added"]
    elif p["change"] == "removed":
        mark, versions, notes = "-", p["from"], ["removed"]
    else:
        mark, versions = ("↓" if p["change"] == "downgraded" else "↑"), f"{p['from']} → {p['to']}"
        if p["change"] == "downgraded":
            notes.append("DOWNGRADE")
    if p.get("major"):
        notes.append("major")
    return f"{mark} {p['name']} {versions}" + (f" ({', '.join(notes)})" if notes else "")


def changes_text(answer: dict) -> str:
    """A dry run's answer (PATCH, rebuild or pin with ?dry_run=1) as text: whether it builds, and API.md's
    `changes` against the serving lock: Python first, then the requested packages, then the dependencies."""
    name, serving = answer["name"], answer.get("ready_revision")
    serves = f"revision {serving}" if serving is not None else "no revision"
    if "changes" not in answer:
        return f"{name}: metadata only: no new revision, nothing to install; {serves} keeps serving"
    changes = answer["changes"] or {}
    python, packages = changes.get("python"), changes.get("packages") or []
    if not python and not packages:
        return (f"{name}: nothing would change: the inputs resolve to the Python and versions {serves} serves "
                f"(it would still build revision {answer.get('revision')})")
    if serving is not None:
        keeps, against = f"; revision {serving} keeps serving until it is ready", f"revision {serving}'s lock"
    else:
        keeps, against = "", "nothing installed"
    lines = [f"{name}: would build revision {answer.get('revision')}{keeps}. Resolved, not installed, against {against}:"]
    if python:
        lines.append(f"  Python {python['from']} → {python['to']}")
    for title, group in (("requested", [p for p in packages if p.get("requested")]),
                         ("dependencies", [p for p in packages if not p.get("requested")])):
        if group:
            lines.append(f"  {title}:")
            lines += [f"    {change_line(p)}" for p in group]
    down = sum(p["change"] == "downgraded" for p in packages)
    major = sum(bool(p.get("major")) for p in packages)
    counts = [t for t in (f"{down} downgrade{'s' * (down != 1)}" if down else "",
                          f"{major} major change{'s' * (major != 1)}" if major else "") if t]
    if counts:
        lines.append("  " + " and ".join(counts))
    return "\n".join(lines)


def progress_line(record: dict, width: int = 30) -> str:
    """`name  [#######.......]  40%  warming: resolved 14 packages` for terminals and notebooks."""
    progress = 1.0 if record["status"] == "ready" else float(record.get("progress") or 0)
    filled = int(progress * width)
    bar = "#" * filled + "." * (width - filled)
    return f"{record['name']}  [{bar}] {progress * 100:3.0f}%  {progress_status(record)}"


def progress_status(record: dict) -> str:
    """`warming: resolved 14 packages`; the message only when it says more than the status ("ready: ready")."""
    message = one_line(record.get("message"), 120)
    return record["status"] + (f": {message}" if message and message != record["status"] else "")


def outcome_line(record: dict) -> str:
    """How a waited-for build ended, once: `demo: ready, kernel envmgr-demo (revision 2)`; a failure says what
    still serves and where its log is."""
    name = record["name"]
    if record["status"] == "ready":
        return f"{name}: ready, kernel {record.get('kernel_name')} (revision {record.get('ready_revision')})"
    serving = record.get("ready_revision")
    still = f"; revision {serving} keeps serving" if serving is not None else ""
    return f"{name}: revision {record.get('revision')} {record['status']}: {one_line(record.get('message'))}{still}"


def stderr_is_tty() -> bool:
    return hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
