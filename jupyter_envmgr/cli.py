"""`jupyter envmgr`: the REST contract from a terminal, plus `demo`, a private end-to-end run."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional

from .client import ClientError, EnvmgrClient, merge_packages
from .text import changes_text, outcome_line, progress_line, record_text, stderr_is_tty, table_text


def parse_pairs(values, what: str) -> dict:
    pairs = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ClientError(0, f"{what} {item!r} must look like KEY=VALUE")
        pairs[key] = value
    return pairs


def packages_text(args) -> Optional[str]:
    """Packages from -r FILE and/or positional PKG arguments, as requirements/environment text."""
    text = getattr(args, "notebook_text", "")
    if getattr(args, "file", None):
        with open(args.file) as f:
            text += f.read()
    if getattr(args, "packages", None):
        text += "".join(p + "\n" for p in args.packages)
    return text or None


def looks_like_environment_yaml(text: str, path: str = "") -> bool:
    """An environment.yml (by its name, or by a top-level `dependencies:`/`channels:` key) means conda."""
    if path.endswith((".yml", ".yaml")):
        return True
    return any(line.startswith(("dependencies:", "channels:")) for line in (text or "").splitlines())


def spec_from_args(args, creating: bool) -> dict:
    spec = {}
    text = packages_text(args)
    if creating:
        spec["name"] = args.name
        if args.manager:
            spec["manager"] = args.manager
        elif text and looks_like_environment_yaml(text, getattr(args, "file", None) or ""):
            spec["manager"] = args.manager = "conda"  # -r environment.yml: unless --manager says otherwise
    if getattr(args, "preset", None):
        text = merge_packages(getattr(args, "manager", None) or "pip", text or "", args.preset_text)
    if text is not None:
        spec["packages"] = text
    for key, value in (("python", args.python), ("description", args.description), ("gpu", args.gpu)):
        if value is not None:
            spec[key] = value
    if args.index_url:
        spec["index_urls"] = args.index_url
    for key, flag in (("labels", "label"), ("annotations", "annotation"), ("env_vars", "env")):
        if getattr(args, flag):
            spec[key] = parse_pairs(getattr(args, flag), f"--{flag}")
    if getattr(args, "init_script", None):
        with open(args.init_script) as f:
            spec["init_script"] = f.read()
    return spec


def wait_with_progress(client: EnvmgrClient, name: str, timeout: float, quiet: bool = False) -> dict:
    """Wait for the build, a live bar on a terminal's stderr; the bar gives way to the one outcome line (stdout)
    when it ends. A build that did not end ready raises its outcome line."""
    tty = stderr_is_tty() and not quiet

    def show(record):
        if tty and record["status"] in ("pending", "warming"):
            sys.stderr.write("\r\033[K" + progress_line(record)[:terminal_width() - 1])
            sys.stderr.flush()

    record = client.wait(name, timeout=timeout, on_update=show)
    if tty:
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()
    if record["status"] != "ready":
        raise ClientError(0, outcome_line(record) + f"; the build log: jupyter envmgr log {name}")
    if not quiet:
        print(outcome_line(record))
    return record


def terminal_width() -> int:
    import shutil

    return shutil.get_terminal_size((100, 24)).columns


def print_table(records: list) -> None:
    print(table_text(records))


def add_spec_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("packages", nargs="*", metavar="PKG", help="requirements, e.g. 'numpy>=2' pandas")
    p.add_argument("-r", "--file", help="requirements.txt or environment.yaml to read the packages from")
    p.add_argument("--python", help="Python version, e.g. 3.12 (GET /info lists them)")
    p.add_argument("--index-url", action="append", help="extra package index URL (repeatable)")
    p.add_argument("--label", action="append", help="label KEY=VALUE (repeatable)")
    p.add_argument("--annotation", action="append", help="annotation KEY=VALUE (repeatable)")
    p.add_argument("--env", action="append", help="kernel environment variable KEY=VALUE (repeatable)")
    p.add_argument("--description")
    p.add_argument("--gpu", type=int)
    p.add_argument("--preset", help="add a named package set from GET /info presets")
    p.add_argument("--init-script", help="a Python file run in the environment after each build")
    p.add_argument("--wait", action="store_true", help="wait until ready, with a progress bar")


def add_dry_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dry-run", action="store_true",
                   help="resolve without installing and print what would change against the serving revision; write nothing")


def build_parser(prog: str = "jupyter envmgr", in_kernel: bool = False) -> argparse.ArgumentParser:
    """The one argument grammar of `jupyter envmgr` and `%envmgr` (which adds `install`, drops `demo`)."""
    parser = argparse.ArgumentParser(prog=prog, description="Manage notebook environments on a Jupyter server.")
    parser.add_argument("--url", help="server URL (default: the running server found in Jupyter's runtime files)")
    parser.add_argument("--token", help="server token (default: from the runtime file)")
    parser.add_argument("--namespace", help="namespace (default: the server's default)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for a build")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list environments")
    p.add_argument("--label", help="key=value filter")
    p.add_argument("--status", help="status filter, e.g. ready or warming,pending")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("create", help="create an environment and start warming it")
    p.add_argument("name")
    p.add_argument("--manager", choices=["pip", "conda"])
    p.add_argument("--from-notebook", metavar="PATH", help="the packages (and Python) a notebook needs, read from its imports and %%pip lines")
    add_spec_options(p)

    p = sub.add_parser("update", help="change packages or metadata (a new revision when build inputs change)")
    p.add_argument("name")
    add_spec_options(p)
    add_dry_run(p)

    p = sub.add_parser("rebuild", help="build the same inputs again as a new revision (the index may resolve newer versions)")
    p.add_argument("name")
    p.add_argument("--wait", action="store_true", help="wait until ready, with a progress bar")
    add_dry_run(p)

    p = sub.add_parser("pin", help="pin the requested packages to the versions the serving revision has (==)")
    p.add_argument("name")
    p.add_argument("--wait", action="store_true", help="wait until ready when the pins build a new revision")
    add_dry_run(p)

    p = sub.add_parser("show", help="show one environment")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="the record as JSON (API.md)")
    for command, text in (("delete", "delete an environment and its kernel"),
                          ("wait", "wait until an environment is ready or failed")):
        sub.add_parser(command, help=text).add_argument("name")

    p = sub.add_parser("log", help="print the build log")
    p.add_argument("name")
    p.add_argument("--revision", type=int)
    p.add_argument("--follow", "-f", action="store_true", help="stream until the build ends")

    p = sub.add_parser("rollback", help="serve an earlier ready revision again")
    p.add_argument("name")
    p.add_argument("revision", type=int)

    p = sub.add_parser("export", help="print the lock (requirements) or the spec (JSON, re-importable)")
    p.add_argument("name")
    p.add_argument("--format", choices=["requirements", "spec"], default="spec")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")

    p = sub.add_parser("clone", help="create a new environment with the same inputs as another")
    p.add_argument("name")
    p.add_argument("new_name")
    p.add_argument("--wait", action="store_true")

    p = sub.add_parser("import", help="create an environment from an exported spec")
    p.add_argument("file")
    p.add_argument("--name", help="create it under this name instead")
    p.add_argument("--wait", action="store_true")

    p = sub.add_parser("gc", help="free old revisions, orphan prefixes and unused cache on a root (never current or ready)")
    p.add_argument("--root", help="the storage root (default: $JUPYTER_ENVMGR_ROOT, else <jupyter data dir>/envmgr)")
    p.add_argument("--keep", type=int, default=3, help="revisions to keep per environment (default 3)")
    p.add_argument("--uv-cache-dir", help="uv cache to prune (default <root>/cache/uv)")

    if in_kernel:
        p = sub.add_parser("install", help="add packages to the environment this kernel runs in (a new revision)")
        p.add_argument("packages", nargs="+", metavar="PKG")
        p.add_argument("--no-wait", dest="wait", action="store_false", help="return at once instead of waiting")
    else:
        p = sub.add_parser("demo", help="start a private server, build an environment, run code in its kernel")
        p.add_argument("--package", default="six", help="the package to install (default: six)")
        p.add_argument("--keep", action="store_true", help="keep the temporary root afterwards")
        p = sub.add_parser("service", help="run the environment service: the one writer of a team's root "
                                           "(options: --config FILE, --ip, --port, any --EnvManagerApp.*/--EnvService.* setting)")
        p = sub.add_parser("render-job", help="print the Kubernetes Job a create would submit (nothing is submitted)")
        p.add_argument("name", help="the environment's name")
        p.add_argument("--revision", type=int, default=1)
        p.add_argument("--gpu", type=int, default=0, help="GPUs the environment asks for")
        p.add_argument("--config", help="a jupyter_server_config.py/.json to read (default: the Jupyter config path)")
        p.add_argument("--cluster", help="a cluster of c.EnvManagerApp.clusters (default: the first)")
    add_elsewhere_and_request_commands(sub, in_kernel)
    return parser


def resolve_preset(client: EnvmgrClient, args) -> None:
    """Turn --preset NAME into the package lines it stands for (args.preset_text)."""
    if not getattr(args, "preset", None):
        return
    manager = getattr(args, "manager", None) or "pip"
    presets = {p["name"]: p for p in client.info()["presets"] if p["manager"] == manager}
    if args.preset not in presets:
        raise ClientError(0, f"no {manager} preset {args.preset!r}; presets: {', '.join(sorted(presets))}")
    args.preset_text = presets[args.preset]["packages"]


def resolve_notebook(client: EnvmgrClient, args) -> None:
    """--from-notebook PATH: the server proposes the packages (POST /suggestions); the notebook's own
    modules (the .py files and packages beside it) are named so they are never taken for packages."""
    path = getattr(args, "from_notebook", None)
    if not path:
        return
    if getattr(args, "manager", None) == "conda":
        raise ClientError(0, "--from-notebook proposes pip requirements; leave out --manager conda")
    try:
        with open(path) as f:
            notebook = json.load(f)
        worksheets = [c for ws in notebook.get("worksheets", []) for c in ws.get("cells", [])]  # nbformat 3
        cells = [{"cell_type": "code", "source": c.get("source", c.get("input", ""))}
                 for c in notebook.get("cells", worksheets) if c.get("cell_type") == "code"]
    except (OSError, ValueError, AttributeError) as e:
        raise ClientError(0, f"cannot read the notebook {path}: {e}") from None
    notebook = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": cells}  # code only: outputs can be large
    directory = os.path.dirname(os.path.abspath(path))
    local = sorted(e[:-3] if e.endswith(".py") else e for e in os.listdir(directory)
                   if e.endswith(".py") or os.path.isfile(os.path.join(directory, e, "__init__.py")))
    suggestion = client.request("POST", "envmgr/api/suggestions", {"notebook": notebook, "local_modules": local})
    args.notebook_text = suggestion["packages"]
    if suggestion.get("python") and not args.python:
        args.python = suggestion["python"]
    if suggestion["unresolved"]:
        print(f"{path}: no known package for the import(s) {', '.join(suggestion['unresolved'])}; "
              "add them as PKG arguments if they are needed", file=sys.stderr)


def run(args, client: Optional[EnvmgrClient] = None) -> int:
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(package=args.package, keep=args.keep)
    if args.command == "gc":
        return collect_garbage(args)
    if args.command in ("run", "pod-spec"):
        return run_elsewhere(args)
    if args.command == "render-job":
        from .builders.kubernetes import render_job_yaml

        try:
            text = render_job_yaml(app_from_config(args.config), args.name, args.namespace, args.revision, args.gpu,
                                   args.cluster)
        except ValueError as e:  # an unknown cluster, a bad clusters entry
            print(f"error: {e}", file=sys.stderr)
            return 2
        sys.stdout.write(text)
        return 0
    client = client or EnvmgrClient.discover(args.url, args.token, args.namespace)
    cmd = args.command
    resolve_preset(client, args)
    resolve_notebook(client, args)
    if cmd == "list":
        records = client.list(args.label, args.status)
        print(json.dumps(records, indent=2)) if args.json else print_table(records)
    elif cmd in ("create", "update"):
        spec = spec_from_args(args, creating=cmd == "create")
        if cmd == "update" and args.dry_run:
            print(changes_text(client.update(args.name, spec, dry_run=True)))
            return 0
        record = client.create(spec) if cmd == "create" else client.update(args.name, spec)
        report(client, record, args.wait, args.timeout)
    elif cmd in ("rebuild", "pin"):
        record = client.action(args.name, cmd, dry_run=args.dry_run)
        if args.dry_run:
            print(pin_text(record) if cmd == "pin" else changes_text(record))
            return 0
        if cmd == "pin":
            print(pin_text(record, done=True))
        report(client, record, args.wait, args.timeout, metadata_only=cmd == "pin")
    elif cmd == "show":
        record = client.get(args.name)
        print(json.dumps(record, indent=2) if args.json else record_text(record))
    elif cmd == "delete":
        client.delete(args.name)
        print(f"{args.name}: deleted")
    elif cmd == "wait":
        wait_with_progress(client, args.name, args.timeout)
    elif cmd == "log":
        if args.follow:
            for chunk in client.follow_log(args.name, args.revision):
                sys.stdout.write(chunk)
                sys.stdout.flush()
        else:
            sys.stdout.write(client.log(args.name, args.revision))
    elif cmd == "rollback":
        record = client.action(args.name, "rollback", revision=args.revision)
        print(f"{args.name}: {record['status']} on revision {record['ready_revision']}")
    elif cmd == "export":
        data = client.export(args.name, args.format)
        text = json.dumps(data, indent=2) + "\n" if isinstance(data, dict) else data
        if args.output:
            with open(args.output, "w") as f:
                f.write(text)
        else:
            sys.stdout.write(text)
    elif cmd in REQUEST_COMMANDS:
        run_request_command(client, args)
    elif cmd in ("import", "clone"):
        if cmd == "clone":
            record = client.action(args.name, "clone", name=args.new_name)
        else:
            with open(args.file) as f:
                spec = json.load(f)
            if args.name:
                spec["name"] = args.name
            record = client.create(spec)
        report(client, record, args.wait, args.timeout)
    return 0


def report(client: EnvmgrClient, record: dict, wait: bool, timeout: float, metadata_only: bool = False) -> None:
    """What a create, update, rebuild, clone or import started; with --wait, how it ended."""
    building = record["status"] in ("pending", "warming")
    if not (metadata_only and not building):
        print(f"{record['name']}: {record['status']} (revision {record['revision']})")
    if wait and building:
        wait_with_progress(client, record["name"], timeout)


def pin_text(record: dict, done: bool = False) -> str:
    """The pin action's answer: the packages it writes, then (a dry run that builds) what would change."""
    packages = "".join(f"  {line}\n" for line in (record.get("packages") or "").splitlines() if line.strip())
    head = f"{record['name']}: the packages {'are' if done else 'would be'}:\n{packages}"
    if done:
        return head.rstrip("\n")
    return head + changes_text(record)


def collect_garbage(args) -> int:
    """Works on the root's files directly, so it runs where the storage is mounted, server or not."""
    import os

    import uv

    from .app import default_root
    import asyncio

    from .gc import collect
    from .records import Records
    from .store import Store

    root = os.path.abspath(args.root or default_root())
    if not os.path.isdir(os.path.join(root, "envs")):
        raise ClientError(0, f"{root} is not an envmgr root (no envs/ in it); pass --root")
    records = Records(Store(root))
    report = asyncio.run(collect(records, args.keep, uv.find_uv_bin(), [args.uv_cache_dir or os.path.join(root, "cache", "uv")],
                                 bytecode_cache_dirs=[os.path.join(root, "cache", "bytecode")]))
    records.close()
    for line in report.revisions:
        print(f"removed {line}")
    for path in report.orphans:
        print(f"removed orphan {path}")
    print(report.summary())
    return 0


# ------------------------------------------------------------ use elsewhere (elsewhere.py) and requests

REQUEST_COMMANDS = ("request", "requests", "approve", "reject", "withdraw")


def add_elsewhere_and_request_commands(sub, in_kernel: bool) -> None:
    p = sub.add_parser("request", help="ask for an environment in a namespace you may read but not write")
    p.add_argument("name")
    p.add_argument("--manager", choices=["pip", "conda"])
    add_spec_options(p)
    p = sub.add_parser("requests", help="list requests: yours, and all of the namespaces you may write")
    p.add_argument("--status", help="status filter, e.g. requested or approved,rejected")
    p.add_argument("--json", action="store_true")
    sub.add_parser("approve", help="approve a request: its environment is created, owned by the requester").add_argument("id")
    p = sub.add_parser("reject", help="reject a request, saying why")
    p.add_argument("id")
    p.add_argument("--message", "-m", required=True, help="why; the requester sees it")
    sub.add_parser("withdraw", help="withdraw a request of yours").add_argument("id")
    if in_kernel:  # `run` replaces its own process: never a kernel's
        return
    root_help = "the storage root (default: $JUPYTER_ENVMGR_ROOT, else <jupyter data dir>/envmgr)"
    p = sub.add_parser("run", usage="jupyter envmgr [--namespace NS] run [--root ROOT] NAME -- CMD [ARG ...]", help="run a command in an environment as its kernels run (its interpreter first on PATH, "
                                   "its variables, its serving revision); exits with the command's status")
    p.add_argument("name")
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD ...")
    p.add_argument("--root", help=root_help)
    p = sub.add_parser("pod-spec", usage="jupyter envmgr [--namespace NS] pod-spec [options] NAME [-- ARG ...]", help="print the Kubernetes pod-spec fragment that runs a program in an environment")
    p.add_argument("name")
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="-- ARG ...", help="the interpreter's arguments, e.g. -- train.py --epochs 3")
    p.add_argument("--root", help=root_help)
    p.add_argument("--cluster", help="the cluster whose claim to mount (default: the first)")
    p.add_argument("--claim", help="the PersistentVolumeClaim of the root (default: the configured one)")
    p.add_argument("--image", help="the container image (default: c.EnvManagerApp.kubernetes_image, the build image)")
    p.add_argument("--config", help="a jupyter_server_config.py/.json to read (default: the Jupyter config path)")
    p.add_argument("--job", metavar="JOB_NAME", help="print a whole batch/v1 Job of this name instead of the fragment")
    p.add_argument("--json", action="store_true", help="JSON instead of YAML")


def run_elsewhere(args) -> int:
    """`run` and `pod-spec` read the root's files (where the storage is mounted), no server needed."""
    from . import elsewhere
    from .errors import EnvmgrError

    root = os.path.abspath(args.root or app_from_config(getattr(args, "config", None)).root_dir)  # its default: default_root()
    try:
        use = elsewhere.serving(elsewhere.find(root, args.name, args.namespace))
        if args.command == "run":
            argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
            if not argv:
                raise ClientError(0, "name the command to run after --, e.g. jupyter envmgr run NAME -- python train.py")
            from .usage import report_job

            report_job(use)  # a "job" use in .../usage recent, when this user's server is found (bounded; never fatal)
            try:
                elsewhere.exec_in(use, argv)
            except OSError as e:  # the command does not exist or cannot run
                print(f"error: cannot run {argv[0]!r} in {args.name}: {e.strerror}", file=sys.stderr)
                return 127
        config = app_from_config(args.config)
        claim, mount = elsewhere.cluster_storage(config, args.cluster)
        extra = args.args[1:] if args.args[:1] == ["--"] else args.args
        fragment = elsewhere.pod_fragment(use, args.claim or claim, args.image or config.kubernetes_image, mount, extra)
        if args.job:
            fragment = elsewhere.job(fragment, args.job, use["namespace"], config.kubernetes_run_as_user, config.kubernetes_run_as_group)
    except EnvmgrError as e:
        raise ClientError(0, e.message) from None
    if args.json:
        print(json.dumps(fragment, indent=2))
    else:
        sys.stdout.write(elsewhere.to_yaml(use, fragment, args.claim or claim))
    return 0


def run_request_command(client: EnvmgrClient, args) -> None:
    cmd = args.command
    if cmd == "request":
        request = client.submit_request(spec_from_args(args, creating=True))
        print(f"request {request['id']}: {request['name']} in {request['namespace']} is requested; "
              f"`jupyter envmgr requests` shows when it is decided")
    elif cmd == "requests":
        requests = client.requests(args.status)
        if args.json:
            print(json.dumps(requests, indent=2))
            return
        rows = [("ID", "NAMESPACE", "NAME", "REQUESTER", "STATUS", "CREATED", "MESSAGE")]
        rows += [(r["id"], r["namespace"], r["name"], r["requester"], r["status"], r["created"], r.get("message") or "")
                 for r in requests]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    else:
        action = {"approve": "approve", "reject": "reject", "withdraw": "withdraw"}[cmd]
        request = client.request_action(args.id, action, getattr(args, "message", None))
        detail = f"; environment {request['environment']} is building" if request["status"] == "approved" else ""
        print(f"request {request['id']} ({request['name']}): {request['status']}{detail}")


GLOBAL_VALUE_OPTIONS = ("--url", "--token", "--namespace", "--timeout")


def subcommands(parser: argparse.ArgumentParser) -> list:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(action.choices)


def check_command(parser: argparse.ArgumentParser, argv) -> None:
    """No subcommand, or one that does not exist: name the subcommands (and the nearest), not the whole usage."""
    words, i = list(argv), 0
    while i < len(words):
        word = words[i]
        if word in ("-h", "--help"):
            return  # argparse's own help
        if word in GLOBAL_VALUE_OPTIONS:
            i += 2
            continue
        if word.startswith("-"):  # --url=..., or an unknown option: argparse says what is wrong with it
            if "=" not in word:
                return
            i += 1
            continue
        break
    known = subcommands(parser)
    if i < len(words) and words[i] in known:
        return
    import difflib

    if i < len(words):
        near = difflib.get_close_matches(words[i], known, n=1)
        problem = f"{parser.prog}: no subcommand {words[i]!r}" + (f" (did you mean {near[0]!r}?)" if near else "")
    else:
        problem = f"{parser.prog}: name a subcommand"
    sys.stderr.write(f"{problem}; the subcommands are: {', '.join(known)}. "
                     f"`{parser.prog} SUBCOMMAND -h` tells more about one.\n")
    raise SystemExit(2)


def parse_args(parser: argparse.ArgumentParser, argv) -> argparse.Namespace:
    """Options and packages in any order: `create NAME --wait six` as well as `create NAME six --wait`."""
    check_command(parser, argv)
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "packages") or any(item.startswith("-") for item in extra):
            action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
            action.choices[args.command].error(f"unrecognized arguments: {' '.join(extra)}")  # its own usage, short
        args.packages = list(args.packages or []) + extra
    return args


def app_from_config(config_file: Optional[str] = None):
    """An EnvManagerApp carrying the Jupyter server's configuration (jupyter_server_config.py/.json on the
    Jupyter config path, or `config_file`), without starting anything; for `jupyter envmgr render-job`."""
    from jupyter_core.application import JupyterApp
    from traitlets import Unicode

    from .app import EnvManagerApp

    class ServerConfig(JupyterApp):
        name = "jupyter-server"
        config_file_name = Unicode("jupyter_server_config")

    loader = ServerConfig()
    if config_file:
        loader.config_file = os.path.abspath(config_file)
    loader.load_config_file(suppress_errors=False)
    return EnvManagerApp(config=loader.config)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["service"]:  # a Jupyter server of its own: its options are traitlets' (--config, --ip, --port, ...)
        from .service import main as service_main

        return service_main(argv[1:])
    args = parse_args(build_parser(), argv)
    try:
        return run(args)
    except ClientError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
