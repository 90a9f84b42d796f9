"""The environment service and the notebook servers that read from it (issue 22, "Measured").

One service (`jupyter envmgr service`, standalone with tokens) owns a root seeded with 1,000 ready
environments (seed.py); notebook servers are readers of it (c.EnvManagerApp.service_url + service_token).
Each sub-benchmark prints its figure beside a baseline measured in the same run, the ratio, and the target:

  list     GET /envmgr/api/environments (1,000 environments, full body) through a reader, against the same
           request directly at the service, interleaved one for one: p95 ratio <= 1.5.
  follow   10 readers (real notebook servers) and 40 plain SSE clients of the service's /events:
           events   a PATCH of one environment's description at the service, then the time until it
                    arrives on a client of each reader's /events (from the PATCH being sent); baseline: its
                    arrival at the 40 direct followers. Target: every reader within 2 s p95.
           cpu      the service's CPU time (/proc/<pid>/stat utime+stime) over an idle window with the 10
                    readers and 40 followers connected; baseline: the same service with nobody connected.
                    Target: < 5 % of a core.
           stat     stat-family syscalls (stat, lstat, fstat, newfstatat, statx) naming a path on the root,
                    made by the 10 idle readers (`strace -f -e trace=%stat,%lstat,%fstat,%file -p ...`, every
                    thread); baseline: an embedded server (no service_url) on the same root over the same
                    window, which stats every env.json each second. Target: 0.
  kernel   kernel start (POST /api/kernels -> first kernel_info_reply) of one environment the service built,
           from a reader running as a second Unix user (envmgr-bench, made with useradd if missing), for whom
           the root is read-only; baseline: the same environment from a reader running as root, for whom it is
           writable. Interleaved; target: median ratio <= 1.2.

    python benchmarks/bench_service.py [list|follow|kernel|all] [--envs 1000] [--readers 10] [--followers 40]

Needs root (the second Unix user, and strace attaching to the readers) and strace (`apt-get install strace`).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import os
import pwd
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

from seed import cpu_seconds, cpu_share, get, p, seed_root  # noqa: E402

from helpers import Server, Service, call  # noqa: E402  (the tests' real-server helpers)

WRITER = "tok-bench-writer"
WATCHER = "tok-bench-watcher"
BENCH_USER = "envmgr-bench"
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


# ------------------------------------------------------------ processes

def kill_group(proc) -> None:
    """Stop a server started in its own session, and everything it started (kernels)."""
    if proc is None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=20)
            # the group may still hold children (kernels): take them too
            os.killpg(proc.pid, signal.SIGKILL)
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            pass
        return


class Team:
    """A temporary dir: a seeded root, the service that owns it, and the readers started on it."""

    def __init__(self, name: str, envs: int, readers: int = 0, **service_settings):
        self.base = tempfile.mkdtemp(prefix=f"envmgr-bench-{name}-")
        os.chmod(self.base, 0o755)  # a reader of another account reaches the root through here
        self.root = os.path.join(self.base, "root")
        self.uv_cache = os.path.join(self.root, "cache", "uv")
        self.tokens = {WRITER: "bench", WATCHER: "watcher", **{f"tok-bench-nb-{i}": f"nb{i}" for i in range(readers)}}
        self.servers: list = []
        self.service = None
        seed_root(self.root, envs)
        access = {"default": {"read": ["*"], "write": ["bench"]}}
        self.service = Service(os.path.join(self.base, "service"), self.root, self.uv_cache, self.tokens, access=access,
                               gc_interval=0, default_python=PYTHON, **service_settings)

    def reader(self, i: int, user: str = None) -> Server:
        server = Server(os.path.join(self.base, f"nb-{i}{'-' + user if user else ''}"), self.root, self.uv_cache,
                        user=user, service_url=self.service.url, service_token=f"tok-bench-nb-{i}")
        self.servers.append(server)
        return server

    def embedded(self) -> Server:
        server = Server(os.path.join(self.base, "embedded"), self.root, self.uv_cache, gc_interval=0, default_python=PYTHON)
        self.servers.append(server)
        return server

    def close(self) -> None:
        for server in self.servers:
            kill_group(server.proc)
        if self.service:
            kill_group(self.service.proc)
        shutil.rmtree(self.base, ignore_errors=True)


def load() -> str:
    return f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"


# ------------------------------------------------------------ list

def timed(url: str, token: str) -> tuple:
    """(milliseconds, body) of one GET that must answer 200."""
    start = time.perf_counter()
    status, body, _ = get(url, token)
    took = (time.perf_counter() - start) * 1000
    assert status == 200, status
    return took, body


def bench_list(args) -> bool:
    team = Team("svc-list", args.envs, readers=1)
    try:
        reader = team.reader(0)
        through = f"http://127.0.0.1:{reader.port}/envmgr/api/environments"
        direct = f"{team.service.url}envmgr/api/environments"
        _, body = timed(through, reader.token)
        _, body_direct = timed(direct, WRITER)
        assert body.count(b'"name"') >= args.envs and len(body) == len(body_direct), (len(body), len(body_direct))
        for _ in range(5):  # warm both paths
            timed(through, reader.token)
            timed(direct, WRITER)
        via, at = [], []
        for _ in range(args.requests):  # one for one, so the machine's drift hits both alike
            via.append(timed(through, reader.token)[0])
            at.append(timed(direct, WRITER)[0])
    finally:
        team.close()
    ratio = p(via, .95) / p(at, .95)
    ok = ratio <= 1.5
    print(f"[list] {load()}; {args.envs} environments; list body {len(body) // 1024} KiB; {args.requests} requests each, interleaved")
    print(f"[list] through a notebook server (reader): median {statistics.median(via):.1f} ms, p95 {p(via, .95):.1f} ms")
    print(f"[list] directly at the service (baseline): median {statistics.median(at):.1f} ms, p95 {p(at, .95):.1f} ms")
    print(f"[list] p95 ratio reader / service: {ratio:.2f} (target <= 1.5): {'OK' if ok else 'MISSED'}")
    return ok


# ------------------------------------------------------------ follow: events, cpu, stat

class Follower(threading.Thread):
    """One SSE client holding GET /envmgr/api/events open; records when each marker first arrives."""

    def __init__(self, port: int, token: str, label: str):
        super().__init__(daemon=True)
        self.port, self.token, self.label = port, token, label
        self.arrived: dict = {}  # marker -> perf_counter
        self.connected = threading.Event()
        self.stop = threading.Event()
        self.error = None
        self.conn = None

    def run(self):
        try:
            self.conn = conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            conn.request("GET", "/envmgr/api/events", headers={"Authorization": f"token {self.token}"})
            resp = conn.getresponse()
            assert resp.status == 200, resp.status
            conn.sock.settimeout(None)  # blocked in recv until a line comes (a keepalive at least every 15 s)
            while not self.stop.is_set():
                line = resp.fp.readline()
                if not line:
                    raise RuntimeError("the stream ended")
                now = time.perf_counter()
                if line.startswith(b":"):
                    self.connected.set()
                    continue
                for marker in re.findall(rb"bench-ev-\d+", line):
                    self.arrived.setdefault(marker.decode(), now)
        except Exception as e:  # noqa: BLE001 — reported by the benchmark
            if not self.stop.is_set():
                self.error = e
            self.connected.set()

    def close(self):
        self.stop.set()
        with contextlib.suppress(Exception):
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(Exception):
            self.conn.close()


def trace_stats(pids: list, seconds: float, root: str, out: str) -> tuple:
    """(stat-family calls naming a path under `root`, all file calls naming it, every stat-family call) of
    `pids` and all their threads over `seconds`, threads attached)."""
    argv = ["strace", "-f", "-e", "trace=%stat,%lstat,%fstat,%file", "-o", out]
    for pid in pids:
        argv += ["-p", str(pid)]
    tracer = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    time.sleep(seconds)
    tracer.send_signal(signal.SIGINT)
    _, err = tracer.communicate(timeout=30)
    text = err.decode(errors="replace")  # "Process N attached[ with K threads]": every thread of each pid
    attached = sum(int(m[1] or 1) for m in re.finditer(r"Process \d+ attached(?: with (\d+) threads)?", text))
    stat_re = re.compile(r"\b(stat|lstat|fstat|newfstatat|fstatat64|statx|stat64|lstat64)\(")
    on_root = stats_on_root = stats = 0
    with open(out, errors="replace") as f:
        for line in f:
            is_stat = bool(stat_re.search(line))
            stats += is_stat
            if root in line:
                on_root += 1
                stats_on_root += is_stat
    return stats_on_root, on_root, stats, attached


def bench_follow(args) -> dict:
    team = Team("svc-follow", args.envs, readers=args.readers)
    results = {}
    try:
        pid = team.service.proc.pid
        time.sleep(3)  # the service's first scans and kernelspec resync are over
        idle = cpu_share(pid, args.seconds)
        readers = [team.reader(i) for i in range(args.readers)]
        via = [Follower(r.port, r.token, f"nb{i}") for i, r in enumerate(readers)]
        direct = [Follower(team.service.port, WATCHER, f"direct{i}") for i in range(args.followers)]
        for f in via + direct:
            f.start()
        for f in via + direct:
            assert f.connected.wait(30) and f.error is None, (f.label, f.error)
        time.sleep(2)

        # events: a change at the service, its arrival at each reader's /events and at the direct followers
        sent = {}
        for i in range(args.events):
            marker = f"bench-ev-{i}"
            name = f"env-{i % args.envs:04d}"
            sent[marker] = time.perf_counter()
            status, body = call(team.service.url, WRITER, "PATCH", f"envmgr/api/environments/{name}", {"description": marker})
            assert status == 200, (status, body)
            deadline = time.monotonic() + 10
            while any(marker not in f.arrived for f in via + direct) and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(args.gap)
        missing = sum(m not in f.arrived for f in via + direct for m in sent)
        lat_via = [(f.arrived[m] - t) * 1000 for f in via for m, t in sent.items() if m in f.arrived]
        lat_direct = [(f.arrived[m] - t) * 1000 for f in direct for m, t in sent.items() if m in f.arrived]
        worst_reader = max(p([(f.arrived[m] - t) * 1000 for m, t in sent.items() if m in f.arrived] or [1e9], .95) for f in via)
        errors = [(f.label, f.error) for f in via + direct if f.error]

        # cpu: the service idles with everyone connected
        time.sleep(2)
        followed = cpu_share(pid, args.seconds)
        reader_cpu = [cpu_share_many([r.proc.pid for r in readers], min(args.seconds, 10))]

        # stat: the idle readers, then an embedded server on the same root (the baseline)
        trace_dir = os.path.join(team.base, "traces")
        os.makedirs(trace_dir)
        reader_stats = trace_stats([r.proc.pid for r in readers], args.seconds, team.root, os.path.join(trace_dir, "readers.txt"))
        for f in via + direct:
            f.close()
        embedded = team.embedded()
        time.sleep(3)
        embedded_stats = trace_stats([embedded.proc.pid], args.seconds, team.root, os.path.join(trace_dir, "embedded.txt"))
    finally:
        team.close()

    tag = f"[follow] {load()}; {args.envs} environments; {args.readers} readers + {args.followers} direct followers"
    print(tag)
    print(f"[events] {args.events} changes (PATCH description at the service, {args.gap:.1f} s apart); "
          f"{len(lat_via)} arrivals at readers' /events, {len(lat_direct)} at direct followers, {missing} missing, errors {errors}")
    ev_ratio = p(lat_via, .95) / max(p(lat_direct, .95), 1e-6)
    ev_ok = missing == 0 and not errors and p(lat_via, .95) <= 2000
    print(f"[events] at each reader's /events: median {statistics.median(lat_via):.1f} ms, p95 {p(lat_via, .95):.1f} ms, "
          f"max {max(lat_via):.1f} ms (the slowest reader's own p95 {worst_reader:.1f} ms)")
    print(f"[events] at the service's direct followers (baseline): median {statistics.median(lat_direct):.1f} ms, "
          f"p95 {p(lat_direct, .95):.1f} ms, max {max(lat_direct):.1f} ms")
    print(f"[events] p95 ratio reader / direct: {ev_ratio:.2f}; target every reader <= 2 s p95: {'OK' if ev_ok else 'MISSED'}")
    cpu_ok = followed < 0.05
    print(f"[cpu] service CPU, nobody connected (baseline): {idle * 100:.2f} % of a core over {args.seconds:.0f} s")
    print(f"[cpu] service CPU, {args.readers} readers + {args.followers} followers connected, idle: {followed * 100:.2f} % of a core "
          f"over {args.seconds:.0f} s (ratio {followed / max(idle, 1e-6):.2f}); target < 5 %: {'OK' if cpu_ok else 'MISSED'}")
    print(f"[cpu] (the {args.readers} idle readers together: {reader_cpu[0] * 100:.2f} % of a core)")
    stat_ok = reader_stats[0] == 0 and embedded_stats[0] > 0
    print(f"[stat] {args.readers} idle readers over {args.seconds:.0f} s: {reader_stats[0]} stat calls on the root "
          f"({reader_stats[1]} file calls on it; {reader_stats[2]} stat calls anywhere; {reader_stats[3]} threads traced)")
    print(f"[stat] embedded server on the same root (baseline), {args.seconds:.0f} s: {embedded_stats[0]} stat calls on the root "
          f"({embedded_stats[0] / args.seconds:.0f}/s; {embedded_stats[1]} file calls on it; {embedded_stats[2]} stat calls anywhere; {embedded_stats[3]} threads traced)")
    print(f"[stat] target 0 on the root for readers: {'OK' if stat_ok else 'MISSED'}")
    results.update(events=ev_ok, cpu=cpu_ok, stat=stat_ok)
    return all(results.values())


def cpu_share_many(pids: list, seconds: float) -> float:
    before, started = sum(cpu_seconds(x) for x in pids), time.perf_counter()
    time.sleep(seconds)
    return (sum(cpu_seconds(x) for x in pids) - before) / (time.perf_counter() - started)


# ------------------------------------------------------------ kernel

def unix_user(name: str) -> str:
    """A second Unix account that can run this interpreter (as tests/helpers.py makes one)."""
    if os.geteuid() != 0:
        raise SystemExit("kernel: needs root, to run a reader as a second Unix user")
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True, capture_output=True)
    for path in {os.path.realpath(sys.executable), sys.prefix}:  # search (not read) on the interpreter's parents
        while path != "/":
            path = os.path.dirname(path)
            mode = os.stat(path).st_mode
            if not mode & 0o001:
                os.chmod(path, mode | 0o001)
    return name


def bench_kernel(args) -> bool:
    from bench_kernel_start import kernel_start

    account = unix_user(BENCH_USER)
    team = Team("svc-kernel", 0, readers=2)
    try:
        writer = team.service.client("bench")
        writer.create({"name": "fresh", "packages": ""})
        for _ in writer.follow_log("fresh"):
            pass
        record = writer.get("fresh")
        assert record["status"] == "ready", record
        prefix = record["prefix"]
        writable = team.reader(0)  # as root: the root is writable for it
        readonly = team.reader(1, user=account)
        # the second account can read and run the revision, and write nothing on it
        probe = subprocess.run(["runuser", "-u", account, "--", "sh", "-c", f"test -r {prefix}/bin/python && ! test -w {prefix} "
                                f"&& ! test -w {prefix}/lib && ! test -w {team.root}"], capture_output=True)
        assert probe.returncode == 0, f"{account} can write the root or cannot read it: {probe.stderr}"
        kernel = record["kernel_name"]

        async def measure():
            times = {"rw": [], "ro": []}
            for server in (writable, readonly):  # one warm-up each
                await kernel_start(server, kernel)
            for _ in range(args.runs):
                times["rw"].append(await kernel_start(writable, kernel))
                times["ro"].append(await kernel_start(readonly, kernel))
            return times

        times = asyncio.run(measure())
        owned = [os.path.join(d, n) for d, dirs, files in os.walk(team.root) for n in dirs + files
                 if os.lstat(os.path.join(d, n)).st_uid == pwd.getpwnam(account).pw_uid]
    finally:
        team.close()
    ro, rw = statistics.median(times["ro"]), statistics.median(times["rw"])
    ratio = ro / rw
    ok = ratio <= 1.2 and not owned
    print(f"[kernel] {load()}; environment 'fresh' built by the service; {args.runs} starts each, interleaved")
    print(f"[kernel] reader as {account} (root read-only for it): median {ro:.3f} s "
          f"({', '.join(f'{t:.3f}' for t in times['ro'])}); files it left on the root: {len(owned)}")
    print(f"[kernel] reader as root (root writable, baseline):   median {rw:.3f} s ({', '.join(f'{t:.3f}' for t in times['rw'])})")
    print(f"[kernel] ratio read-only / writable: {ratio:.2f} (target <= 1.2): {'OK' if ok else 'MISSED'}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", nargs="?", default="all", choices=["list", "follow", "kernel", "all"])
    parser.add_argument("--envs", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--readers", type=int, default=10)
    parser.add_argument("--followers", type=int, default=40)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--gap", type=float, default=0.5, help="seconds between two changes")
    parser.add_argument("--seconds", type=float, default=20, help="the idle windows (cpu, stat)")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    ok = True
    for what, fn in (("list", bench_list), ("follow", bench_follow), ("kernel", bench_kernel)):
        if args.what in (what, "all"):
            ok = fn(args) and ok
            sys.stdout.flush()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
