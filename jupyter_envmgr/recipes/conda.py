"""conda environments: environment.yaml checked against the channel policy, solved by the build-side program."""
from __future__ import annotations

import asyncio
from typing import Optional

from ..spec import EnvSpec


def _engine(book):
    from .. import conda

    return conda, (book.conda or conda.CondaSettings())


def validate(book, spec: EnvSpec) -> None:
    conda, settings = _engine(book)
    conda.check(spec, settings, book.policy, book.base_packages.get("conda", []))


def pinned_python(packages: str, offered: list, default: str) -> Optional[str]:
    from ..conda import pinned_python as pinned

    return pinned(packages, offered, default)


def write_inputs(spec: EnvSpec, paths) -> None:
    """`steps` writes the conda inputs (it has the resolved environment)."""


def steps(book, spec: EnvSpec, paths, base_packages: list) -> list:
    conda, settings = _engine(book)
    resolved = conda.check(spec, settings, book.policy, base_packages)
    return conda.steps(resolved, paths, settings, book.tools, spec.name)


async def installed(book, prefix: str) -> list:
    """conda-meta records (with their channel) and what uv added ("pypi")."""
    conda, settings = _engine(book)
    return await asyncio.to_thread(conda.installed, prefix, settings)
