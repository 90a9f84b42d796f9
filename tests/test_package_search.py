"""The form's package search: names and versions from a real index on 127.0.0.1 that the test serves
(a PEP 503 HTML index, and the same projects through PEP 691 JSON), through GET /package-search."""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from jupyter_envmgr.package_search import PackageSearch, version_of

PROJECTS = {
    "pandas": ["pandas-2.2.2-py3-none-any.whl", "pandas-2.2.3-py3-none-any.whl", "pandas-2.10.0.tar.gz",
               "pandas-3.0.0rc1-py3-none-any.whl"],
    "pandas-stubs": ["pandas_stubs-2.2.3.241126-py3-none-any.whl"],
    "pandera": ["pandera-0.20.4-py3-none-any.whl"],
    "panel": ["panel-1.5.4-py3-none-any.whl"],
    "numpy": ["numpy-2.1.3-py3-none-any.whl"],
    "brand-new": ["brand_new-1.0a1-py3-none-any.whl"],
}
YANKED = {"pandas-2.10.0.tar.gz"}


class Index:
    """A simple index: `/simple/` lists projects, `/simple/<name>/` their files; JSON when asked (`json=True`)."""

    def __init__(self, json_api=False, delay=0.0):
        self.requests = []
        self.delay = delay
        index = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                index.requests.append(self.path)
                time.sleep(index.delay)
                parts = [p for p in self.path.split("?")[0].split("/") if p]
                wants_json = json_api and "application/vnd.pypi.simple.v1+json" in self.headers.get("Accept", "")
                if parts == ["simple"]:
                    if wants_json:
                        return self.answer({"meta": {"api-version": "1.0"}, "projects": [{"name": n} for n in PROJECTS]})
                    return self.answer("".join(f'<a href="/simple/{n}/">{n}</a>\n' for n in PROJECTS))
                if len(parts) == 2 and parts[0] == "simple" and parts[1] in PROJECTS:
                    files = PROJECTS[parts[1]]
                    if wants_json:
                        return self.answer({"meta": {"api-version": "1.0"}, "name": parts[1],
                                            "files": [{"filename": f, "url": f"/files/{f}", "hashes": {}, "yanked": f in YANKED} for f in files]})
                    yanked = {f: ' data-yanked=""' if f in YANKED else "" for f in files}
                    return self.answer("".join(f'<a href="/files/{f}#sha256=00"{yanked[f]}>{f}</a>\n' for f in files))
                self.send_error(404)

            def answer(self, body):
                data = (json.dumps(body) if isinstance(body, dict) else f"<!DOCTYPE html><html><body>{body}</body></html>").encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/vnd.pypi.simple.v1+json" if isinstance(body, dict) else "text/html")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/simple"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture(params=["html", "json"])
def index(request):
    served = Index(json_api=request.param == "json")
    yield served
    served.close()


def test_versions_from_file_names():
    assert str(version_of("pandas_stubs-2.2.3.241126-py3-none-any.whl")) == "2.2.3.241126"
    assert str(version_of("pandas-2.10.0.tar.gz")) == "2.10.0"
    assert version_of("README.txt") is None


def test_exact_name_first_then_names_that_start_with_it(index):
    found = PackageSearch(index.url).search_sync("pand")
    assert [p["name"] for p in found] == ["pandas", "pandas-stubs", "pandera"]  # "pand" itself is no project
    pandas = PackageSearch(index.url).search_sync("Pandas")[0]
    # newest final first; the yanked 2.10.0 and the release candidate left out
    assert pandas == {"name": "pandas", "versions": ["2.2.3", "2.2.2"]}
    # a project with nothing but pre-releases still offers them
    assert PackageSearch(index.url).search_sync("brand_new") == [{"name": "brand-new", "versions": ["1.0a1"]}]
    assert PackageSearch(index.url).search_sync("zzz-nothing") == []


def test_answers_are_cached(index):
    search = PackageSearch(index.url)
    search.search_sync("pan")
    asked = len(index.requests)
    assert search.search_sync("pan") == search.search_sync("pan")
    assert len(index.requests) == asked  # typing on asks the index nothing it already answered


def test_a_slow_index_is_bounded_in_time():
    slow = Index(delay=3.0)
    try:
        started = time.monotonic()
        with pytest.raises(Exception) as info:
            PackageSearch(slow.url, timeout=0.5, deadline=1.0).search_sync("pandas")
        assert time.monotonic() - started < 2.5
        assert "could not be read" in str(info.value)
    finally:
        slow.close()


@pytest.fixture
def searched_index(monkeypatch):
    served = Index()
    monkeypatch.setenv("UV_DEFAULT_INDEX", served.url)
    yield served
    served.close()


async def test_the_route_searches_the_index_the_builds_use(api, searched_index):
    status, body = await api.call("GET", "package-search", q="pan")
    assert status == 200, body
    assert body["index"] == searched_index.url + "/"
    assert [p["name"] for p in body["packages"]] == ["pandas", "pandas-stubs", "pandera", "panel"]
    assert body["packages"][0]["versions"][0] == "2.2.3"
    status, body = await api.call("GET", "package-search", q="p")
    assert status == 422 and body["field"] == "q" and "at least 2" in body["message"]
    status, body = await api.call("GET", "package-search", q="../etc")
    assert status == 422


async def test_the_route_says_when_no_index_is_configured(api, monkeypatch):
    for var in ("UV_DEFAULT_INDEX", "UV_INDEX_URL", "PIP_INDEX_URL"):
        monkeypatch.delenv(var, raising=False)
    status, body = await api.call("GET", "package-search", q="pandas")
    assert status == 503 and body["reason"] == "no_index" and "UV_DEFAULT_INDEX" in body["message"]
