"""Names and versions from the package index the builds use, for the form's search while typing.

The index is read through its simple API (PEP 691 JSON when it offers it, else PEP 503 HTML): the
project page of the typed name, and the index's list of projects for names that start with it. Every
request is bounded in time and size and runs in a worker thread; answers are cached for a while, so a
user typing `pan`, `pand`, `panda` costs the index one list and a few project pages.
"""
from __future__ import annotations

import asyncio
import html
import json
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from typing import Optional

from packaging.utils import InvalidSdistFilename, InvalidWheelFilename, parse_sdist_filename, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from .errors import EnvmgrError

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
ACCEPT = f"{JSON_TYPE}, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def normalize(name: str) -> str:
    """PEP 503 normalized name."""
    return re.sub(r"[-_.]+", "-", name).lower()


class _Links(HTMLParser):
    """The anchors of a simple page: (text, href, yanked)."""

    def __init__(self):
        super().__init__()
        self.links: list = []
        self._attrs: Optional[dict] = None
        self._text: list = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self._attrs = dict(attrs)
            self._text = []

    def handle_data(self, data):
        if self._attrs is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag == "a" and self._attrs is not None:
            self.links.append(("".join(self._text).strip(), self._attrs.get("href") or "",
                               "data-yanked" in self._attrs))
            self._attrs = None


def version_of(filename: str) -> Optional[Version]:
    """The version a distribution file carries (a wheel or an sdist), None for anything else."""
    try:
        if filename.endswith(".whl"):
            return parse_wheel_filename(filename)[1]
        for ext in (".tar.gz", ".zip", ".tar.bz2"):
            if filename.endswith(ext):
                return parse_sdist_filename(filename if ext != ".tar.bz2" else filename[:-8] + ".tar.gz")[1]
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None
    return None


def newest_first(versions) -> list:
    """Final releases newest first; pre-releases only when a project has nothing else."""
    unique = sorted(set(versions), reverse=True)
    final = [v for v in unique if not v.is_prerelease and not v.is_devrelease]
    return [str(v) for v in (final or unique)]


class PackageSearch:
    """Search one index. `fetch` timeouts and the overall `deadline` bound every answer."""

    def __init__(self, index_url: str, timeout: float = 4.0, deadline: float = 6.0, ttl: float = 600.0,
                 max_bytes: int = 64 << 20, limit: int = 8, max_versions: int = 20):
        self.index_url = index_url.rstrip("/") + "/"
        self.shown_url = redacted(self.index_url)
        self.timeout = timeout
        self.deadline = deadline
        self.ttl = ttl
        self.max_bytes = max_bytes
        self.limit = limit
        self.max_versions = max_versions
        self._cache: dict = {}  # url -> (time, value)
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- HTTP, in worker threads

    def _get(self, url: str, until: float):
        """(content type, body) of `url`, None on 404; bounded by the timeout and what is left of `until`."""
        left = min(self.timeout, until - time.monotonic())
        if left <= 0:
            raise TimeoutError(url)
        request = urllib.request.Request(url, headers={"Accept": ACCEPT, "User-Agent": "jupyter-envmgr package search"})
        try:
            with urllib.request.urlopen(request, timeout=left) as response:
                body = response.read(self.max_bytes + 1)
                if len(body) > self.max_bytes:
                    raise EnvmgrError(502, "index_too_large", f"the package index answered more than {self.max_bytes} bytes for {redacted(url)}")
                return response.headers.get("Content-Type", ""), body
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise

    def _cached(self, url: str, until: float, parse):
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(url)
            if hit and now - hit[0] < self.ttl:
                return hit[1]
        answer = self._get(url, until)
        value = None if answer is None else parse(*answer)
        with self._lock:
            self._cache[url] = (time.monotonic(), value)
            if len(self._cache) > 2048:  # bounded: drop the oldest half
                for key, _ in sorted(self._cache.items(), key=lambda kv: kv[1][0])[:1024]:
                    del self._cache[key]
        return value

    @staticmethod
    def _parse_project(content_type: str, body: bytes) -> list:
        if content_type.startswith(JSON_TYPE):
            data = json.loads(body)
            files = [(f.get("filename", ""), bool(f.get("yanked"))) for f in data.get("files", [])]
            versions = [Version(v) for v in data.get("versions", []) if _valid(v)] if not files else []
        else:
            parser = _Links()
            parser.feed(body.decode("utf-8", "replace"))
            files = [(html.unescape(text) or urllib.parse.unquote(href.split("#")[0].rsplit("/", 1)[-1]), yanked)
                     for text, href, yanked in parser.links]
            versions = []
        for filename, yanked in files:
            version = None if yanked else version_of(filename)
            if version is not None:
                versions.append(version)
        return newest_first(versions)

    @staticmethod
    def _parse_root(content_type: str, body: bytes) -> list:
        if content_type.startswith(JSON_TYPE):
            return sorted({normalize(p["name"]) for p in json.loads(body).get("projects", []) if p.get("name")})
        parser = _Links()
        parser.feed(body.decode("utf-8", "replace"))
        return sorted({normalize(text) for text, _, _ in parser.links if text})

    def versions(self, name: str, until: float) -> Optional[list]:
        return self._cached(self.index_url + normalize(name) + "/", until, self._parse_project)

    def projects(self, until: float) -> Optional[list]:
        return self._cached(self.index_url, until, self._parse_root)

    def search_sync(self, query: str) -> list:
        """Projects named `query` or starting with it (the exact name first), with their versions newest first."""
        until = time.monotonic() + self.deadline
        key = normalize(query)
        found: list = []
        try:
            exact = self.versions(key, until)
        except (OSError, ValueError, TimeoutError) as e:
            raise EnvmgrError(503, "index_unreachable", f"the package index {self.shown_url} could not be read: {_why(e)}") from None
        if exact:
            found.append({"name": key, "versions": exact[: self.max_versions]})
        try:
            names = self.projects(until) or []
        except (OSError, ValueError, TimeoutError):
            names = []  # an index without a project list (or a slow one) still answers the exact name
        for name in names:
            if len(found) >= self.limit or time.monotonic() >= until:
                break
            if name.startswith(key) and name != key:
                try:
                    versions = self.versions(name, until)
                except (OSError, ValueError, TimeoutError):
                    break
                if versions:
                    found.append({"name": name, "versions": versions[: self.max_versions]})
        return found

    async def search(self, query: str) -> list:
        """`search_sync` in a worker thread: the event loop never waits on the index."""
        if not NAME_RE.fullmatch(query or "") or len(query) < 2:
            raise EnvmgrError(422, "invalid_field", "q: type at least 2 characters of a package name (letters, digits, '.', '_', '-')", "q")
        return await asyncio.to_thread(self.search_sync, query)


def redacted(url: str) -> str:
    """`url` with any credentials shown as ***."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def _valid(version: str) -> bool:
    try:
        Version(version)
        return True
    except InvalidVersion:
        return False


def _why(error: Exception) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    if isinstance(error, TimeoutError):
        return "no answer in time"
    return str(error) or type(error).__name__


def configured_index(settings: dict, environ: dict) -> str:
    """The index the builds resolve from: the app's setting if it has one, else uv's and pip's own variables."""
    for url in (settings.get("envmgr_package_index"), environ.get("UV_DEFAULT_INDEX"), environ.get("UV_INDEX_URL"),
                environ.get("PIP_INDEX_URL")):
        if url:
            return url
    return ""
