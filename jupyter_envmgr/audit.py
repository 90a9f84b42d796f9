"""Known vulnerabilities in a revision's exact lock, from an advisory database in the OSV format.

The database (`c.EnvManagerApp.advisory_db`) is a directory of OSV JSON files, an OSV zip export
(the `all.zip` of an ecosystem), or the URL of an OSV-compatible query service (`POST /v1/query`).
Matching follows the OSV schema: a version is affected when an `affected[]` entry for its package
lists it in `versions`, or one of its `ranges` (ECOSYSTEM: PEP 440 for PyPI; SEMVER: semver.org
precedence) contains it by the events introduced / fixed / last_affected / limit. The result of a
revision is kept beside its build log (`logs/rev-NNNN.audit.json`). Everything here blocks: callers
run it in a worker thread, after a build's switch, so no audit is on a build's critical path.
"""
from __future__ import annotations

import datetime
import functools
import hashlib
import json
import os
import re
import threading
import urllib.error
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Optional

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from .spec import redact_url
from .store import atomic_write

REQUEST_TIMEOUT = 15.0
# conda-forge names Python libraries as PyPI does, so conda packages are also looked up there.
ECOSYSTEMS = {"pip": ("PyPI",), "conda": ("conda", "PyPI")}


class DatabaseUnavailable(Exception):
    """The advisory database cannot be read or reached: the audit answers 503 with this message."""


# ---------------------------------------------------------------- versions


def _natural(text: str) -> tuple:
    """A last-resort order for versions no scheme parses: digits as numbers, the rest as text."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.findall(r"\d+|[a-zA-Z]+", text))


SEMVER = re.compile(r"v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?")


def _semver_key(text: str) -> tuple:
    """semver.org precedence: a release sorts after its pre-releases; numeric identifiers before others."""
    m = SEMVER.fullmatch(text.strip())
    if not m:
        return (1, _natural(text))
    major, minor, patch, pre = m.groups()
    pre_key = (1,) if pre is None else (0, tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".")))
    return (0, (int(major), int(minor), int(patch)), pre_key)


def compare(a: str, b: str, kind: str) -> int:
    """-1, 0 or 1: `a` against `b` in the range's scheme (SEMVER, else the ecosystem's PEP 440)."""
    if kind == "SEMVER":
        ka, kb = _semver_key(a), _semver_key(b)
    else:
        try:
            ka, kb = Version(a), Version(b)
        except InvalidVersion:
            ka, kb = _natural(a), _natural(b)
    return (ka > kb) - (ka < kb)


def in_range(version: str, rng: dict) -> bool:
    """Whether `version` is inside one OSV range, by its events (the schema's evaluation)."""
    kind = rng.get("type", "ECOSYSTEM")
    events = [e for e in rng.get("events", []) if isinstance(e, dict)]
    limits = [e["limit"] for e in events if "limit" in e]
    if limits and not any(e == "*" or compare(version, e, kind) < 0 for e in limits):
        return False

    def order(e):
        value = next(iter(e.values()))
        return (0, "") if value == "0" else (1, value)

    bounds = sorted((e for e in events if "limit" not in e), key=functools.cmp_to_key(
        lambda x, y: _event_cmp(order(x), order(y), kind)))
    affected = False
    for event in bounds:
        if "introduced" in event:
            if event["introduced"] == "0" or compare(version, event["introduced"], kind) >= 0:
                affected = True
        elif "fixed" in event:
            if compare(version, event["fixed"], kind) >= 0:
                affected = False
        elif "last_affected" in event:
            if compare(version, event["last_affected"], kind) > 0:
                affected = False
    return affected


def _event_cmp(a: tuple, b: tuple, kind: str) -> int:
    if a[0] != b[0]:
        return a[0] - b[0]
    return 0 if a[0] == 0 else compare(a[1], b[1], kind)


def findings(package: str, version: str, ecosystems: Iterable[str], record: dict) -> Optional[dict]:
    """The finding one OSV record makes about package==version, or None."""
    if record.get("withdrawn"):
        return None
    wanted = {e.lower() for e in ecosystems}
    hit, fixed = False, set()
    for affected in record.get("affected", []):
        pkg = affected.get("package") or {}
        eco = str(pkg.get("ecosystem", "")).split(":")[0].lower()
        if eco not in wanted or _name(eco, pkg.get("name", "")) != _name(eco, package):
            continue
        ranges = [r for r in affected.get("ranges", []) if r.get("type") in ("ECOSYSTEM", "SEMVER")]
        matched = [r for r in ranges if in_range(version, r)]
        listed = any(compare(version, v, "ECOSYSTEM") == 0 for v in affected.get("versions") or [] if isinstance(v, str))
        if not matched and not listed:
            continue
        hit = True
        for rng in matched or ranges:  # per range, the fix that closes the interval the version is in
            kind = rng.get("type", "ECOSYSTEM")
            above = [e["fixed"] for e in rng.get("events", []) if "fixed" in e and compare(e["fixed"], version, kind) > 0]
            if above:
                fixed.add(min(above, key=functools.cmp_to_key(lambda a, b: compare(a, b, kind))))
    if not hit:
        return None
    summary = record.get("summary") or (record.get("details") or "").strip().split("\n")[0][:300]
    return {"package": package, "version": version, "id": record.get("id", ""),
            "aliases": list(record.get("aliases") or []), "summary": summary,
            "fixed_in": sorted(fixed, key=functools.cmp_to_key(lambda a, b: compare(a, b, "ECOSYSTEM")))}


def _name(ecosystem: str, name: str) -> str:
    return canonicalize_name(name) if ecosystem in ("pypi", "conda") else name


# ---------------------------------------------------------------- locks


def lock_packages(text: str) -> list:
    """(name, version, manager) of every package an exact lock pins: pip freeze lines, or a conda
    explicit lock (URL lines, then `# pip name==version` lines)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        pip = re.fullmatch(r"(?:# pip )?([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)", line)
        if pip:
            out.append((pip[1], pip[2], "pip"))
            continue
        if line.startswith("#") or line.startswith("@") or "/" not in line:
            continue
        filename = line.split("#")[0].rstrip("/").rsplit("/", 1)[-1]
        stem = re.sub(r"\.(conda|tar\.bz2)$", "", filename)
        parts = stem.rsplit("-", 2)
        if stem != filename and len(parts) == 3:
            out.append((parts[0], parts[1], "conda"))
    return out


# ---------------------------------------------------------------- databases


class Auditor:
    """Checks package pins against one advisory database; safe to share between threads."""

    def __init__(self, source: str):
        self.source = source
        self.is_service = source.startswith(("http://", "https://"))
        self.database = redact_url(source) if self.is_service else os.path.abspath(os.path.expanduser(source))
        self._index: dict = {}
        self._signature = None
        self._lock = threading.Lock()

    def version(self) -> str:
        """What a kept result was checked against: changes when a local database's files change, so an
        administrator's new advisories reach every revision at the next scan (a service: always current)."""
        if self.is_service:
            return self.database
        return f"{self.database}#{hashlib.sha256(repr(self._stat()).encode()).hexdigest()[:16]}"

    def audit(self, packages: list) -> list:
        """Findings for [(name, version, manager)] (manager 'pip' or 'conda'), sorted by package.

        Raises DatabaseUnavailable when the database cannot be read or reached."""
        if self.is_service:
            lookups = self._query_all(packages)
        else:
            index = self._load()
            lookups = [[r for eco in ECOSYSTEMS.get(m, (m,)) for r in index.get((eco.lower(), _name(eco.lower(), n)), [])]
                       for n, _, m in packages]
        out, seen = [], set()
        for (name, version, manager), records in zip(packages, lookups):
            for record in records:
                found = findings(name, version, ECOSYSTEMS.get(manager, (manager,)), record)
                if found and (name, found["id"]) not in seen:
                    seen.add((name, found["id"]))
                    out.append(found)
        return sorted(out, key=lambda f: (f["package"].lower(), f["id"]))

    # ------------------------------------------------------------ local: a directory or a zip

    def _load(self) -> dict:
        """The index {(ecosystem, name): [records]}, reloaded when the files change."""
        with self._lock:
            signature = self._stat()
            if signature != self._signature:
                self._index = self._read()
                self._signature = signature
            return self._index

    def _stat(self):
        path = self.database
        try:
            if os.path.isdir(path):
                return tuple((e, st.st_mtime_ns, st.st_size) for e, st in ((e, os.stat(e)) for e in _json_files(path)))
            st = os.stat(path)
            return (st.st_mtime_ns, st.st_size)
        except OSError as e:
            raise DatabaseUnavailable(f"the advisory database {path} cannot be read ({e.strerror}); "
                                      "check c.EnvManagerApp.advisory_db") from None

    def _read(self) -> dict:
        index: dict = {}
        try:
            if os.path.isdir(self.database):
                for path in _json_files(self.database):
                    with open(path, "rb") as f:
                        _add(index, f.read(), path)
            else:
                with zipfile.ZipFile(self.database) as zf:
                    for member in zf.namelist():
                        if member.endswith(".json"):
                            _add(index, zf.read(member), member)
        except (OSError, zipfile.BadZipFile) as e:
            raise DatabaseUnavailable(f"the advisory database {self.database} cannot be read ({e}); "
                                      "it must be a directory of OSV JSON files or an OSV zip export") from None
        return index

    # ------------------------------------------------------------ a query service

    def _query_all(self, packages: list) -> list:
        queries = [(name, version, eco) for name, version, manager in packages for eco in ECOSYSTEMS.get(manager, (manager,))]
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda q: self._query(*q), queries))
        by_package: dict = {}
        for (name, version, _), records in zip(queries, answers):
            by_package.setdefault((name, version), []).extend(records)
        return [by_package.get((name, version), []) for name, version, _ in packages]

    def _query(self, name: str, version: str, ecosystem: str) -> list:
        url = self.source.rstrip("/") + "/v1/query"
        body = {"version": version, "package": {"name": name, "ecosystem": ecosystem}}
        records = []
        for _ in range(100):  # pages, bounded
            req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT) as resp:
                    data = json.loads(resp.read() or b"{}")
            except (urllib.error.URLError, OSError, ValueError) as e:
                raise DatabaseUnavailable(f"the advisory service {self.database} did not answer ({getattr(e, 'reason', e)}); "
                                          "check c.EnvManagerApp.advisory_db and the network") from None
            records += [r for r in data.get("vulns") or [] if well_formed(r)] if isinstance(data, dict) else []
            if not isinstance(data, dict) or not data.get("next_page_token"):
                break
            body["page_token"] = data["next_page_token"]
        return records


def well_formed(record: object) -> bool:
    """Whether a record has the OSV shape the matcher reads (strings where versions are); a damaged
    record is skipped, so it never hides the others' findings."""
    if not isinstance(record, dict) or not isinstance(record.get("id", ""), str):
        return False
    affected = record.get("affected", [])
    if not isinstance(affected, list):
        return False
    for entry in affected:
        if not isinstance(entry, dict) or not isinstance(entry.get("package", {}), dict):
            return False
        versions, ranges = entry.get("versions", []), entry.get("ranges", [])
        if not isinstance(versions, list) or not isinstance(ranges, list):
            return False
        for rng in ranges:
            events = rng.get("events", []) if isinstance(rng, dict) else None
            if not isinstance(events, list) or not all(
                    isinstance(e, dict) and len(e) == 1 and all(isinstance(v, str) for v in e.values()) for e in events):
                return False
    return all(isinstance(a, str) for a in record.get("aliases") or []) and isinstance(record.get("summary", ""), str)


def _json_files(directory: str) -> list:
    return sorted(os.path.join(d, f) for d, _, files in os.walk(directory) for f in files if f.endswith(".json"))


def _add(index: dict, raw: bytes, where: str) -> None:
    """Index one OSV record by each (ecosystem, package) it names; a damaged file is skipped."""
    try:
        record = json.loads(raw)
    except ValueError:
        return
    if not well_formed(record):
        return
    keys = set()
    for affected in record.get("affected") or []:
        pkg = (affected or {}).get("package") or {}
        eco = str(pkg.get("ecosystem", "")).split(":")[0].lower()
        if eco and pkg.get("name"):
            keys.add((eco, _name(eco, pkg["name"])))
    for key in keys:
        index.setdefault(key, []).append(record)


# ---------------------------------------------------------------- results per revision


def result_path(log_path: str) -> str:
    """logs/rev-NNNN.log → logs/rev-NNNN.audit.json."""
    return os.path.splitext(log_path)[0] + ".audit.json"


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def audit_revision(auditor: Auditor, revision: int, lock_path: str, log_path: str, version: str = "") -> dict:
    """Audit one revision's lock now and keep the result beside its log; returns the API's answer."""
    version = version or auditor.version()
    try:
        with open(lock_path) as f:
            text = f.read()
    except FileNotFoundError:
        text = ""
    result = {"revision": revision, "checked": now(), "database": auditor.database,
              "vulnerabilities": auditor.audit(lock_packages(text))}
    if os.path.isdir(os.path.dirname(log_path)):
        atomic_write(result_path(log_path), json.dumps(dict(result, database_version=version), indent=1) + "\n")
    return result


def stored(log_path: str, version: str, max_age: float) -> Optional[dict]:
    """The kept result of a revision if it was checked against this version of the database less than
    max_age seconds ago, else None."""
    try:
        with open(result_path(log_path)) as f:
            result = json.load(f)
        checked = datetime.datetime.strptime(result["checked"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    age = (datetime.datetime.now(datetime.timezone.utc) - checked).total_seconds()
    if result.pop("database_version", None) != version or not 0 <= age < max_age:
        return None
    return result


def fresh_or_audit(auditor: Auditor, revision: int, lock_path: str, log_path: str, max_age: float) -> dict:
    version = auditor.version()
    return stored(log_path, version, max_age) or audit_revision(auditor, revision, lock_path, log_path, version)


def audit_all(auditor: Auditor, targets: Iterable[tuple], max_age: float) -> int:
    """The schedule's pass: audit every (revision, lock path, log path) whose kept result is stale or
    was checked against another version of the database. Returns how many were audited;
    DatabaseUnavailable stops the pass (the next one retries)."""
    version = auditor.version()
    count = 0
    for revision, lock_path, log_path in targets:
        if stored(log_path, version, max_age) is None and os.path.exists(lock_path):
            audit_revision(auditor, revision, lock_path, log_path, version)
            count += 1
    return count
