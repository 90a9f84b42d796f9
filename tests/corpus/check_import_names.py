"""Check jupyter_envmgr/data/import_names.json against the real wheels; writes import_names_check.json.

For every distribution in the table, pip (the ordinary client, with this machine's index
configuration) names the wheel it would install (`--dry-run --report`, metadata only); the wheel's
file list is read (a local file, or over HTTP with range requests: only the zip's central
directory travels) and each import name must be a module or package at the wheel's top level
(a dotted name: the package path inside it). The result is cached in import_names_check.json,
which tests/test_suggestions.py compares with the table.

    python tests/corpus/check_import_names.py
"""
from __future__ import annotations

import datetime
import io
import json
import os
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from urllib.parse import unquote, urlparse

HERE = os.path.dirname(os.path.abspath(__file__))
TABLE = os.path.join(HERE, "..", "..", "jupyter_envmgr", "data", "import_names.json")
OUT = os.path.join(HERE, "import_names_check.json")


class RangeFile(io.RawIOBase):
    """A read-only, seekable view of a remote file through HTTP Range requests."""

    def __init__(self, url: str):
        self.url = url
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=60) as resp:
            self.size = int(resp.headers["Content-Length"])
        self.pos = 0

    def seekable(self):
        return True

    def readable(self):
        return True

    def tell(self):
        return self.pos

    def seek(self, offset, whence=0):
        self.pos = {0: offset, 1: self.pos + offset, 2: self.size + offset}[whence]
        return self.pos

    def read(self, n=-1):
        end = self.size if n is None or n < 0 else min(self.size, self.pos + n)
        if end <= self.pos:
            return b""
        req = urllib.request.Request(self.url, headers={"Range": f"bytes={self.pos}-{end - 1}"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            data = resp.read()
        self.pos += len(data)
        return data


def wheel_names(url: str) -> list:
    parsed = urlparse(url)
    source = unquote(parsed.path) if parsed.scheme == "file" else RangeFile(url)
    with zipfile.ZipFile(source) as zf:
        return zf.namelist()


def proof(import_name: str, names: list) -> str:
    """The wheel entry that makes `import_name` importable, or ''."""
    path = import_name.replace(".", "/")
    for name in sorted(names):
        if name.startswith(path + "/") or name == path + ".py":
            return name
        if name.startswith(path + ".") and name.endswith((".so", ".pyd")) and "/" not in name[len(path):]:
            return name
    return ""


def resolve(dists: list) -> dict:
    """{canonical dist: (wheel filename, url, sha256)} for the wheels pip picks, metadata only."""
    from packaging.utils import canonicalize_name

    out, todo = {}, list(dists)
    while todo:
        with tempfile.TemporaryDirectory() as tmp:
            report = os.path.join(tmp, "report.json")
            proc = subprocess.run(
                [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--ignore-installed",
                 "--only-binary", ":all:", "--quiet", "--report", report, *todo],
                capture_output=True, text=True)
            if proc.returncode == 0:
                for item in json.load(open(report))["install"]:
                    info = item["download_info"]
                    name = canonicalize_name(item["metadata"]["name"])
                    out[name] = (unquote(info["url"].rsplit("/", 1)[-1]), info["url"],
                                 info.get("archive_info", {}).get("hashes", {}).get("sha256", ""))
                return out
        bad = [d for d in todo if f"for {d}" in proc.stderr or f"requirement {d}" in proc.stderr]
        if not bad:
            raise SystemExit(proc.stderr)
        print("no wheel for", bad, file=sys.stderr)
        todo = [d for d in todo if d not in bad]
    return out


def main() -> int:
    from packaging.utils import canonicalize_name

    table = json.load(open(TABLE))
    wheels = resolve(sorted(set(table.values())))
    result = {"checked": datetime.date.today().isoformat(),
              "python": f"{sys.version_info.major}.{sys.version_info.minor}", "wheels": {}, "proof": {}, "failed": {}}
    names_of = {}
    for imp, dist in sorted(table.items()):
        key = canonicalize_name(dist)
        if key not in wheels:
            result["failed"][imp] = f"no wheel of {dist} for this platform"
            continue
        filename, url, sha256 = wheels[key]
        if key not in names_of:
            names_of[key] = wheel_names(url)
        found = proof(imp, names_of[key])
        result["wheels"][key] = {"wheel": filename, "sha256": sha256}
        if found:
            result["proof"][imp] = found
        else:
            result["failed"][imp] = f"{filename} has no top-level {imp}"
    with open(OUT, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"{len(result['proof'])} entries proven, {len(result['failed'])} failed: {result['failed']}")
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
