"""Runs one build plan: a list of argv steps, in order, with a log and a result file.

Standard library only, so the very same file runs beside the server (local builds, started in
its own session so it outlives a server crash) and inside a Kubernetes Job's container (any image
with Python and uv). Usage: python runner.py PLAN.json

The plan (written by the server):
  {"log": path or null (stdout), "result": path, "timeout": seconds, "max_log_bytes": n (0: no cap), "env": {...},
   "steps": [{"name": "...", "argv": [...], "env": {...}, "stdout": path or null, "timeout": s or null}]}
The result (written atomically at the end): {"status": "ready"|"failed", "message": ..., "step": ..., "exit_code": ...}
A full disk must not cost the result: its room is reserved at the start, and a log that can no longer be
written is dropped while the build goes on to its end.
"""
import fcntl
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque

TAIL_LINES = 24
RESULT_ROOM = 4096  # bytes reserved for the result; a message is at most MAX_MESSAGE characters
PID_FILE = "runner.pid"  # beside the plan: locked and holding the pid for as long as a runner works on that plan


class CappedLog:
    """A log that stops growing at `limit` bytes with a note saying so (the build itself goes on)."""

    def __init__(self, stream, limit):
        self.stream, self.limit, self.written, self.broken = stream, limit, 0, False

    def write(self, text):
        if self.broken or (self.limit and self.written >= self.limit):
            return
        data = text
        if self.limit and self.written + len(text.encode()) > self.limit:
            data = text.encode()[: self.limit - self.written].decode(errors="ignore")
            data += (f"\n[envmgr] log truncated at {self.limit} bytes (c.EnvManagerApp.max_log_bytes); "
                     "the rest of this build's output is not kept\n")
        self.written += len(data.encode())
        try:
            self.stream.write(data)
        except OSError:  # full disk or gone storage: the build and its result matter more than its log
            self.broken = True

    def flush(self):
        try:
            self.stream.flush()
        except OSError:
            self.broken = True


def main(plan_path):
    if claim_plan(plan_path) is None:  # another runner works on this plan (its server died before recording it)
        return 0  # the lock, once taken, is held by its open descriptor until this process ends
    with open(plan_path) as f:
        plan = json.load(f)
    reserve_result(plan["result"])
    log = CappedLog(open(plan["log"], "a", buffering=1) if plan.get("log") else sys.stdout, int(plan.get("max_log_bytes") or 0))
    deadline = time.monotonic() + float(plan.get("timeout") or 86400)
    base_env = dict(os.environ, **plan.get("env", {}))
    steps = plan["steps"]
    result = {"status": "ready", "message": "", "step": None, "exit_code": 0}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started, took = time.monotonic(), []  # each step's time, for the last line of the log
    for index, step in enumerate(steps, 1):
        log.write(f"==> [{index}/{len(steps)}] {step['name']}: {' '.join(step['argv'])}\n")
        log.flush()
        step_deadline = deadline
        if step.get("timeout"):
            step_deadline = min(deadline, time.monotonic() + float(step["timeout"]))
        step_started = time.monotonic()
        code, tail, timed_out = run_step(step, dict(base_env, **step.get("env", {})), log, step_deadline)
        took.append(f"{step['name']} {time.monotonic() - step_started:.2f}s")
        if code != 0:
            if timed_out:
                what = "the init script" if step["name"] == "init" else f"step {step['name']}"
                message = f"{what} ran past its time limit and was stopped"
            else:
                message = summarize(step["name"], code, tail, step.get("base") or ())
            result = {"status": "failed", "message": message, "step": step["name"], "exit_code": code}
            log.write(f"==> failed: {message}\n")
            break
    else:
        log.write(f"==> done in {time.monotonic() - started:.1f}s ({', '.join(took)})\n")
    log.flush()
    write_result(plan["result"], result)
    return 0 if result["status"] == "ready" else 1


def claim_plan(plan_path):
    """Lock the plan's pid file and write our pid in it; None when another runner holds it. The lock goes
    with the process, so a server can ask whether a runner still works on a plan, and which one."""
    try:
        fd = os.open(os.path.join(os.path.dirname(os.path.abspath(plan_path)), PID_FILE), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return -1  # no claim where the build dir refuses it; the build itself still runs
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError:
        pass  # storage without locks (NFS mounted nolock): the pid is still worth writing
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
    except OSError:
        pass
    return fd


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
                tail.append(text.rstrip())  # indentation kept: it tells a wrapped line from a new one
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
CHATTER = NOISE + ("==> ", "-->")  # lines that never explain a failure
MAX_MESSAGE = 300
INDEX_SETTING = "check index_urls (an administrator allows indexes with c.EnvManagerApp.allowed_index_urls)"
CHANNEL_SETTING = "the channels of environment.yaml (an administrator sets c.EnvManagerApp.conda_channels)"


def _reason(text):
    """Why a URL could not be fetched, in a few words."""
    low = text.lower()
    for words, reason in ((("dns error", "resolving dns", "name or service not known", "failed to lookup"), "its host name does not resolve"),
                          (("connection refused",), "connection refused"),
                          (("timed out", "timeout", "deadline"), "timed out"),
                          (("certificate", "tls", "ssl"), "TLS certificate problem"),
                          (("401", "unauthorized"), "401 Unauthorized: check the credentials in the URL"),
                          (("403", "forbidden"), "403 Forbidden: check the credentials in the URL"),
                          (("404", "not found"), "404 Not Found: check the URL")):
        if any(w in low for w in words):
            return reason
    m = re.search(r"\b(5\d\d)\b", text)
    return f"the server answered {m[1]}" if m else "unreachable"


def _redact(text):
    return re.sub(r"://[^/@\s]+@", "://***@", text)


def _index_of(url):
    """https://host/simple/six/ → https://host/simple (the index a user configured)."""
    url = url.strip("`'\"(),.")
    m = re.match(r"(.*?/simple)(/|$)", url)
    return m[1] if m else re.sub(r"^(\w+://[^/]+).*$", r"\1", url)


def _channel_of(url):
    """http://host/channel/linux-64/repodata.json → http://host/channel."""
    return re.sub(r"/(?:noarch|linux-\w+|osx-\w+|win-\w+)/[^/]*$", "", url.strip("`'\"(),."))


BASE_SETTING = "c.EnvManagerApp.base_packages"


def _base_missing(text, base):
    """A base package (one the spec does not name: the build adds it so the environment runs as a kernel) that no
    channel or index has: say so, since the user never wrote it, and what to do instead of "check your file"."""
    names = {re.split(r"[\s=<>!~\[;]", b.rpartition("::")[2].strip(), 1)[0].lower().replace("_", "-") for b in base}
    found = (re.search(r"No candidates were found for (\S+)", text) or  # rattler
             re.search(r"Because (\S+) was not found in the package registry", text))  # uv
    if not found:
        return None
    shown = found[1].strip("`'\".,")
    if re.split(r"[\s=<>!~\[]", shown, 1)[0].lower().replace("_", "-") not in names:
        return None
    always = "it is always installed (a base package that lets the environment run as a kernel), so"
    if "No candidates" in found[0]:
        return (f"{shown} is not on the conda channels; {always} environment.yaml need not list it. Add a channel "
                f"that has it, or list {shown} under 'pip:'; or an administrator changes {BASE_SETTING}")
    return (f"{shown} is not on the package indexes; {always} packages need not list it. Add an index that has it "
            f"to index_urls, or an administrator changes {BASE_SETTING}")


def _rules(step, text, lines):
    """(pattern, message) pairs, first match wins: the culprit and the fix, in one line."""
    m = re.search(r"Failed to fetch:?\s+`?(\S+?)`?\s*$", text, re.M)
    if m:
        return f"could not reach the package index {_index_of(m[1])} ({_reason(text)}): {INDEX_SETTING}"
    m = re.search(r"Because (\S+) was not found in the package registry", text)
    if m:
        return (f"package {m[1]} was not found on the package indexes: check its name in packages, or add the index "
                f"that has it to index_urls")
    m = re.search(r"there is no version of (\S+?)(?:,| and | we )", text)
    if m:
        return f"no version matches {m[1]} on the package indexes: change that pin in packages"
    m = re.search(r"Because only (.+?) (?:is|are) available and you require (\S+?),? we can", text)
    if m:
        return f"no version matches {m[2]} on the package indexes (they have {m[1]}): change that pin in packages"
    m = re.search(r"No solution found when resolving dependencies.*?\n(Because [^\n]+?)(?:, we can conclude[^\n]*)?$", text, re.M | re.S)
    if m:
        return f"the requirements cannot be satisfied together: {m[1]}; change the pins in packages"
    # -r/-c files: named, never quoted (an included file's lines may be anything, so no tool text is echoed)
    m = re.search(r"failed to read from file `([^`]+)`", text)
    if m:
        return f"could not read {m[1]}, a file named by an -r/-c line in packages: check that it exists where the build runs"
    m = re.search(r"(?:parse|read|open)\w* (?:requirement|constraint|included file)s?(?: file)? (?:in |at )?`?([^`\s]+)`?", text, re.I)
    if m and step in ("install", "pip"):
        return f"the requirements file {m[1]} could not be read as requirements: check it and the files it includes"
    if "Distribution not found at" in text:
        return ("a local path in packages, or in a file it includes, does not exist where the build runs: check the "
                "paths (an administrator lists the allowed ones in c.EnvManagerApp.allowed_source_dirs)")
    m = re.search(r"Hash mismatch for `?([^`\s]+)`?", text)
    if m:
        return (f"{m[1]} as downloaded does not match its --hash in packages: regenerate the lock (uv pip compile "
                f"--generate-hashes) or check the index it comes from")
    m = re.search(r"Failed to (?:build|prepare distributions?|download and build)[: ]+`?([^`\s:]+)`?", text)
    if m and "Failed to download" not in m[0]:
        return f"{m[1]} has no wheel for this platform and building it from source failed: pin a version with wheels (the build log has the compiler output)"
    m = re.search(r"No (?:interpreter|Python) found for (?:Python )?(\S+)", text, re.I)
    if m:
        return f"Python {m[1].strip('`')} is not installed where the build runs: choose another python (GET /envmgr/api/info lists them)"
    if "No space left on device" in text:
        return "the storage is full: free space or delete environments (jupyter envmgr gc frees old revisions)"
    if "could not solve the environment" in text:
        m = re.search(r"No candidates were found for ([^\n]+?)\.?$", text, re.M)
        if m:
            return (f"no conda package matches {m[1].strip()} on the channels: check that name and version in "
                    f"environment.yaml, or {CHANNEL_SETTING}")
        m = re.search(r"Cannot solve the request because of:\s*([^\n]*)", text)
        why = (m[1] if m and m[1] else next((l for l in lines if not l.startswith("error:")), "")).rstrip(":")
        missing = re.findall(r"(\S+(?: [^,\s]+)?), for which no candidates were found", text)
        if missing:
            why += f" (it needs {', '.join(dict.fromkeys(missing))}, which no channel has)"
        return f"conda could not solve environment.yaml: {why}; change its pins or {CHANNEL_SETTING}"
    m = re.search(r"error sending request for url \((\S+?)\)", text) or re.search(r"(?:fetch|download)\w* (?:repodata )?(?:from )?(https?://\S+)", text)
    if m and step in ("conda", "solve", "link"):
        return f"could not reach the conda channel {_channel_of(m[1])} ({_reason(text)}): check {CHANNEL_SETTING}"
    if m:
        return f"could not reach {_index_of(m[1])} ({_reason(text)}): {INDEX_SETTING}"
    if step == "init":
        last = lines[-1] if lines else "no output"
        return f"the init script failed: {last}; fix init_script (its output is in the build log)"
    return None


def summarize(step, code, tail, base=()):
    """The failure as one line of at most 300 characters: what failed and what to do (the log keeps the rest)."""
    lines = []
    for raw in tail:  # uv wraps long lines: an indented line that starts no new cause continues the last one
        line = raw.lstrip("×╰─▶│ ").strip()
        if line.startswith("cause: "):
            line = line[len("cause: "):]
        elif lines and raw[:1].isspace() and not line.startswith(("Caused by", "hint:")):
            lines[-1] += " " + line
            continue
        if line and not line.startswith(CHATTER):
            lines.append(line)
    text = "\n".join(lines)
    message = _base_missing(text, base) or _rules(step, text, lines)
    if message is None:
        errors = [line for line in lines if line.lower().startswith("error")] or lines[-1:]
        message = f"step {step} failed (exit {code}): {errors[-1] if errors else 'no output'} (the build log has the whole output)"
    message = " ".join(_redact(message).split())
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"


def reserve_result(path):
    """Blank room for the result (blanks are no result to a reader), so a disk the build fills cannot refuse it."""
    with open(path, "w") as f:
        f.write(" " * RESULT_ROOM)
        f.flush()
        os.fsync(f.fileno())


def write_result(path, result):
    """Atomically beside the reserved file; on a full disk, into the reserved room instead."""
    result["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    data = json.dumps(result).encode()
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        if tmp:
            os.unlink(tmp)
        with open(path, "r+b") as f:  # rewrites blocks the file already has: needs no free space
            f.write(data.ljust(RESULT_ROOM))
            f.flush()
            os.fsync(f.fileno())

if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
