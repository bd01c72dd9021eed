"""Running the project's Flask CLI commands as an operator would, in the test environment."""

from __future__ import annotations

import os
import subprocess

from settings import ROOT


def flask_cli(app: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / ".venv" / "bin" / "flask"), "--app", app, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
