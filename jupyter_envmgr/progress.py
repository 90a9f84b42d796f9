"""Build progress read from the build log, so a local build and a Kubernetes Job report alike.

The runner marks each step with `==> [i/n] name: argv`; within a step, uv's summary lines
(Resolved / Prepared / Installed) and explicit `[envmgr-progress] 0.4 message` lines from our own
steps move the bar.
"""
from __future__ import annotations

import re

STEP_RE = re.compile(r"^==> \[(\d+)/(\d+)\] ([\w-]+):")
EXPLICIT_RE = re.compile(r"^\[envmgr-progress\] ([0-9.]+) ?(.*)$")
#: Relative size of each step; unknown steps weigh 1.
STEP_WEIGHTS = {"venv": 1, "install": 12, "lock": 0.5, "init": 1, "solve": 3, "link": 8, "pip": 4, "activate": 0.5, "conda": 11, "bytecode": 2}
UV_LINES = [
    (re.compile(r"^Resolved (\d+) packages?"), 0.3, "resolved {0} packages"),
    (re.compile(r"^Prepared (\d+) packages?"), 0.8, "prepared {0} packages"),
    (re.compile(r"^Installed (\d+) packages?"), 1.0, "installed {0} packages"),
    (re.compile(r"^Audited (\d+) packages?"), 1.0, "{0} packages already installed"),
    (re.compile(r"^ ?Downloading (\S+)"), None, "downloading {0}"),
    (re.compile(r"^ ?Building (\S+)"), None, "building {0}"),
]
STEP_MESSAGES = {
    "venv": "creating the environment",
    "install": "installing packages",
    "lock": "writing the lock",
    "init": "running the init script",
    "solve": "solving",
    "link": "installing conda packages",
    "pip": "installing pip packages",
    "conda": "solving and installing conda packages",
    "activate": "capturing the activation",
    "bytecode": "compiling bytecode",
}


class LogProgress:
    """Feed it log lines; read `progress` (0..1) and `message`."""

    def __init__(self, step_names: list = ()) -> None:
        self.steps: list = list(step_names)
        self.index = 0
        self.total = len(self.steps)
        self.within = 0.0
        self.message = "starting"

    def feed(self, line: str) -> bool:
        """Take one line; True when progress or message changed."""
        line = line.rstrip("\n")
        m = STEP_RE.match(line)
        if m:
            self.index, self.total, name = int(m[1]), int(m[2]), m[3]
            while len(self.steps) < self.index:
                self.steps.append(name)
            self.steps[self.index - 1] = name
            self.within = 0.0
            self.message = STEP_MESSAGES.get(name, name)
            return True
        m = EXPLICIT_RE.match(line)
        if m:
            self.within = min(1.0, max(self.within, float(m[1])))
            self.message = m[2] or self.message
            return True
        for pattern, within, template in UV_LINES:
            m = pattern.match(line)
            if m:
                if within is not None:
                    self.within = max(self.within, within)
                self.message = template.format(*m.groups())
                return True
        return False

    @property
    def progress(self) -> float:
        if not self.total:
            return 0.0
        weights = [STEP_WEIGHTS.get(n, 1) for n in self.steps] + [1] * (self.total - len(self.steps))
        done = sum(weights[: self.index - 1]) + weights[self.index - 1] * self.within
        return round(min(0.99, done / sum(weights)), 3)
