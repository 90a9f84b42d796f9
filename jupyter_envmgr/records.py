"""The only writer of `env.json`: lifecycle transitions applied under the record lock, off the event loop.

Every call runs the blocking store operation in a worker thread of its own pool (a lock held by
another server may take seconds; the loop never waits for it) and turns storage faults into the
API's answers (507 full, 503 read-only or busy). Each change is handed to `on_change`, which feeds
the change feed (`events.py`).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import functools
from typing import Callable, Optional

from .errors import conflict
from .spec import secrets_in
from .store import Damaged, Store, damaged_record, secret_mode, storage_error


def now() -> str:
    """The time as records say it (`created`, `updated`, `finished`)."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def secrets_of(record: dict) -> list:
    """Credentials inside the index URLs of a record and of its revisions' inputs."""
    urls = list(record.get("index_urls") or [])
    for rev in record.get("revisions", []):
        urls += rev.get("inputs", {}).get("index_urls", [])
    return secrets_in(urls)


class Records:
    def __init__(self, store: Store, on_change: Optional[Callable] = None, workers: int = 16):
        self.store = store
        self.has_secrets = lambda record: bool(secrets_of(record))
        self.on_change = on_change or (lambda namespace, name, record: None)
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="envmgr-storage")

    async def run(self, fn: Callable, *args, **kwargs):
        """Run blocking storage work in the pool; storage faults become 503/507 naming the root."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))
        except OSError as e:
            error = storage_error(e, self.store.root_of_fault(e))
            if error is None:
                raise
            raise error from None

    # ------------------------------------------------------------ reading

    async def read(self, namespace: str, name: str) -> dict:
        """The record, or a failed placeholder saying what is damaged (404 when there is nothing)."""
        try:
            record = await self.run(self.store.read, namespace, name)
        except Damaged as e:
            return damaged_record(namespace, name, e.problem)
        return await self.run(self.store.checked, namespace, record)

    async def read_for_change(self, namespace: str, name: str) -> dict:
        """The record of an environment a request wants to change; a damaged one can only be deleted."""
        try:
            return await self.run(self.store.read, namespace, name)
        except Damaged as e:
            raise conflict("damaged", damaged_record(namespace, name, e.problem)["message"]) from None

    async def list(self, namespace: str) -> list:
        return await self.run(self.store.list, namespace)

    # ------------------------------------------------------------ writing

    async def create(self, namespace: str, name: str, record: dict) -> dict:
        await self.run(self.store.create, namespace, name, record, secret_mode(self.has_secrets(record)))
        self.on_change(namespace, name, record)
        return record

    async def apply(self, namespace: str, name: str, transition: Callable[..., dict], *args) -> dict:
        """Apply `transition(record, *args)` (a lifecycle function) under the record lock; returns the new record."""
        def change(record):
            return transition(record, *args)

        try:
            record = await self.run(self.store.update, namespace, name, change,
                                    lambda r: secret_mode(self.has_secrets(r)))
        except Damaged as e:
            raise conflict("damaged", damaged_record(namespace, name, e.problem)["message"]) from None
        self.on_change(namespace, name, record)
        return record

    async def remove(self, namespace: str, name: str) -> str:
        """Rename the environment into trash/; its files are removed later by `empty_trash`."""
        path = await self.run(self.store.remove, namespace, name)
        self.on_change(namespace, name, None)
        return path

    async def empty_trash(self) -> int:
        return await self.run(self.store.empty_trash)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

