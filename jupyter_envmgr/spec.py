"""EnvSpec: what a client asks for, parsed and validated before anything is written.

Every rule of API.md's record lives here, once; the handlers, the CLI and the panel's
server-side checks all come through `parse_create` / `parse_patch`.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional
from urllib.parse import urlsplit

from .errors import EnvmgrError, invalid

# Anchored with \A and \Z (never ^ and $, which let a trailing newline through), so that
# `.match` and `.fullmatch` agree; digits are ASCII digits only.
NAME_RE = re.compile(r"\A[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\Z")
LABEL_NAME_RE = re.compile(r"\A[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?\Z")
DNS_SUBDOMAIN_RE = re.compile(r"\A[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*\Z")
ENV_VAR_RE = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*\Z")
PYTHON_RE = re.compile(r"\A3\.[0-9]{1,2}(?:\.[0-9]{1,3})?\Z")
MANAGERS = ("pip", "conda")

#: Fields a client may send on create; everything else in a record is read-only.
CREATE_FIELDS = {
    "name", "manager", "python", "packages", "index_urls", "description", "labels",
    "annotations", "env_vars", "gpu", "storage", "namespace", "init_script",
}
#: Fields PATCH may change (API.md); `BUILD_INPUTS` among them start a new revision.
PATCH_FIELDS = {
    "packages", "python", "index_urls", "env_vars", "labels", "annotations",
    "description", "gpu", "init_script",
}
#: Where an environment lives; the manager reads it before the spec is parsed (placement.py).
PLACEMENT_FIELDS = {"cluster"}
BUILD_INPUTS = ("manager", "python", "packages", "index_urls", "gpu", "init_script")
#: Fields of the record that a client may echo back unchanged (export → import, PATCH of a whole record).
READ_ONLY_FIELDS = {
    "status", "message", "progress", "revision", "ready_revision", "created", "updated",
    "owner", "kernel_name", "prefix", "base_packages", "notes",
}
MAX_ANNOTATIONS_BYTES = 256 * 1024


@dataclass
class EnvSpec:
    """The inputs of an environment. Build inputs decide the prefix; the rest is metadata."""

    name: str
    manager: str = "pip"
    python: str = ""
    packages: str = ""
    index_urls: list = field(default_factory=list)
    description: str = ""
    labels: dict = field(default_factory=dict)
    annotations: dict = field(default_factory=dict)
    env_vars: dict = field(default_factory=dict)
    gpu: int = 0
    storage: str = "default"
    namespace: str = "default"
    init_script: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "EnvSpec":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def build_inputs(self) -> dict:
        return {k: getattr(self, k) for k in BUILD_INPUTS}


@dataclass
class Offer:
    """What this server offers, against which a spec is checked (GET /info lists the same)."""

    python_versions: list  # full versions such as "3.11.7"
    namespaces: list
    storages: list
    managers: list
    max_packages_bytes: int = 65536


# ---------------------------------------------------------------- field checks


def short(value: Any, limit: int = 80) -> str:
    """A value quoted in a message, cut short: a message never echoes a whole megabyte back."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def check_name(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise invalid("name", "is required: 2-63 lowercase letters, digits or '-', e.g. 'torch-cpu'")
    if not 2 <= len(value) <= 63:
        raise invalid("name", f"must be 2-63 characters long (got {len(value)})")
    if not NAME_RE.fullmatch(value):
        raise invalid(
            "name",
            f"{short(value)} is not allowed: use lowercase letters, digits and '-', starting and ending "
            "with a letter or digit (a DNS-1123 label), e.g. 'torch-cpu'",
        )
    return value


def _check_str(fieldname: str, value: Any, limit: int = 4096) -> str:
    if not isinstance(value, str):
        raise invalid(fieldname, f"must be a string, not {type(value).__name__}")
    if len(value.encode()) > limit:
        raise invalid(fieldname, f"is longer than {limit} bytes; shorten it")
    return value


def check_label_key(fieldname: str, key: Any) -> str:
    """A Kubernetes qualified name: optional DNS-subdomain prefix + '/' + 63-char name."""
    if not isinstance(key, str) or not key:
        raise invalid(fieldname, "keys must be non-empty strings")
    prefix, _, name = key.rpartition("/")
    if "/" in key and (not prefix or len(prefix) > 253 or not DNS_SUBDOMAIN_RE.fullmatch(prefix)):
        raise invalid(fieldname, f"key {short(key)}: the prefix before '/' must be a DNS subdomain such as 'example.com'")
    if not name or len(name) > 63 or not LABEL_NAME_RE.fullmatch(name):
        raise invalid(
            fieldname,
            f"key {short(key)}: the name must be 1-63 characters of letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit",
        )
    return key


def check_labels(value: Any) -> dict:
    if not isinstance(value, dict):
        raise invalid("labels", 'must be an object such as {"team": "vision"}')
    for key, val in value.items():
        check_label_key("labels", key)
        if not isinstance(val, str):
            raise invalid("labels", f"value of {short(key)} must be a string")
        if val and (len(val) > 63 or not LABEL_NAME_RE.fullmatch(val)):
            raise invalid(
                "labels",
                f"value {short(val)} of {short(key)}: at most 63 letters, digits, '-', '_' or '.', "
                "starting and ending with a letter or digit (or empty)",
            )
    return dict(value)


def check_annotations(value: Any) -> dict:
    if not isinstance(value, dict):
        raise invalid("annotations", 'must be an object such as {"example.com/contact": "ops"}')
    size = 0
    for key, val in value.items():
        check_label_key("annotations", key)
        if not isinstance(val, str):
            raise invalid("annotations", f"value of {short(key)} must be a string")
        size += len(key.encode()) + len(val.encode())
    if size > MAX_ANNOTATIONS_BYTES:
        raise invalid("annotations", "keys and values together must stay under 256 KiB")
    return dict(value)


def check_env_vars(value: Any) -> dict:
    if not isinstance(value, dict):
        raise invalid("env_vars", 'must be an object such as {"HF_HOME": "/data/hf"}')
    for key, val in value.items():
        if not isinstance(key, str) or not ENV_VAR_RE.fullmatch(key):
            raise invalid("env_vars", f"{short(key)} is not a variable name: use letters, digits and '_', not starting with a digit")
        if not isinstance(val, str):
            raise invalid("env_vars", f"value of {short(key)} must be a string")
        if "\0" in val:
            raise invalid("env_vars", f"value of {short(key)} must not contain a NUL byte")
    return dict(value)


def check_gpu(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise invalid("gpu", f"must be a non-negative integer (number of GPUs), not {short(value)}")
    if value > 64:
        raise invalid("gpu", f"{value} GPUs is more than any node has; use at most 64")
    return value


def check_index_urls(value: Any) -> list:
    if not isinstance(value, list):
        raise invalid("index_urls", 'must be a list of URLs such as ["https://mirror.example/simple"]')
    urls = []
    for url in value:
        if not isinstance(url, str):
            raise invalid("index_urls", f"{short(url)} is not a string")
        if any(c.isspace() or not c.isprintable() for c in url):
            raise invalid("index_urls", f"{short(redact_url(url))} contains white space or control characters")
        try:
            parts = urlsplit(url)
            host, port = parts.hostname, parts.port  # both raise ValueError on a bad IPv6 host or port
        except ValueError as e:
            raise invalid("index_urls", f"{short(redact_url(url))} is not a valid URL ({e}); write e.g. "
                                        "'https://mirror.example/simple'") from None
        if parts.scheme not in ("http", "https") or not host:
            raise invalid("index_urls", f"{short(redact_url(url))} is not an http(s) URL of a package index")
        if port == 0 or (parts.netloc.rpartition("@")[2].endswith(":") and port is None):
            raise invalid("index_urls", f"{short(redact_url(url))} has no usable port; use 1-65535 or leave it out")
        urls.append(url)
    return urls


def check_python(value: Any, offered: Iterable[str]) -> str:
    """Accept `X.Y` or `X.Y.Z` when an offered interpreter matches it."""
    offered = list(offered)
    versions = sorted({".".join(v.split(".")[:2]) for v in offered}, key=_version_key)
    if not isinstance(value, str) or not PYTHON_RE.fullmatch(value):
        raise invalid("python", f"{short(value)} is not a Python version; use one of {', '.join(versions)}")
    if not any(v == value or v.startswith(value + ".") for v in offered):
        raise invalid("python", f"{value} is not offered by this server; use one of {', '.join(versions)} (see GET /envmgr/api/info)")
    return value


def _version_key(v: str):
    return tuple(int(p) for p in v.split("."))


def check_choice(fieldname: str, value: Any, choices: Iterable[str], what: str) -> str:
    choices = list(choices)
    if value not in choices:
        raise invalid(fieldname, f"{short(value)} is not {what}; use one of {', '.join(map(str, choices)) or '(none)'}")
    return value


def redact_url(url: str) -> str:
    """Hide credentials: https://user:pw@host/simple → https://***@host/simple."""
    try:
        parts = urlsplit(url)
        if parts.username is None and parts.password is None:
            return url
    except ValueError:
        return url.rpartition("@")[2] if "@" in url else url
    netloc = "***@" + parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=netloc).geturl()


def secrets_in(urls: Iterable[str]) -> list:
    """The userinfo parts of URLs, to scrub from logs and exports."""
    found = []
    for url in urls:
        try:
            parts = urlsplit(url)
        except ValueError:
            continue
        if "@" in parts.netloc:
            found.append(parts.netloc.rpartition("@")[0])
    return [s for s in found if s]


def scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


# ---------------------------------------------------------------- whole bodies


def _refuse_unknown(body: dict, allowed: set) -> None:
    unknown = sorted(set(body) - allowed - READ_ONLY_FIELDS)
    if unknown:
        raise EnvmgrError(
            400, "unknown_field",
            f"unknown field(s) {', '.join(map(str, unknown))}; allowed: {', '.join(sorted(allowed | PLACEMENT_FIELDS))}",
            str(unknown[0]) if len(unknown) == 1 else "",
        )


def _check_field(key: str, value: Any, offer: Offer, manager: str) -> Any:
    if key == "name":
        return check_name(value)
    if key == "manager":
        return check_choice("manager", value, MANAGERS, "a package manager") and _check_manager_offered(value, offer)
    if key == "python":
        return check_python(value, offer.python_versions)
    if key == "packages":
        value = _check_str("packages", value, offer.max_packages_bytes)
        return value
    if key == "index_urls":
        return check_index_urls(value)
    if key == "description":
        return _check_str("description", value)
    if key == "labels":
        return check_labels(value)
    if key == "annotations":
        return check_annotations(value)
    if key == "env_vars":
        return check_env_vars(value)
    if key == "gpu":
        return check_gpu(value)
    if key == "storage":
        return check_choice("storage", value, [s["name"] for s in offer.storages], "a storage of this server")
    if key == "namespace":
        return check_choice("namespace", value, offer.namespaces, "a namespace of this server")
    if key == "init_script":
        value = _check_str("init_script", value, 65536)
        try:
            compile(value, "init_script", "exec")
        except SyntaxError as e:
            raise invalid("init_script", f"is not valid Python: line {e.lineno}: {e.msg}")
        return value
    raise AssertionError(key)


def _check_manager_offered(value: str, offer: Offer) -> str:
    if value not in offer.managers:
        raise invalid("manager", f"{short(value)} environments cannot be built by this server right now; use one of {', '.join(offer.managers)}")
    return value


def _check_read_only(body: dict, current: Optional[dict]) -> None:
    """Read-only fields may be echoed back only unchanged (or on create, ignored)."""
    if current is None:
        return
    for key in READ_ONLY_FIELDS & set(body):
        if body[key] != current.get(key):
            raise invalid(key, "is read-only and cannot be changed")


def parse_create(body: Any, offer: Offer, default_python, namespace: Optional[str] = None) -> EnvSpec:
    """Turn a POST body into an EnvSpec, or raise the first problem found.

    `default_python` is the version for a body that names none, or a function of the checked
    values giving it (a conda environment.yaml may pin its own python).
    """
    if not isinstance(body, dict):
        raise EnvmgrError(400, "invalid_json", "the body must be a JSON object with at least a 'name'")
    _refuse_unknown(body, CREATE_FIELDS)
    values = {k: body[k] for k in CREATE_FIELDS if k in body and body[k] is not None}
    if namespace is not None and values.setdefault("namespace", namespace) != namespace:
        raise invalid("namespace", f"the body says {short(values['namespace'])} but ?namespace= says {short(namespace)}")
    manager = values.get("manager", "pip")
    for key in ("name",) + tuple(sorted(values)):
        if key == "name" or key in values:
            values[key] = _check_field(key, values.get(key), offer, manager)
    if "python" not in values:
        values["python"] = default_python(values) if callable(default_python) else default_python
    return EnvSpec(**values)


def parse_patch(body: Any, current: EnvSpec, current_record: dict, offer: Offer) -> EnvSpec:
    """Apply a PATCH body to a spec; fields outside PATCH_FIELDS may only be repeated unchanged."""
    if not isinstance(body, dict):
        raise EnvmgrError(400, "invalid_json", "the body must be a JSON object of the fields to change")
    _refuse_unknown(body, PATCH_FIELDS | CREATE_FIELDS)
    _check_read_only(body, current_record)
    values = current.to_dict()
    for key, value in body.items():
        if key in READ_ONLY_FIELDS:
            continue
        if key in CREATE_FIELDS - PATCH_FIELDS:
            if value != current_record.get(key):
                raise invalid(key, "cannot be changed after creation; create a new environment (or clone it) instead")
            continue
        if key == "index_urls" and isinstance(value, list):
            # Clients echo back redacted URLs: keep the stored ones that they stand for.
            stored = {redact_url(u): u for u in current.index_urls}
            value = [stored.get(u, u) for u in value]
        values[key] = _check_field(key, value, offer, current.manager) if value is not None else values[key]
    return EnvSpec(**values)
