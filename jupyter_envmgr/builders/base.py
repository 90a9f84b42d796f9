"""The Builder interface: run a build plan somewhere, follow it, cancel it, find it again after a restart."""
from __future__ import annotations

import abc
import json
import os
from dataclasses import dataclass
from typing import Optional

from ..recipes import BuildPaths
from ..spec import EnvSpec


@dataclass
class Build:
    """One revision being built. `handle` is what the builder needs to find it again (kept in the record)."""

    namespace: str
    name: str
    revision: int
    spec: EnvSpec
    paths: BuildPaths
    timeout: float
    handle: Optional[dict] = None
    task: Optional[object] = None  # the manager's asyncio task following it
    cluster: Optional[str] = None  # the record's cluster (Kubernetes: where the Job goes); None: the default

    @property
    def key(self) -> tuple:
        return (self.namespace, self.name, self.revision)


class Builder(abc.ABC):
    """Runs `runner.py` on a plan; the runner writes the log and `result.json` on the shared root."""

    kind = "abstract"

    @abc.abstractmethod
    async def start(self, build: Build) -> dict:
        """Launch the build; return the handle to store in the record."""

    @abc.abstractmethod
    async def wait(self, build: Build) -> dict:
        """Block until the build ends; return its result (see `read_result`)."""

    @abc.abstractmethod
    async def cancel(self, build: Build) -> None:
        """Stop the build and everything it started; idempotent."""

    @abc.abstractmethod
    def owns(self, handle: dict) -> bool:
        """Whether this server may re-attach to a build started with `handle` (same host, same cluster)."""

    def is_running(self, build: Build) -> bool:
        """After a restart: whether the build found through its handle still runs."""
        return False

    async def prepare(self) -> None:
        """Before records are reconciled at start: learn what runs (Kubernetes lists its Jobs)."""

    async def check_storage(self, namespace: Optional[str] = None, cluster: Optional[str] = None) -> None:
        """Raise EnvmgrError when the namespace's storage on `cluster` cannot take a build (the Kubernetes PVC check)."""

    async def stop(self) -> None:
        """Release resources when the server stops; running builds keep running."""

    def clusters(self) -> list:
        """Where environments are built and stored, for /info ([{"name", "namespaces"}]); empty: the one
        local place, `local`, with the server's namespaces."""
        return []

    def info(self) -> dict:
        return {}


def read_result(build: Build, default_message: str) -> dict:
    """The runner's result, or a failure saying why there is none."""
    try:
        with open(build.paths.result) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return {"status": "failed", "message": default_message, "step": None, "exit_code": None}


def clear_result(build: Build) -> None:
    try:
        os.unlink(build.paths.result)
    except FileNotFoundError:
        pass
