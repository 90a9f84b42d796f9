"""What an administrator allows: index URLs, requirement option lines, direct URLs, source installs, limits.

Policy is plain data (built from the app's traits) so that it can be checked before anything is written.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterable

from packaging.utils import canonicalize_name

from .errors import EnvmgrError, forbidden, invalid
from .spec import EnvSpec, parse_requirements, redact_url


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

    def check_requirement_lines(self, text: str, fieldname: str = "packages") -> list:
        """Parse pip requirement text and refuse lines the policy does not allow."""
        lines = parse_requirements(text)
        for line in lines:
            where = f"line {line.lineno}: {line.text!r}"
            if line.kind == "option":
                option = line.text.split()[0].split("=")[0]
                if option not in self.allowed_requirement_options:
                    raise forbidden(
                        fieldname,
                        f"{where}: option lines such as {option} are not allowed here; list packages only, "
                        "put extra indexes in index_urls (an administrator may allow options with "
                        "c.EnvManagerApp.allowed_requirement_options)",
                    )
            elif line.kind == "url" and not self.allow_direct_urls:
                raise forbidden(
                    fieldname,
                    f"{where}: direct URL requirements are not allowed; use a package name and an index in "
                    "index_urls (an administrator may allow them with c.EnvManagerApp.allow_direct_urls)",
                )
            elif line.kind == "path":
                self.check_source_path(line.text, fieldname, where)
        return lines

    def check_source_path(self, text: str, fieldname: str, where: str) -> None:
        path = text.split("@", 1)[-1].strip() if "@" in text and not text.startswith(("/", ".")) else text
        if path.startswith("file://"):
            path = path[len("file://"):]
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
        """A request may pin a base package, but not to a version that excludes what we need.

        `requested` maps canonical names to packaging SpecifierSets.
        """
        for base in self.base_packages.get(manager, []):
            spec = requested.get(canonicalize_name(base))
            if spec is not None and str(spec) and not any(True for _ in spec.filter(["6.0", "6.29.5", "7.0.0", "7.1.0"])):
                raise invalid(
                    "packages",
                    f"{base} is a base package (always installed, version 6 or newer for kernels to start); "
                    f"'{base}{spec}' excludes every version that works: remove the pin or widen it",
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
            lines = self.check_requirement_lines(spec.packages)
            pins = {canonicalize_name(l.requirement.name): l.requirement.specifier for l in lines if l.requirement}
            self.check_base_pins("pip", pins)
