"""requirements.txt as pip reads it: logical lines (continuations, comments, `${VAR}`), classified so that
policy can judge each one and uv gets exactly the judged text (never the raw text)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

from packaging.requirements import InvalidRequirement, Requirement

from .errors import EnvmgrError, invalid
from .spec import short


NAME_AND_EXTRAS_RE = re.compile(r"\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*")
OPERATORS = ("===", "==", "~=", "!=", "<=", ">=", "<", ">")


def bare_operator(req_text: str) -> Optional[tuple]:
    """(name, operator) of a version operator followed by no version (`numpy===`, `pandas>=1,<`), else None."""
    head = req_text.split(";", 1)[0]
    match = NAME_AND_EXTRAS_RE.match(head)
    if not match or "@" in head:
        return None
    for clause in head[match.end():].split(","):
        if clause.strip() in OPERATORS:
            return match.group("name"), clause.strip()
    return None


@dataclass
class RequirementLine:
    """One logical line of a requirements.txt, classified so that policy can judge it.

    `text` is the line as uv will get it (comments dropped, continuations joined, `${VAR}` expanded,
    hashes normalized): the build installs exactly the lines that were judged, never the raw text.
    """

    lineno: int
    text: str
    kind: str  # "requirement", "option", "url" (direct URL), "path" (local file or dir)
    requirement: Optional[Requirement] = None
    target: str = ""  # "path": the file or directory it installs from; "option": the option's argument
    option: str = ""  # "option": its long name (--index-url for -i); requirement: a per-line option other than --hash
    hashes: list = field(default_factory=list)  # ["sha256:<hex>", ...]

    def __post_init__(self):
        if self.kind == "path" and not self.target:
            self.target = self.requirement.url if self.requirement else self.text


#: pip's own rule: a comment starts at '#' at the line's start or after white space, and ends at the line's end.
COMMENT_RE = re.compile(r"(?:\A|\s)#.*\Z", re.DOTALL)
#: pip expands ${NAME} (upper case, digits, '_'); we expand it from the spec's env_vars.
ENV_REF_RE = re.compile(r"\$\{([A-Z0-9_]+)\}")
#: A requirement that ends so is a file to install, whatever else it looks like (pip and uv agree).
ARCHIVES = (".whl", ".tar.gz", ".tgz", ".tar.bz2", ".tbz", ".tar.xz", ".txz", ".tar", ".zip")
HASH_RE = re.compile(r"\A(?:sha256|sha384|sha512|sha224|sha1|md5):[0-9a-fA-F]+\Z")
#: Short option names pip accepts in requirements files, as their long names (what policy lists).
SHORT_OPTIONS = {"-i": "--index-url", "-r": "--requirement", "-c": "--constraint", "-e": "--editable",
                 "-f": "--find-links"}
#: Options that take an argument (pip's requirements-file options).
VALUE_OPTIONS = {"--index-url", "--extra-index-url", "--requirement", "--constraint", "--editable",
                 "--find-links", "--no-binary", "--only-binary", "--trusted-host", "--use-feature",
                 "--config-settings", "--global-option", "--install-option", "--hash"}


def logical_lines(text: str):
    """(first line number, text) of each logical line, as pip reads them.

    A comment is cut from its own physical line first, so a `\\` inside a comment continues
    nothing: `# note \\` followed by `--index-url ...` is a comment and then an option line.
    """
    parts: list = []
    start = 0
    for lineno, raw in enumerate(text.splitlines(), 1):
        if "\0" in raw:
            raise invalid("packages", f"line {lineno} contains a NUL byte; remove it")
        line = COMMENT_RE.sub("", raw)
        if not parts:
            start = lineno
        if line.endswith("\\") and line == raw:
            parts.append(line[:-1])
            continue
        parts.append(line)
        joined, parts = "".join(parts).strip(), []
        if joined:
            yield start, joined
    if parts and "".join(parts).strip():
        yield start, "".join(parts).strip()


def expand_variables(lineno: int, line: str, variables: dict) -> str:
    def value(m):
        if m[1] not in variables:
            raise invalid("packages", f"line {lineno}: ${{{m[1]}}} is not set; define {m[1]} in env_vars or write "
                                      "the value itself")
        return variables[m[1]]

    line = ENV_REF_RE.sub(value, line)
    if "${" in line:  # what we did not expand, uv must not expand from the build's environment either
        raise invalid("packages", f"line {lineno}: only ${{NAME}} references with upper-case letters, digits and '_' "
                                  "are expanded (from env_vars); write the value itself")
    return line


def parse_requirements(text: str, variables: Optional[dict] = None) -> list:
    """Split requirements.txt text into classified logical lines, refusing what does not parse."""
    return [_classify(lineno, expand_variables(lineno, line, variables or {}))
            for lineno, line in logical_lines(text)]


def normalized_requirements(lines: list) -> str:
    """The text uv gets: the judged lines, one per line, nothing else."""
    return "".join(line.text + "\n" for line in lines)


def _split_option(tokens: list) -> tuple:
    """(long option name, its argument or "", tokens left) of `--opt=v`, `--opt v`, `-o v`, `-ov`."""
    first = tokens[0]
    if first.startswith("--"):
        name, eq, value = first.partition("=")
    else:
        name, value = first[:2], first[2:]
        eq = "=" if value else ""
        if value.startswith("="):
            value = value[1:]
    name = SHORT_OPTIONS.get(name, name)
    rest = tokens[1:]
    if name in VALUE_OPTIONS and not eq:
        if not rest:
            raise invalid("packages", f"{name} needs a value")
        value, rest = rest[0], rest[1:]
    return name, value, rest


#: `name [extras] @ location` (PEP 508); a bare URL's `user@host` is not this, as no name holds "://".
NAMED_LOCATION_RE = re.compile(r"\s*[A-Za-z0-9][A-Za-z0-9._-]*\s*(?:\[[^\]]*\])?\s*@\s*(?P<location>\S+)")


def _location(req_text: str) -> str:
    """Where a requirement installs from: the URL or path after `name @`, or the text itself (a bare URL or
    path), without its marker; the name of a plain requirement (nothing to locate) is returned as it is."""
    head = req_text.split(";", 1)[0].strip()
    m = NAMED_LOCATION_RE.match(head)
    return m["location"] if m else head


def identify(text: str, limit: int = 80) -> str:
    """A requirement line quoted in a message: whole when short; else its name, the URL's host and the file it
    names, with the middle of the URL cut (the file or distribution name is what tells a reader which line);
    credentials in a URL are never quoted."""
    from urllib.parse import urlsplit

    from .spec import redact_url

    text = text.split(" --hash=", 1)[0]
    head, semi, marker = text.partition(";")
    location = _location(head)
    redacted = redact_url(location) if "://" in location else location
    quoted = head.replace(location, redacted, 1).strip() + (f" ;{marker}" if semi else "")
    if len(repr(quoted)) <= limit:
        return repr(quoted)
    name = head[: head.find(location)].strip() if location in head else ""  # "flask @" or ""
    try:
        parts = urlsplit(redacted)
        start, path = f"{parts.scheme}://{parts.netloc}" if parts.scheme else "", parts.path
    except ValueError:
        start, path = "", redacted
    file = path.rstrip("/").rpartition("/")[2] or path
    egg = re.search(r"egg=([A-Za-z0-9._-]+)", location)
    middle = "/…/" if path.strip("/").count("/") else "/"
    cut = f"{start}{middle}{file}" if start else (f"…/{file}" if "/" in path else file)
    cut += f"#egg={egg[1]}" if egg else ""
    marker = marker.strip() if len(marker.strip()) <= 30 else marker.strip()[:30] + "…"
    kept = " ".join(p for p in (name, cut) if p) + (f" ; {marker}" if semi else "")
    return repr(kept) if len(repr(kept)) <= limit + 40 else short(kept, limit)


def _classify(lineno: int, line: str) -> RequirementLine:
    tokens = line.split()
    line = " ".join(tokens)  # one line whatever an expanded variable held
    # pip's break_args_options: the requirement is everything before the first token starting with '-'.
    cut = next((i for i, t in enumerate(tokens) if t.startswith("-")), len(tokens))
    args, opts = tokens[:cut], tokens[cut:]
    if not args:
        try:
            name, value, rest = _split_option(opts)
        except EnvmgrError as e:
            raise invalid("packages", f"line {lineno}: {e.message.partition(': ')[2]}") from None
        text = f"{name} {value}".strip() if not rest else line
        if name == "--editable" and value.startswith(("/", ".", "~", "file:")):
            return RequirementLine(lineno, text, "path", target=value, option=name)
        if name == "--editable" and "://" in value:  # -e git+https://...: a direct URL, judged as one
            return RequirementLine(lineno, text, "url", target=value, option=name)
        return RequirementLine(lineno, text, "option", target=value, option=name)
    req_text = " ".join(args)
    hashes, other = [], ""
    while opts:
        try:
            name, value, opts = _split_option(opts)
        except EnvmgrError as e:
            raise invalid("packages", f"line {lineno}: {e.message.partition(': ')[2]}") from None
        if name != "--hash":
            other = other or name
            continue
        if not HASH_RE.fullmatch(value):
            raise invalid("packages", f"line {lineno}: --hash={value} is not a hash; write --hash=sha256:<hex digest>")
        hashes.append(value.lower())
    text = req_text + "".join(f" --hash={h}" for h in hashes)
    if other:
        return RequirementLine(lineno, line, "option", target=req_text, option=other)
    if req_text.startswith((".", "/", "~", "file:")):
        return RequirementLine(lineno, text, "path", target=req_text, hashes=hashes)
    if "://" in req_text.split("@")[0]:
        return RequirementLine(lineno, text, "url", target=req_text, hashes=hashes)
    location = _location(req_text)
    # `evil-1.0-py3-none-any.whl` or `x @ ./x.whl`: a file where the build runs. `flask @ https://…/x.whl` is a
    # direct URL whatever file it names, and is parsed below like any named URL (its name counts as requested).
    if "://" not in location and location.lower().endswith(ARCHIVES):
        return RequirementLine(lineno, text, "path", target=location, hashes=hashes)
    bare = bare_operator(req_text)
    if bare:  # some packaging versions take `numpy===`; no installer finds a version equal to nothing
        name, operator = bare
        raise invalid("packages", f"line {lineno}: {short(req_text)} has {operator} with no version; write e.g. "
                                  f"'{name}{operator}1.2' or just '{name}'")
    try:
        req = Requirement(req_text)
    except InvalidRequirement as e:
        why = str(e).splitlines()[0] if str(e) else "not PEP 508"  # packaging adds the line and a caret below
        raise invalid("packages", f"line {lineno}: {short(req_text)} is not a requirement ({why}); write e.g. 'numpy>=2' or "
                                  "'pandas==2.2.*'") from None
    if req.url:
        kind = "path" if req.url.startswith("file:") else "url"
        return RequirementLine(lineno, text, kind, req, hashes=hashes)
    return RequirementLine(lineno, text, "requirement", req, hashes=hashes)


def requirement_names(text: str) -> set:
    from packaging.utils import canonicalize_name

    return {canonicalize_name(l.requirement.name) for l in parse_requirements(text) if l.requirement}


# ---------------------------------------------------------------- secrets
