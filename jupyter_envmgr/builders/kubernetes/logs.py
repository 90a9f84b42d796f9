"""The build container's log, copied into the revision's log file while the build runs.

The file holds exactly the pod log's complete lines, so after a reconnection (or a server restart) the lines
already in it are skipped. A stream the API server ends while the container still runs is read again, no
sooner than c.EnvManagerApp.kubernetes_log_reread_seconds later. 401/403 on the first read is final: the
server may not read pod logs (a Role without `pods/log`), which no retry mends; it says so at once in the build
log and the server log. After reads that worked, a 403 is what an API server gives while its authorizer's caches
warm up after a restart: read again (a few times, then give up the same way).
"""
from __future__ import annotations

import asyncio
import fcntl
import logging
import threading
from typing import Optional

from .client import abort, describe
from .objects import CONTAINER, container_started, container_terminated, job_state

log = logging.getLogger("jupyter_envmgr.kubernetes")


def count_lines(path: str) -> int:
    try:
        with open(path, "rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 16), b""))
    except FileNotFoundError:
        return 0


def forbidden_message(pod: str, namespace: str, error: BaseException) -> str:
    return (f"warning: this server may not read the log of build pod {pod} in namespace {namespace} "
            f"({describe(error)}); the build goes on, but its log stays empty here: grant `get` on `pods/log` "
            "to the server's ServiceAccount (deploy/rbac.yaml)")


class LogFollower:
    """Follows one Job's pod; `cache` is the builder (its `job`, `pod`, `pod_of` and `changed`)."""

    def __init__(self, cache, api, namespace: str, job: str, path: str):
        self.cache = cache
        self.api = api
        self.namespace = namespace
        self.job = job
        self.path = path
        self.written = count_lines(path)
        self.pod: Optional[str] = None
        self.forbidden = False
        self.was_read = False  # a read has been allowed once: a later 403 may be an API server restarting
        self._stop = threading.Event()
        self._resp = None
        self.task = asyncio.ensure_future(self._run())

    def stop(self) -> None:
        self._stop.set()
        abort(self._resp)
        self.task.cancel()

    async def finish(self, timeout: float) -> None:
        """Let the follower reach the end of the log (bounded), then stop it."""
        try:
            await asyncio.wait_for(asyncio.shield(self.task), timeout)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("following the log of %s failed", self.job)
        self.stop()

    async def _run(self) -> None:
        c = self.cache
        while True:  # until the build container has started (or the Job is gone)
            changed = c.changed
            pod = c.pod_of(self.namespace, self.job)
            if pod is not None and container_started(pod):
                break
            job = c.job(self.namespace, self.job)
            if (job is None or job_state(job) != "running") and (pod is None or not container_started(pod)):
                return
            await changed.wait()
        self.pod = pod["metadata"]["name"]
        # A thread of its own, not the loop's executor: a build may stream its log for an hour.
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def target():
            try:
                self._follow()
            except Exception:
                log.exception("following the log of pod %s failed", self.pod)
            finally:
                loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))

        threading.Thread(target=target, name=f"envmgr-log-{self.pod}", daemon=True).start()
        await done

    def _append(self, out, lines: list, seen: int) -> int:
        for line in lines:
            seen += 1
            if seen > self.written:
                out.write(line + b"\n")
                self.written += 1
        out.flush()
        return seen

    def _read(self, follow: bool) -> bool:
        """Stream the log once; True when it ran to its end without a connection problem."""
        config = self.api.config
        resp = self.api.core.read_namespaced_pod_log(
            self.pod, self.namespace, container=CONTAINER, follow=follow, _preload_content=False,
            _request_timeout=(config.kubernetes_api_timeout, max(config.kubernetes_watch_timeout, 60)),
        )
        self._resp = resp
        self.was_read = True
        seen, buf = 0, b""
        try:
            with open(self.path, "ab") as out:
                for chunk in resp.stream(amt=None, decode_content=False):
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    seen = self._append(out, lines, seen)
                    if self._stop.is_set():
                        return False
                if not follow and buf:  # the very end of a finished log may lack its newline
                    self._append(out, [buf], seen)
        finally:
            self._resp = None
            resp.release_conn()
        return True

    def _follow(self) -> None:
        """Copy the log, holding an exclusive lock on the log file: when several servers of one root follow
        the same build (each re-attached after a restart), one copies and the others wait to take over."""
        with open(self.path, "ab") as lock:
            while True:
                try:
                    fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError:
                    if self._stop.wait(2.0):
                        return
            self.written = count_lines(self.path)  # what another copier wrote meanwhile
            self._copy()

    def _copy(self) -> None:
        from kubernetes.client.exceptions import ApiException

        failures = 0
        floor = self.api.config.kubernetes_log_reread_seconds
        while not self._stop.is_set():
            pod = self.cache.pod(self.namespace, self.pod)
            ended = pod is None or container_terminated(pod) is not None
            try:
                self._read(follow=not ended)
                if ended:
                    return
                failures = 0
            except ApiException as e:
                if e.status == 404:  # the pod is gone: nothing more to read
                    return
                failures += 1
                if e.status in (401, 403) and (not self.was_read or failures > self.api.config.kubernetes_api_retries + 2):
                    self._forbidden(e)
                    return
            except Exception as e:  # a dropped or timed-out stream: read again, skipping what we have
                if self._stop.is_set():
                    return
                failures += 1
                log.info("log stream of %s interrupted (%s); resuming", self.pod, describe(e))
            self._stop.wait(max(floor, min(5.0, 0.2 * (2 ** min(failures, 5)))))

    def _forbidden(self, error: BaseException) -> None:
        self.forbidden = True
        message = forbidden_message(self.pod, self.namespace, error)
        log.warning("%s", message)
        with open(self.path, "ab") as out:
            out.write(f"==> {message}\n".encode())
