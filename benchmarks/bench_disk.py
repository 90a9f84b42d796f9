"""Shared disk (issue 14): three revisions of one environment that differ in one small package, against one.

One server, one environment: revision 1 `numpy pandas six==1.16.0`, revision 2 with `six==1.17.0`,
revision 3 with `six==1.15.0`. uv links every package file from its cache on the root's filesystem and
the bytecode is compiled once per source file and linked from the bytecode cache into every revision, so
the three together take little more than one. Disk is counted as `du` does: blocks, each inode once.
For scale, a copy of revision 1 made without links (what an environment manager that shares nothing
takes per revision). Target: three <= 1.2x one.

    cd benchmarks && python bench_disk.py
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

from seed import HERE  # noqa: F401  (puts tests/ on sys.path)

from helpers import Server, disk  # noqa: E402

VERSIONS = ["1.16.0", "1.17.0", "1.15.0"]


def wait_revision(server: Server, name: str, revision: int) -> dict:
    while True:
        record = server.client.get(name)
        if record["status"] not in ("pending", "warming") and record["revision"] == revision:
            assert record["status"] == "ready" and record["ready_revision"] == revision, record
            return record
        time.sleep(0.1)


def main() -> int:
    base = tempfile.mkdtemp(prefix="envmgr-bench-disk-")
    root = os.path.join(base, "root")
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    server = Server(os.path.join(base, "server"), root, os.path.join(root, "cache", "uv"), default_python=python)
    try:
        server.client.create({"name": "team", "packages": f"numpy\npandas\nsix=={VERSIONS[0]}\n"})
        wait_revision(server, "team", 1)
        for revision, version in enumerate(VERSIONS[1:], 2):
            server.client.update("team", {"packages": f"numpy\npandas\nsix=={version}\n"})
            wait_revision(server, "team", revision)
        prefixes = [os.path.join(root, "envs", "default", "team", f"rev-{n:04d}") for n in (1, 2, 3)]
        one, three = disk(prefixes[0]), disk(*prefixes)
        copy = os.path.join(base, "plain-copy")
        subprocess.run(["cp", "-r", prefixes[0], copy], check=True)
        plain = disk(copy)
        usage = server.client._api("GET", "environments/team/usage")
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    mb = 1024 * 1024
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"one revision (numpy pandas six):            {one / mb:8.1f} MiB")
    print(f"three revisions (six 1.16 / 1.17 / 1.15):   {three / mb:8.1f} MiB together")
    print(f"three copies sharing nothing would take:    {3 * plain / mb:8.1f} MiB")
    for r in usage["revisions"]:
        print(f"  GET .../usage revision {r['revision']}: {r['bytes'] / mb:.1f} MiB, unique {r['unique_bytes'] / mb:.2f} MiB, {r['files']} files")
    ratio = three / one
    print(f"ratio three / one: {ratio:.3f} (target <= 1.2): {'OK' if ratio <= 1.2 else 'MISSED'}")
    return 0 if ratio <= 1.2 else 1


if __name__ == "__main__":
    sys.exit(main())
