"""A spec proposed from code: the distributions a notebook or a script needs, read with `ast`.

IPython syntax (magics, `!` shell lines, `obj?`) is first turned into plain Python by IPython's own
input transformer, so every cell parses; `%pip install` and `!pip install` lines are then calls in
the tree, read like the imports. A PEP 723 `# /// script` block adds its dependencies (kept as
written, pins included) and its `requires-python`. Import names become distributions through a
shipped table of the names that differ (data/import_names.json, each entry checked against the real
wheel by tests/corpus/check_import_names.py), then the metadata of the distributions installed here
(`top_level.txt` / `RECORD`, through importlib.metadata). What maps to nothing is listed, not guessed.
Pure and blocking: the handler runs it in a worker thread.
"""
from __future__ import annotations

import ast
import functools
import json
import os
import re
import shlex
import sys
from importlib import metadata
from typing import Iterable, Optional

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name

TABLE = os.path.join(os.path.dirname(__file__), "data", "import_names.json")
# Cell magics whose body is Python (the others: bash, html, writefile, ... are not).
PYTHON_CELL_MAGICS = {"time", "timeit", "capture", "prun", "debug", "memit", "mprun", "skip", "cython_inline"}
LAUNCHER = re.compile(r"(.*/)?python[0-9.]*|\{[^}]*\}")  # python3 -m pip, {sys.executable} -m pip
PIP = re.compile(r"(.*/)?pip[0-9.]*")
# pip install options that take a value: the value is not a requirement.
VALUED_OPTIONS = {"-r", "--requirement", "-c", "--constraint", "-i", "--index-url", "--extra-index-url",
                  "-f", "--find-links", "-t", "--target", "--prefix", "--root", "--python", "-p",
                  "--platform", "--python-version", "--implementation", "--abi", "--src", "--cache-dir",
                  "--trusted-host", "--progress-bar", "--upgrade-strategy", "--report", "--log"}
PEP723 = re.compile(r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$")
def _stdlib() -> set:
    """The standard library's top-level modules (sys.stdlib_module_names; scanned on Python < 3.10)."""
    names = getattr(sys, "stdlib_module_names", None)
    if names is None:
        import pkgutil
        import sysconfig

        names = set(sys.builtin_module_names) | {m.name for m in pkgutil.iter_modules([sysconfig.get_paths()["stdlib"]])}
    return set(names) | {"__future__", "__main__"}


STDLIB = _stdlib()
# What ast cannot read: bad syntax, null bytes (ValueError before 3.12), nesting deeper than the stack
# (RecursionError, or MemoryError from the parser of 3.11).
UNPARSABLE = (SyntaxError, ValueError, RecursionError, MemoryError)


class SuggestionError(ValueError):
    """The input is not a notebook or Python source this module can read; `field` names the culprit."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field = field


@functools.lru_cache(maxsize=1)
def table() -> dict:
    with open(TABLE) as f:
        return json.load(f)


@functools.lru_cache(maxsize=1)
def installed() -> dict:
    """{top-level module: distribution} from the installed distributions' metadata, unambiguous ones only."""
    found = {}
    for module, dists in metadata.packages_distributions().items():
        names = {canonicalize_name(d): d for d in dists}
        if len(names) == 1:
            found[module] = next(iter(names.values()))
    return found


def distribution_for(module: str) -> Optional[str]:
    """The distribution that provides `module` (a dotted import), or None."""
    parts = module.split(".")
    names = table()
    for n in range(len(parts), 0, -1):  # the most specific entry first: google.cloud.storage before google
        dist = names.get(".".join(parts[:n]))
        if dist:
            return dist
    return installed().get(parts[0])


# ---------------------------------------------------------------- reading code


def notebook_sources(notebook: object) -> list:
    """The code cells of an nbformat 4 (or 3) notebook, as strings."""
    if not isinstance(notebook, dict):
        raise SuggestionError("notebook", "must be a notebook's JSON object (nbformat 4), with a 'cells' list")
    if isinstance(notebook.get("cells"), list):
        cells, key = notebook["cells"], "source"
    elif isinstance(notebook.get("worksheets"), list):  # nbformat 3
        cells = [c for ws in notebook["worksheets"] if isinstance(ws, dict) for c in ws.get("cells") or []]
        key = "input"
    else:
        raise SuggestionError("notebook", "has no 'cells' list; send the notebook file's JSON as it is (nbformat 4)")
    sources = []
    for i, cell in enumerate(cells):
        if not isinstance(cell, dict):
            raise SuggestionError("notebook", f"cell {i} is not an object")
        if cell.get("cell_type") != "code":
            continue
        source = cell.get(key, "")
        if isinstance(source, list) and all(isinstance(s, str) for s in source):
            source = "".join(source)
        if not isinstance(source, str):
            raise SuggestionError("notebook", f"cell {i}'s {key} must be a string or a list of strings")
        sources.append(source)
    return sources


def to_python(source: str) -> str:
    """IPython syntax → plain Python (magics become get_ipython() calls)."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return TransformerManager().transform_cell(source)
    except Exception:  # IPython's transformer gives up on some broken input: the tree reader then will too
        return source


class Reader(ast.NodeVisitor):
    """Collects imports (with whether a try/except makes them optional) and pip install arguments."""

    def __init__(self):
        self.imports: dict = {}  # module -> optional
        self.pip: list = []
        self.written: set = set()  # modules a %%writefile cell creates
        self._optional = 0

    def read(self, source: str) -> None:
        code = to_python(source)
        try:
            self.visit(ast.parse(code))
        except UNPARSABLE:  # Python 2 or a broken cell: read what parses line by line
            for line in code.splitlines():
                try:
                    self.visit(ast.parse(line.strip()))
                except UNPARSABLE:
                    pass

    def add(self, module: str) -> None:
        self.imports[module] = self.imports.get(module, True) and bool(self._optional)

    def visit_Import(self, node):
        for alias in node.names:
            self.add(alias.name)

    def visit_ImportFrom(self, node):
        if node.level == 0 and node.module:  # relative imports are the notebook's own modules
            self.add(node.module)

    def visit_Try(self, node):
        guarded = any(_catches_import_error(h.type) for h in node.handlers)
        self._optional += guarded
        for child in node.body:
            self.visit(child)
        self._optional -= guarded
        for child in node.handlers + node.orelse + node.finalbody:
            self.visit(child)

    visit_TryStar = visit_Try

    def visit_Call(self, node):
        self.generic_visit(node)
        args = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name == "run_line_magic" and len(args) == 2 and args[0] == "pip":
            self.pip_line(args[0] + " " + args[1])
        elif name == "system" and len(args) == 1:
            self.pip_line(args[0])
        elif name == "run_cell_magic" and len(args) == 3:
            magic, line, body = args
            if magic in PYTHON_CELL_MAGICS:
                self.read(body)
            elif magic in ("writefile", "file"):
                target = os.path.basename(line.split()[-1]) if line.split() else ""
                if target.endswith(".py"):
                    self.written.add(target[:-3])
        elif name in ("import_module", "__import__") and args:
            self.add(args[0])

    def pip_line(self, line: str) -> None:
        """`pip install A B==1`, `python -m pip install ...`, `uv pip install ...`: requirements as written."""
        try:
            words = shlex.split(line)
        except ValueError:
            return
        while words and (words[0] in ("sudo", "-m", "uv") or LAUNCHER.fullmatch(words[0])):
            words = words[1:]
        if len(words) < 2 or not PIP.fullmatch(words[0]) or words[1] != "install":
            return
        skip = False
        for word in words[2:]:
            if skip:
                skip = False
                continue
            if word.startswith("-"):
                skip = word in VALUED_OPTIONS
                continue
            self.pip.append(word)


def _catches_import_error(node) -> bool:
    if node is None:
        return True  # a bare except
    names = node.elts if isinstance(node, ast.Tuple) else [node]
    return any(getattr(n, "id", "") in ("ImportError", "ModuleNotFoundError", "Exception") for n in names)


def script_metadata(source: str) -> dict:
    """The PEP 723 `# /// script` block of a source, parsed, or {}."""
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib

    blocks = [m for m in PEP723.finditer(source) if m.group("type") == "script"]
    if not blocks:
        return {}
    if len(blocks) > 1:
        raise SuggestionError("code", "has more than one '# /// script' block (PEP 723 allows one)")
    content = "".join(line[2:] if line.startswith("# ") else line[1:]
                      for line in blocks[0].group("content").splitlines(keepends=True))
    try:
        data = tomllib.loads(content)
    except tomllib.TOMLDecodeError as e:
        raise SuggestionError("code", f"the '# /// script' block is not valid TOML ({e})") from None
    if not isinstance(data.get("requires-python", ""), str):
        raise SuggestionError("code", "the '# /// script' block's requires-python must be a string")
    deps = data.get("dependencies", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise SuggestionError("code", "the '# /// script' block's dependencies must be a list of strings")
    return data


# ---------------------------------------------------------------- the suggestion


def suggest(sources: Iterable[str], local_modules: Iterable[str] = (), pythons: Iterable[str] = (),
            default_python: str = "") -> dict:
    """{"manager", "packages", "python", "unresolved"} for these code sources (cells or one file).

    `local_modules`: module names beside the notebook (its own .py files and packages), never
    distributions. `pythons`: the versions the server offers, to pick one a `requires-python` allows.
    """
    sources = list(sources)
    reader = Reader()
    requires: list = []
    python_spec = None
    for source in sources:
        data = script_metadata(source)
        if data:
            requires += data.get("dependencies", [])
            python_spec = data.get("requires-python") or python_spec
        reader.read(source)
    requires += reader.pip
    local = {m.split(".")[0] for m in local_modules} | reader.written

    wanted: dict = {}  # canonical name -> requirement text (the first one that pins wins)
    for text in requires:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue  # a URL, a path, an {interpolated} name: not something to propose
        key = canonicalize_name(req.name)
        if key not in wanted or (req.specifier and not Requirement(wanted[key]).specifier):
            wanted[key] = str(req)
    unresolved = []
    for module, optional in sorted(reader.imports.items()):
        top = module.split(".")[0]
        if top in STDLIB or top in local or not top.isidentifier():
            continue
        dist = distribution_for(module) or (top if canonicalize_name(top) in wanted else None)
        if dist is None:
            if not optional and top not in unresolved:
                unresolved.append(top)
            continue
        wanted.setdefault(canonicalize_name(dist), dist)
    packages = "".join(line + "\n" for _, line in sorted(wanted.items()))
    return {"manager": "pip", "packages": packages, "python": pick_python(python_spec, pythons, default_python),
            "unresolved": unresolved}


def pick_python(requires: Optional[str], offered: Iterable[str], default: str) -> Optional[str]:
    """The X.Y a `requires-python` asks for among those offered (the default when it fits), else None."""
    if not requires:
        return None
    try:
        spec = SpecifierSet(requires)
    except InvalidSpecifier:
        raise SuggestionError("code", f"requires-python {requires!r} is not a version specifier") from None
    short = sorted({".".join(v.split(".")[:2]) for v in offered}, key=lambda v: tuple(int(p) for p in v.split(".")))
    fits = [v for v in short if spec.contains(v + ".0", prereleases=True) or spec.contains(v, prereleases=True)]
    if default in fits:
        return default
    return fits[-1] if fits else None


def from_body(body: dict, pythons: Iterable[str] = (), default_python: str = "") -> dict:
    """The request body of POST /suggestions → the suggestion; SuggestionError names the bad field."""
    if not isinstance(body, dict):
        raise SuggestionError("notebook", "send a JSON object: {\"notebook\": <nbformat JSON>} or {\"code\": \"<python source>\"}")
    unknown = sorted(set(body) - {"notebook", "code", "local_modules"})
    if unknown:
        raise SuggestionError(unknown[0], "is not a field of a suggestions request; send notebook or code (and optionally local_modules)")
    if ("notebook" in body) == ("code" in body):
        raise SuggestionError("notebook", "send exactly one of notebook (nbformat JSON) or code (Python source)")
    local = body.get("local_modules", [])
    if not isinstance(local, list) or not all(isinstance(m, str) for m in local):
        raise SuggestionError("local_modules", "must be a list of module names")
    if "code" in body:
        if not isinstance(body["code"], str):
            raise SuggestionError("code", "must be a string of Python source")
        sources = [body["code"]]
    else:
        sources = notebook_sources(body["notebook"])
    return suggest(sources, local, pythons, default_python)

