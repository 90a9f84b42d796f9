"""`%envmgr` and `%%envmgr`: the CLI's grammar inside a notebook, with HTML tables and a live progress bar.

Only the standard library, IPython and this package's client: the kernels this project registers
import it from a copy on the root storage (see kernels.KernelRegistry.install_magics), not from the
environment's own site-packages.
"""
from __future__ import annotations

import html
import os
import shlex
import sys
import time

from IPython.core.magic import Magics, line_cell_magic, magics_class

from . import cli
from .client import ACTIVE, ClientError, EnvmgrClient, merge_packages, merge_pip_packages
from .text import TABLE_HEAD, changes_text, outcome_line, progress_line, progress_status, table_rows

EMPTY = "no environments yet: %envmgr create NAME PKG... --wait"


def in_notebook(shell) -> bool:
    return type(shell).__name__ == "ZMQInteractiveShell"


@magics_class
class EnvmgrMagics(Magics):
    @line_cell_magic
    def envmgr(self, line: str, cell: str = None):
        """Manage environments: %envmgr list | create | show | log | update [--dry-run] | rebuild | pin | rollback |
        delete | export | install; `%envmgr SUBCOMMAND -h` tells more."""
        parser = cli.build_parser(prog="%envmgr", in_kernel=True)
        try:
            args = cli.parse_args(parser, shlex.split(line))
        except SystemExit:  # argparse printed the usage or the problem
            return None
        try:
            client = EnvmgrClient.discover(args.url, args.token, args.namespace)
            self.run(client, args, cell)
            newer_revision_notice(client)
        except ClientError as e:
            print(f"error: {e.message}", file=sys.stderr)  # once, without a traceback
        except (OSError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
        return None

    def run(self, client: EnvmgrClient, args, cell) -> None:
        cmd = args.command
        if cmd == "list":
            self.show_table(client.list(args.label, args.status))
        elif cmd in ("create", "update"):
            cli.resolve_preset(client, args)
            cli.resolve_notebook(client, args)
            spec = cli.spec_from_args(args, creating=cmd == "create")
            if cell is not None:
                if cmd == "create" and not args.manager and cli.looks_like_environment_yaml(cell):
                    spec["manager"] = args.manager = "conda"  # a %%envmgr cell holding an environment.yaml
                spec["packages"] = merge_packages(args.__dict__.get("manager") or "pip", cell, spec.get("packages", ""))
            if cmd == "update" and args.dry_run:
                print(changes_text(client.update(args.name, spec, dry_run=True)))
                return
            record = client.create(spec) if cmd == "create" else client.update(args.name, spec)
            self.report(client, record, args.wait)
        elif cmd == "rebuild" and not args.dry_run:
            self.report(client, client.action(args.name, "rebuild"), args.wait)
        elif cmd == "install":
            self.install(client, args)
        else:
            cli.run(args, client)

    def install(self, client: EnvmgrClient, args) -> None:
        """Add packages to this kernel's own environment; the running kernel keeps its revision."""
        own = os.environ.get("JUPYTER_ENVMGR_ENVIRONMENT")
        if not own:
            raise ClientError(0, "this kernel does not run in an envmgr environment; use %envmgr update NAME PKG... instead")
        namespace, _, name = own.partition("/")
        client.namespace = namespace
        record = client.get(name)
        if getattr(args, "pip", False) and record["manager"] == "conda":  # %pip: the environment.yaml's pip sub-list
            packages = merge_pip_packages(record["packages"], "\n".join(args.packages))
        else:
            packages = merge_packages(record["manager"], record["packages"], "\n".join(args.packages))
        if packages == record["packages"]:
            print(f"{name} already lists {' '.join(args.packages)}")
            return
        record = client.update(name, {"packages": packages})
        record = self.report(client, record, args.wait)
        if record and record["status"] == "ready":
            print(f"revision {record['ready_revision']} of {name} is ready: restart the kernel to use it "
                  "(this kernel keeps running the revision it started with)")

    def report(self, client: EnvmgrClient, record: dict, wait: bool):
        print(f"{record['name']}: {record['status']} (revision {record['revision']})")
        if not wait or record["status"] not in ACTIVE:
            return record
        record = self.wait(client, record["name"])
        if record["status"] != "ready":
            raise ClientError(0, outcome_line(record) + f"; the build log: %envmgr log {record['name']}")
        print(outcome_line(record))
        return record

    def wait(self, client: EnvmgrClient, name: str) -> dict:
        """A live progress bar with the build's one-line message, updated in place; it gives way to the
        outcome line when the build ends (the log, with its paths, is `%envmgr log NAME`)."""
        rich = in_notebook(self.shell)
        handle = None
        if rich:
            from IPython.display import display

            handle = display({"text/plain": ""}, raw=True, display_id=True)
        while True:
            record = client.get(name)
            if record["status"] not in ACTIVE:
                if rich:
                    handle.update({"text/plain": ""}, raw=True)
                else:
                    sys.stdout.write("\r\033[K")
                return record
            if rich:  # text/plain beside text/html: papermill, nbconvert and consoles show the text
                handle.update({"text/html": progress_html(record), "text/plain": progress_line(record)}, raw=True)
            else:
                sys.stdout.write("\r\033[K" + progress_line(record)[:cli.terminal_width() - 1])
                sys.stdout.flush()
            time.sleep(0.5)

    def show_table(self, records: list) -> None:
        if not in_notebook(self.shell):
            cli.print_table(records)
            return
        from IPython.display import display

        display({"text/html": table_html(records), "text/plain": table_text(records)}, raw=True)

    def pip(self, line: str) -> None:
        """`%pip` in an envmgr environment's kernel: installs become a new revision, never an in-place edit."""
        own = os.environ.get("JUPYTER_ENVMGR_ENVIRONMENT", "")
        name = own.partition("/")[2] or own
        words = shlex.split(line)
        quiet = {"-q", "--quiet", "-U", "--upgrade", "--no-cache-dir", "--user"}
        if words[:1] == ["install"] and words[1:] and all(not w.startswith("-") or w in quiet for w in words[1:]):
            packages = [w for w in words[1:] if not w.startswith("-")]
            if packages:
                print(f"{name} is an envmgr environment: adding {' '.join(packages)} as a new revision "
                      "(the running kernel keeps its own revision until it restarts)")
                try:
                    args = cli.parse_args(cli.build_parser(prog="%pip", in_kernel=True), ["install", *packages])
                    args.pip = True
                    self.install(EnvmgrClient.discover(), args)
                except ClientError as e:
                    print(f"error: {e.message}", file=sys.stderr)
                return None
        if words[:1] in (["list"], ["freeze"]):
            from importlib import metadata

            dists = sorted({(d.metadata["Name"] or "", d.version) for d in metadata.distributions()}, key=lambda d: d[0].lower())
            print("\n".join(f"{n}=={v}" if words[0] == "freeze" else f"{n:40} {v}" for n, v in dists if n))
            return None
        print(f"This kernel runs {name!r}, an envmgr environment: its revisions are built by the server and never "
              f"changed in place. Add packages with `%pip install PKG...` or `%envmgr install PKG...` (a new revision), "
              f"or change its packages with `%envmgr update {name} ...` or in the Environments panel.")
        return None


def newer_revision_notice(client: EnvmgrClient) -> None:
    """In an environment's kernel: say when another revision serves now (this kernel keeps its own until restarted)."""
    own, mine = os.environ.get("JUPYTER_ENVMGR_ENVIRONMENT"), os.environ.get("JUPYTER_ENVMGR_REVISION")
    if not own or not mine:
        return
    namespace, _, name = own.partition("/")
    ready = EnvmgrClient(client.url, client.token, namespace).get(name).get("ready_revision")
    if ready and str(ready) != mine:
        print(f"note: this kernel runs revision {mine} of {name}; revision {ready} is ready: restart the kernel to use it")


def table_text(records: list) -> str:
    """The CLI's table, for clients that show only text/plain."""
    from .text import table_text as text

    return text(records, EMPTY)


def table_html(records: list) -> str:
    head = "".join(f"<th>{h.lower()}</th>" for h in TABLE_HEAD)
    rows = ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table_rows(records)]
    if not rows:
        rows.append(f'<tr><td colspan="{len(TABLE_HEAD)}">{html.escape(EMPTY)}</td></tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def progress_html(record: dict) -> str:
    value = float(record.get("progress") or 0)
    return (f'<div><progress value="{value:.3f}" max="1" style="width: 20em; max-width: 100%"></progress> '
            f"{value * 100:.0f}% <b>{html.escape(record['name'])}</b> {html.escape(progress_status(record))}</div>")


def load_ipython_extension(ipython) -> None:
    magics = EnvmgrMagics(ipython)
    ipython.register_magics(magics)
    if os.environ.get("JUPYTER_ENVMGR_ENVIRONMENT"):  # our environments have no pip: %pip goes through the server
        ipython.register_magic_function(magics.pip, "line", "pip")
