"""What a failed system test leaves behind for whoever reads the report: each process alive or
not, the warnings at the end of its log, and the Python stacks of the pipeline's processes.

A pipeline that stops moving fails a test by timeout; without this the report says only
"timed out", and the log folder is gone with the CI checkout.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.processes import ProcessGroup

# The processes whose stacks tell where a stalled pipeline waits.
STACKED = ("projector", "projection_worker", "relay_worker")
LOG_LINES = 12


def system_report(group: ProcessGroup) -> str:
    parts = []
    for name in sorted(group.procs):
        state = "alive" if group.alive(name) else f"exited {group.procs[name].returncode}"
        lines = [
            line
            for line in group.log_text(name).splitlines()
            if "WARNING" in line or "ERROR" in line or "Traceback" in line or "CRITICAL" in line
        ]
        parts.append(f"--- {name} (pid {group.pid(name)}, {state}); last warnings:")
        parts.extend(line[:400] for line in lines[-LOG_LINES:])
    # The venv's bin is on PATH under make, not when pytest is run as .venv/bin/python -m pytest.
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    for name in STACKED:
        if spy and group.alive(name):
            try:
                dump = subprocess.run(
                    [spy, "dump", "--pid", str(group.pid(name))], capture_output=True, text=True, timeout=20
                )
                parts.append(f"--- py-spy dump of {name}:\n{dump.stdout[-6000:]}{dump.stderr[-500:]}")
            except subprocess.TimeoutExpired:
                parts.append(f"--- py-spy dump of {name}: timed out")
    return "\n".join(parts)
