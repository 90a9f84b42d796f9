"""Runs one build plan: a list of argv steps, in order, with a log and a result file.

Standard library only, so the very same file runs beside the server (local builds, started in
its own session so it outlives a server crash) and inside a Kubernetes Job's container (any image
with Python and uv). Usage: python runner.py PLAN.json

The plan (written by the server):
  {"log": path or null (stdout), "result": path, "timeout": seconds, "max_log_bytes": n (0: no cap), "env": {...},
   "steps": [{"name": "...", "argv": [...], "env": {...}, "stdout": path or null, "timeout": s or null}]}
The result (written atomically at the end): {"status": "ready"|"failed", "message": ..., "step": ..., "exit_code": ...}
"""
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque

TAIL_LINES = 12


class CappedLog:
    """A log that stops growing at `limit` bytes with a note saying so (the build itself goes on)."""

    def __init__(self, stream, limit):
        self.stream, self.limit, self.written = stream, limit, 0

    def write(self, text):
        if self.limit and self.written >= self.limit:
            return
        data = text
        if self.limit and self.written + len(text.encode()) > self.limit:
            data = text.encode()[: self.limit - self.written].decode(errors="ignore")
            data += (f"\n[envmgr] log truncated at {self.limit} bytes (c.EnvManagerApp.max_log_bytes); "
                     "the rest of this build's output is not kept\n")
        self.written += len(data.encode())
        self.stream.write(data)

    def flush(self):
        self.stream.flush()


def main(plan_path):
    with open(plan_path) as f:
        plan = json.load(f)
    log = CappedLog(open(plan["log"], "a", buffering=1) if plan.get("log") else sys.stdout, int(plan.get("max_log_bytes") or 0))
    deadline = time.monotonic() + float(plan.get("timeout") or 86400)
    base_env = dict(os.environ, **plan.get("env", {}))
    steps = plan["steps"]
    result = {"status": "ready", "message": "", "step": None, "exit_code": 0}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    for index, step in enumerate(steps, 1):
        log.write(f"==> [{index}/{len(steps)}] {step['name']}: {' '.join(step['argv'])}\n")
        log.flush()
        step_deadline = deadline
        if step.get("timeout"):
            step_deadline = min(deadline, time.monotonic() + float(step["timeout"]))
        code, tail, timed_out = run_step(step, dict(base_env, **step.get("env", {})), log, step_deadline)
        if code != 0:
            if timed_out:
                what = "the init script" if step["name"] == "init" else f"step {step['name']}"
                message = f"{what} ran past its time limit and was stopped"
            else:
                message = f"step {step['name']} failed (exit {code}): " + summarize(tail)
            result = {"status": "failed", "message": message, "step": step["name"], "exit_code": code}
            log.write(f"==> failed: {message}\n")
            break
    else:
        log.write(f"==> done in {time.monotonic() - started:.1f}s\n")
    log.flush()
    write_result(plan["result"], result)
    return 0 if result["status"] == "ready" else 1


def run_step(step, env, log, deadline):
    """Run one argv; stream its output to the log; return (exit code, last lines, timed out)."""
    out = open(step["stdout"], "wb") if step.get("stdout") else None
    proc = subprocess.Popen(
        step["argv"], env=env, stdin=subprocess.DEVNULL,
        stdout=out if out else subprocess.PIPE,
        stderr=subprocess.PIPE if out else subprocess.STDOUT,
        preexec_fn=die_with_parent,
    )
    tail = deque(maxlen=TAIL_LINES)
    stream = proc.stderr if out else proc.stdout
    timed_out = False
    sel = selectors.DefaultSelector()
    sel.register(stream, selectors.EVENT_READ)
    buf = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            proc.kill()
            break
        if not sel.select(timeout=min(remaining, 1.0)):
            continue
        chunk = os.read(stream.fileno(), 65536)
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            text = line.decode(errors="replace").rstrip("\r")
            log.write(text + "\n")
            if text.strip() and not text.startswith("[envmgr-progress]"):
                tail.append(text.strip())
    if buf:
        log.write(buf.decode(errors="replace") + "\n")
        tail.append(buf.decode(errors="replace").strip())
    code = proc.wait()
    if out:
        out.close()
    return (124 if timed_out else code), list(tail), timed_out


def die_with_parent():
    """In the step's process: be killed when the runner dies, even by SIGKILL (Linux; elsewhere a no-op)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


NOISE = ("Using Python ", "Using CPython ", "Resolved ", "Prepared ", "Audited ")


def summarize(tail):
    """The lines that explain a failure, without uv's decorations and chatter."""
    lines = [line.lstrip("×╰─▶│ ").strip() for line in tail]
    text = " ".join(line for line in lines if line and not line.startswith(NOISE))
    return text[-800:] if text else "no output"


def write_result(path, result):
    result["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        json.dump(result, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
