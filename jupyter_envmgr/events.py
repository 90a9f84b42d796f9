"""The change feed: every record change, made by this server or by another on the same root.

This server's own writes arrive through `publish` (from `records.py`) at once. Other servers'
changes are found by `scan`: a stat of each `env.json` (and of the serving revision's directory),
and a read only of what changed, so a pass over 1,000 environments costs milliseconds in a worker
thread. The scanned records also serve the list route, so a list never re-reads every file.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from dataclasses import dataclass
from typing import AsyncIterator, Callable, Optional

from .store import Damaged, Store, damaged_record

QUEUE_SIZE = 1000


@dataclass
class Entry:
    """One environment as last seen: its stat key, its record, and the record as clients see it (as JSON)."""

    key: Optional[tuple]
    record: dict
    text: str
    serving: Optional[str]  # the serving revision's prefix, whose disappearance a scan notices


class ChangeFeed:
    def __init__(self, store: Store, namespaces: list, run: Callable, view: Callable[[dict], dict],
                 interval: float = 1.0, log: Optional[logging.Logger] = None):
        self.store = store
        self.namespaces = list(namespaces)
        self.run = run  # runs blocking work off the loop (Records.run)
        self.view = view  # the record as clients see it: an event is sent only when this changes
        self.interval = interval
        self.log = log or logging.getLogger("jupyter_envmgr")
        self._seen: dict = {ns: {} for ns in self.namespaces}  # ns -> name -> Entry
        self._subscribers: set = set()
        self._scanning: dict = {}  # ns -> the scan in flight, shared by concurrent callers
        self._listeners: list = []  # callables(namespace, name, record or None) for other modules
        self.versions: dict = {}  # ns -> a number that changes whenever a client could see a change

    # ------------------------------------------------------------ consumers

    def listen(self, callback: Callable) -> None:
        """Call `callback(namespace, name, record_or_None)` on every change (on the loop; must not block)."""
        self._listeners.append(callback)

    @contextlib.asynccontextmanager
    async def subscribe(self, namespace: Optional[str] = None) -> AsyncIterator[asyncio.Queue]:
        """A queue of API events (dicts); a subscriber that falls QUEUE_SIZE behind gets None and is dropped."""
        queue: asyncio.Queue = asyncio.Queue(QUEUE_SIZE)
        entry = (namespace, queue)
        self._subscribers.add(entry)
        try:
            yield queue
        finally:
            self._subscribers.discard(entry)

    async def fresh(self, namespace: str) -> list:
        """The records of a namespace after a scan (shared with any scan already in flight)."""
        await self.scan(namespace)
        return [entry.record for entry in self.entries(namespace)]

    async def fresh_entries(self, namespace: str) -> list:
        """Like `fresh`, with each record's client view already serialized (a list is then a join)."""
        await self.scan(namespace)
        return self.entries(namespace)

    def entries(self, namespace: str) -> list:
        return [entry for _, entry in sorted(self._seen.get(namespace, {}).items())]

    def _store(self, namespace: str, name: str, key: Optional[tuple], record: dict) -> bool:
        """Keep what was seen; True when clients would see a difference."""
        seen = self._seen.setdefault(namespace, {})
        text = json.dumps(self.view(record))
        previous = seen.get(name)
        seen[name] = Entry(key, record, text, self._serving(namespace, record))
        return previous is None or previous.text != text

    # ------------------------------------------------------------ producers

    def publish(self, namespace: str, name: str, record: Optional[dict]) -> None:
        """This server changed a record (None: deleted it)."""
        seen = self._seen.setdefault(namespace, {})
        if record is None:
            if seen.pop(name, None) is not None:
                self._emit(namespace, name, None)
            return
        if self._store(namespace, name, None, record):  # key None: the next scan re-reads it once
            self._emit(namespace, name, record)

    async def scan(self, namespace: str) -> None:
        task = self._scanning.get(namespace)
        if task is None:
            task = self._scanning[namespace] = asyncio.ensure_future(self._scan(namespace))
            task.add_done_callback(lambda _: self._scanning.pop(namespace, None))
        await asyncio.shield(task)

    async def _scan(self, namespace: str) -> None:
        seen = self._seen.setdefault(namespace, {})
        known = {name: (entry.key, entry.serving) for name, entry in seen.items()}
        changed, gone = await self.run(self._changes, namespace, known)
        for name in gone:
            if seen.pop(name, None) is not None:
                self._emit(namespace, name, None)
        for name, (key, record) in changed.items():
            if self._store(namespace, name, key, record):
                self._emit(namespace, name, record)

    def _serving(self, namespace: str, record: dict) -> Optional[str]:
        ready = record.get("ready_revision")
        return self.store.prefix(namespace, record["name"], ready) if isinstance(ready, int) else None

    def _changes(self, namespace: str, known: dict) -> tuple:
        """Blocking: (changed {name: (key, record)}, gone [names]) against `known` {name: (key, serving prefix)}."""
        changed = {}
        names = self.store.names(namespace)
        for name in names:
            old_key, serving = known.get(name, (None, None))
            if old_key is not None and _stat_key(self.store.record_path(namespace, name), serving) == old_key:
                continue
            try:
                record = self.store.read(namespace, name)
            except Damaged as e:
                record = damaged_record(namespace, name, e.problem)
            except Exception:  # removed between the listing and the read
                continue
            record = self.store.checked(namespace, record)
            changed[name] = (_stat_key(self.store.record_path(namespace, name), self._serving(namespace, record)), record)
        present = set(names)
        return changed, [name for name in known if name not in present]

    async def watch(self) -> None:
        """Scan every namespace forever (other servers' changes arrive within `interval` + a scan)."""
        while True:
            for namespace in self.namespaces:
                try:
                    await self.scan(namespace)
                except Exception:  # a flaky mount must not end the feed
                    self.log.warning("envmgr: scanning namespace %s failed", namespace, exc_info=True)
            await asyncio.sleep(self.interval)

    def _emit(self, namespace: str, name: str, record: Optional[dict]) -> None:
        self.versions[namespace] = self.versions.get(namespace, 0) + 1
        for callback in self._listeners:
            try:
                callback(namespace, name, record)
            except Exception:
                self.log.exception("envmgr: a change listener failed")
        if record is None:
            event = {"type": "delete", "namespace": namespace, "name": name}
        else:
            event = {"type": "upsert", "environment": self.view(record)}
        for wanted, queue in list(self._subscribers):
            if wanted not in (None, namespace):
                continue
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:  # a client that stopped reading: end its stream
                self._subscribers.discard((wanted, queue))
                with contextlib.suppress(asyncio.QueueFull):
                    queue.get_nowait()
                    queue.put_nowait(None)



def _stat_key(record_path: str, serving: Optional[str]) -> tuple:
    """What changes when a record is rewritten (atomic rename: a new inode) or its serving files vanish."""
    try:
        st = os.stat(record_path)
        key: tuple = (st.st_ino, st.st_mtime_ns, st.st_size)
    except OSError:
        key = ("missing",)
    return key + ((os.path.isdir(serving),) if serving else ())
