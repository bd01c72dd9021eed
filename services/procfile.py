"""The Procfile's process definitions as argument lists: the one place command lines live.

``make run`` (supervisord, configured by ``services.supervise``), the tests and the benchmarks
all start processes from these lines, so a process kind is defined once. A line is
``name: [VAR=value ...] exec program args``, where ``${VAR:-default}`` takes VAR from the
given environment.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PROCFILE = Path(__file__).resolve().parent.parent / "Procfile"
_EXPANSION = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")
_ASSIGNMENT = re.compile(r"^(\w+)=(.*)$")


@dataclass(frozen=True)
class ProcessDefinition:
    name: str
    argv: list[str]
    env: dict[str, str]  # the line's own VAR=value assignments


def process_definitions(env: Mapping[str, str], procfile: Path = PROCFILE) -> dict[str, ProcessDefinition]:
    """Every process of the Procfile, with ``${VAR:-default}`` expanded from ``env``."""
    found: dict[str, ProcessDefinition] = {}
    for line in procfile.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, command = line.partition(":")
        expanded = _EXPANSION.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), command)
        words = shlex.split(expanded)
        assignments: dict[str, str] = {}
        while words and (match := _ASSIGNMENT.match(words[0])):
            assignments[match.group(1)] = match.group(2)
            words.pop(0)
        if words and words[0] == "exec":
            words.pop(0)
        found[name.strip()] = ProcessDefinition(name.strip(), words, assignments)
    return found


def exec_process(name: str) -> None:
    """Replace this process with the Procfile's ``name`` (containers start processes so)."""
    definition = process_definitions(os.environ)[name]
    os.execvpe(definition.argv[0], definition.argv, {**os.environ, **definition.env})


if __name__ == "__main__":
    # python -m services.procfile NAME
    names = sorted(process_definitions(os.environ))
    if len(sys.argv) != 2 or sys.argv[1] not in names:
        raise SystemExit(f"usage: python -m services.procfile {{{','.join(names)}}}")
    exec_process(sys.argv[1])
