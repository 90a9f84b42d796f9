"""One API client per cluster, and `call`/`acall`: one request, bounded in time, retried with exponential
backoff on connection errors, time-outs, 429 and 5xx; when the retries run out, EnvmgrError(503)."""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Callable

from ...errors import EnvmgrError
from .config import Cluster, in_cluster

log = logging.getLogger("jupyter_envmgr.kubernetes")

RETRY_STATUSES = {0, 429, 500, 502, 503, 504}


def describe(error: BaseException) -> str:
    """An API error or a connection problem as one line."""
    status = getattr(error, "status", None)
    if status is not None and hasattr(error, "reason"):
        body = getattr(error, "body", None)
        detail = ""
        if body:
            try:
                detail = json.loads(body).get("message", "")
            except (ValueError, AttributeError):
                detail = str(body)[:200]
        return f"HTTP {status} {error.reason}" + (f": {detail}" if detail else "")
    text = str(error).strip()
    return f"{type(error).__name__}" + (f": {text[:300]}" if text else "")


class KubeApi:
    """The API of one cluster (its kubeconfig context, or the in-cluster service account)."""

    def __init__(self, config, cluster: Cluster):
        from kubernetes import client
        from kubernetes import config as kubeconfig

        self.config = config
        self.cluster = cluster
        cfg = client.Configuration()
        try:
            if not cluster.context and in_cluster():
                kubeconfig.load_incluster_config(client_configuration=cfg)
            else:
                kubeconfig.load_kube_config(config_file=cluster.config_file or None, context=cluster.context or None,
                                            client_configuration=cfg, persist_config=False)
        except Exception as e:  # no kubeconfig, unknown context, bad file
            raise EnvmgrError(503, "unavailable", f"the Kubernetes configuration of cluster {cluster.name!r} could not "
                              f"be loaded ({describe(e)}); set its context in c.EnvManagerApp.clusters (or "
                              "kubernetes_context / kubernetes_config_file), or run in a pod") from None
        cfg.retries = False  # our own bounded retries are the only ones
        self.host = cfg.host
        self.client = client.ApiClient(cfg)
        self.core = client.CoreV1Api(self.client)
        self.batch = client.BatchV1Api(self.client)

    @property
    def timeout(self) -> tuple:
        t = self.config.kubernetes_api_timeout
        return (t, t)

    def delays(self):
        for attempt in range(self.config.kubernetes_api_retries):
            yield min(10.0, self.config.kubernetes_api_retry_backoff * (2 ** attempt))

    def patience(self) -> float:
        """How long all attempts of one call may take."""
        return (self.config.kubernetes_api_retries + 1) * 2 * self.config.kubernetes_api_timeout + sum(self.delays())

    @staticmethod
    def transient(error: BaseException) -> bool:
        import urllib3
        from kubernetes.client.exceptions import ApiException

        if isinstance(error, ApiException):
            return error.status in RETRY_STATUSES
        return isinstance(error, (urllib3.exceptions.HTTPError, OSError, TimeoutError))

    def once(self, fn: Callable, *args, **kwargs):
        resp = fn(*args, _preload_content=False, _request_timeout=self.timeout, **kwargs)
        try:
            data = resp.data
        finally:
            resp.release_conn()
        return json.loads(data) if data else {}

    def unavailable(self, what: str, error: BaseException) -> EnvmgrError:
        return EnvmgrError(
            503, "unavailable",
            f"the Kubernetes API of cluster {self.cluster.name!r} ({self.host}) did not answer ({what}) after "
            f"{self.config.kubernetes_api_retries + 1} attempts: {describe(error)}; check the cluster and its context",
        )

    def call(self, what: str, fn: Callable, *args, **kwargs):
        """Blocking: for threads. Non-transient API errors (404, 409, 403...) are raised as they are."""
        delays = self.delays()
        while True:
            try:
                return self.once(fn, *args, **kwargs)
            except Exception as e:
                time.sleep(self.retry_delay(what, e, delays))

    async def acall(self, what: str, fn: Callable, *args, **kwargs):
        delays = self.delays()
        while True:
            try:
                return await asyncio.to_thread(self.once, fn, *args, **kwargs)
            except Exception as e:
                await asyncio.sleep(self.retry_delay(what, e, delays))

    def retry_delay(self, what: str, error: Exception, delays) -> float:
        """How long to wait before retrying after `error`; raises it (or 503) when it is not worth a retry."""
        if not self.transient(error):
            raise error
        delay = next(delays, None)
        if delay is None:
            raise self.unavailable(what, error) from None
        log.warning("kubernetes API %s failed (%s); retrying in %.1fs", what, describe(error), delay)
        return delay

    def close(self) -> None:
        self.client.close()


def iter_lines(resp):
    """Lines of a streamed (chunked) response as they arrive."""
    buf = b""
    for chunk in resp.stream(amt=None, decode_content=False):
        buf += chunk
        *lines, buf = buf.split(b"\n")
        yield from lines
    if buf:
        yield buf


def abort(resp) -> None:
    """Unblock a thread reading `resp` and drop its connection."""
    if resp is None:
        return
    for method in ("shutdown", "close"):
        try:
            getattr(resp, method)()
        except Exception:
            pass
