"""Running the project's operator commands as an operator would, in the test environment."""

from __future__ import annotations

import subprocess

from settings import ROOT
from tests.support.environment import child_env

VENV_BIN = ROOT / ".venv" / "bin"


def flask_cli(app: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``flask --app APP ARGS`` (the write side's commands, migrations)."""
    return _run([str(VENV_BIN / "flask"), "--app", app, *args], timeout)


def projector_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m projector ARGS`` (rebuild, dead letters)."""
    return _run([str(VENV_BIN / "python"), "-m", "projector", *args], timeout)


def _run(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=timeout)
