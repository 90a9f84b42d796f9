"""What an administrator allows: index URLs, requirement option lines, direct URLs, source installs, limits.

Policy is plain data (built from the app's traits) so that it can be checked before anything is written.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Iterable, Optional

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from .errors import EnvmgrError, forbidden, invalid
from .requirements import SHORT_OPTIONS, identify, parse_requirements
from .spec import EnvSpec, check_index_urls, redact_url, short

#: Requirement-file options whose argument is an index (checked like index_urls when allowed).
URL_OPTIONS = {"--index-url", "--extra-index-url", "--find-links"}
#: Options whose argument is a file on the server (only under allowed_source_dirs when allowed).
FILE_OPTIONS = {"--requirement", "--constraint"}
MAX_INCLUDE_DEPTH = 5


#: What kernels need of base packages, whatever the administrator lists.
KERNEL_MINIMUMS = {"ipykernel": ">=6"}


def _overlap(a: SpecifierSet, b: SpecifierSet) -> bool:
    """Whether some version satisfies both sets: probe the versions they mention and their neighbours."""
    probes = set()
    for spec in list(a) + list(b):
        try:
            v = Version(spec.version.rstrip(".*"))
        except InvalidVersion:
            continue
        major, minor, micro = (list(v.release) + [0, 0])[:3]
        probes |= {v, Version(f"{major}.{minor}.{micro + 1}"), Version(f"{major}.{minor + 1}"), Version(f"{major + 1}")}
        if micro:
            probes.add(Version(f"{major}.{minor}.{micro - 1}"))
        if minor:
            probes.add(Version(f"{major}.{minor - 1}.999"))
        if major:
            probes.add(Version(f"{major - 1}.999"))
    probes |= {Version(str(n)) for n in range(0, 40)}
    return any(a.contains(p, prereleases=True) and b.contains(p, prereleases=True) for p in probes)


@dataclass
class Policy:
    allowed_index_urls: list = field(default_factory=list)  # URL prefixes; empty allows any http(s) index
    allowed_requirement_options: list = field(default_factory=list)  # e.g. ["--pre", "--only-binary"]
    allow_direct_urls: bool = False
    allowed_source_dirs: list = field(default_factory=list)
    max_environments: int = 200
    max_concurrent_builds: int = 2
    max_packages_bytes: int = 65536
    base_packages: dict = field(default_factory=lambda: {"pip": ["ipykernel"], "conda": ["python", "ipykernel"]})

    def limits(self) -> dict:
        return {
            "max_environments": self.max_environments,
            "max_concurrent_builds": self.max_concurrent_builds,
            "max_packages_bytes": self.max_packages_bytes,
        }

    # ------------------------------------------------------------ checks

    def check_index_urls(self, urls: Iterable[str], fieldname: str = "index_urls") -> None:
        if not self.allowed_index_urls:
            return
        for url in urls:
            if not any(url.startswith(prefix) or redact_url(url).startswith(prefix) for prefix in self.allowed_index_urls):
                raise forbidden(
                    fieldname,
                    f"{redact_url(url)} is not an allowed package index; allowed: "
                    f"{', '.join(self.allowed_index_urls)} (an administrator sets c.EnvManagerApp.allowed_index_urls)",
                )

    def check_requirement_lines(self, text: str, fieldname: str = "packages", variables: Optional[dict] = None,
                                _seen: tuple = ()) -> list:
        """Parse pip requirement text and refuse lines the policy does not allow; returns the judged lines.

        An allowed `-r FILE` is read here and replaced by its judged lines, so uv never opens a file the
        policy did not see; an allowed `-c FILE` stays (constraints cannot be inlined) but its lines are judged.
        """
        lines = parse_requirements(text, variables)
        allowed = {SHORT_OPTIONS.get(o.split("=")[0], o.split("=")[0]) for o in self.allowed_requirement_options}
        judged = []
        for line in lines:
            where = f"line {line.lineno}: {identify(line.text) if line.kind in ('url', 'path') else short(line.text)}"
            if line.kind == "option":
                if line.option not in allowed:
                    raise forbidden(
                        fieldname,
                        f"{where}: option lines such as {line.option} are not allowed here; list packages only, "
                        "put extra indexes in index_urls (an administrator may allow options with "
                        "c.EnvManagerApp.allowed_requirement_options)",
                    )
                if line.option in URL_OPTIONS:
                    try:
                        check_index_urls([line.target])
                    except EnvmgrError as e:
                        raise invalid(fieldname, f"line {line.lineno}: {e.message.partition(': ')[2]}") from None
                    self.check_index_urls([line.target], fieldname)
                elif line.option in FILE_OPTIONS:
                    self.check_source_path(line.target, fieldname, f"line {line.lineno}")
                    included = self._included(line, fieldname, variables, _seen)
                    if line.option == "--requirement":
                        judged += included
                        continue
            elif line.kind == "url" and not self.allow_direct_urls:
                raise forbidden(
                    fieldname,
                    f"{where}: installs from a direct URL are not allowed on this server; use a package name and "
                    "put its index in index_urls (an administrator may allow direct URLs with "
                    "c.EnvManagerApp.allow_direct_urls = True)",
                )
            elif line.kind == "path":
                self.check_source_path(line.target, fieldname, where)
            judged.append(line)
        return judged

    def _included(self, line, fieldname: str, variables: Optional[dict], seen: tuple) -> list:
        """The judged lines of the file an -r/-c line names. Its contents are never quoted back."""
        path = os.path.realpath(os.path.expanduser(line.target))
        where = f"line {line.lineno}: {line.option} {short(line.target)}"
        if path in seen or len(seen) >= MAX_INCLUDE_DEPTH:
            raise invalid(fieldname, f"{where}: the file includes itself, or files nest deeper than {MAX_INCLUDE_DEPTH}")
        try:
            with open(path, "rb") as f:
                data = f.read(self.max_packages_bytes + 1)
            text = data.decode("utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise invalid(fieldname, f"{where}: the file cannot be read as UTF-8 text on the server "
                                     f"({getattr(e, 'strerror', None) or type(e).__name__})") from None
        if len(data) > self.max_packages_bytes:
            raise invalid(fieldname, f"{where}: the file is larger than {self.max_packages_bytes} bytes "
                                     "(c.EnvManagerApp.max_packages_bytes)")
        try:
            return self.check_requirement_lines(text, fieldname, variables, seen + (path,))
        except EnvmgrError as e:
            m = re.search(r"line (\d+)", e.message)
            inner = f"line {m[1]} of that file" if m else "a line of that file"
            what = ("is not allowed here (an option, a direct URL or a local path the policy refuses)"
                    if e.status == 403 else "is not a valid requirement")
            raise EnvmgrError(e.status, e.reason, f"{fieldname}: {where}: {inner} {what}; its contents are not shown",
                              fieldname) from None

    def check_source_path(self, target: str, fieldname: str, where: str) -> None:
        path = target[len("file://"):] if target.startswith("file://") else target
        path = os.path.expanduser(path.split("#")[0].split(";")[0].strip())
        real = os.path.realpath(path)
        allowed = [os.path.realpath(d) for d in self.allowed_source_dirs]
        if not os.path.isabs(path) or not any(real == d or real.startswith(d + os.sep) for d in allowed):
            raise forbidden(
                fieldname,
                f"{where}: installs from local paths are allowed only under the directories listed in "
                f"c.EnvManagerApp.allowed_source_dirs ({', '.join(self.allowed_source_dirs) or 'none set'}); "
                "use an absolute path there or a package from an index",
            )

    def check_base_pins(self, manager: str, requested: dict) -> None:
        """A request may pin a base package, but not to versions that exclude what the base needs.

        `requested` maps canonical names to SpecifierSets. A base entry may carry its own range
        ("pandas>=2"); ipykernel needs 6 or newer for kernels to start.
        """
        for entry in self.base_packages.get(manager, []):
            try:
                base = Requirement(entry)
            except InvalidRequirement:
                continue
            name = canonicalize_name(base.name)
            wanted = requested.get(name)
            if wanted is None or not str(wanted):
                continue
            needed = base.specifier & SpecifierSet(KERNEL_MINIMUMS.get(name, ""))
            if not _overlap(wanted, needed):
                raise invalid(
                    "packages",
                    f"{base.name} is a base package (always installed; it needs {needed or 'any version'}), "
                    f"and '{base.name}{wanted}' excludes every version that works: remove the pin or widen it",
                )

    def check_count(self, existing: int) -> None:
        if existing >= self.max_environments:
            raise EnvmgrError(
                403, "limit_reached",
                f"this server already has {existing} environments, its limit "
                "(c.EnvManagerApp.max_environments); delete one first",
            )

    def check_spec(self, spec: EnvSpec) -> None:
        """Everything the policy says about a spec; raises the first violation."""
        self.check_index_urls(spec.index_urls)
        if spec.manager == "pip":
            lines = self.check_requirement_lines(spec.packages, variables=spec.env_vars)
            pins = {canonicalize_name(l.requirement.name): l.requirement.specifier for l in lines if l.requirement}
            self.check_base_pins("pip", pins)
