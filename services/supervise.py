"""``make run``: every process of the Procfile under supervisord, which restarts one that dies.

The Procfile stays the one definition of each command line: this module turns its lines
(``services.procfile``, ``${VAR:-default}`` taken from the environment) into a supervisord
configuration, written under ``<DATA_DIR>/supervisor/``, and execs supervisord in the
foreground. A process that dies is logged (``exited: projector (terminated by SIGKILL; not
expected)``) and started again while the others keep serving; one that keeps dying within
``STARTSECS`` of its start is retried with a growing delay (1 s, 2 s, 3 s, ...).
Ctrl-C (SIGINT) or SIGTERM to supervisord stops every process with SIGTERM, then SIGKILL to
its whole process group after ``STOPWAITSECS``.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path

from services.procfile import PROCFILE, process_definitions

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
# A process that dies within STARTSECS of its start failed to start: supervisord waits
# 1 s, 2 s, ... before each new try and gives up (FATAL, logged) after STARTRETRIES tries in a row,
# about 80 minutes of crash-looping. One that ran longer is restarted at once.
STARTSECS = 5
STARTRETRIES = 100
# Longer than gunicorn's graceful_timeout (20 s), so the APIs drain before a SIGKILL.
STOPWAITSECS = 30


def _quote(value: str) -> str:
    # supervisord expands %(name)s in its values: a literal % (celery's -n name@%h) is %%.
    return value.replace("%", "%%")


def _program(name: str, argv: list[str], env: Mapping[str, str], log_dir: Path | None) -> str:
    program = VENV_BIN / argv[0]
    command = [str(program) if program.exists() else argv[0], *argv[1:]]
    environment = ",".join(f'{key}="{_quote(value)}"' for key, value in {**env, "SERVICE_NAME": name}.items())
    if log_dir is None:  # make run: every process's lines on supervisord's own stdout
        logs = "stdout_logfile=/dev/stdout\nstdout_logfile_maxbytes=0"
    else:
        logs = f"stdout_logfile={_quote(str(log_dir / f'{name}.log'))}\nstdout_logfile_maxbytes=0"
    return f"""
[program:{name}]
command={_quote(shlex.join(command))}
directory={_quote(str(ROOT))}
environment={environment}
autostart=true
autorestart=true
startsecs={STARTSECS}
startretries={STARTRETRIES}
stopsignal=TERM
stopwaitsecs={STOPWAITSECS}
stopasgroup=true
killasgroup=true
redirect_stderr=true
{logs}
"""


def supervisord_config(
    env: Mapping[str, str], run_dir: Path, *, log_dir: Path | None = None, procfile: Path = PROCFILE
) -> str:
    """supervisord's configuration for every Procfile process, ``${VAR:-default}`` from ``env``.

    Processes inherit supervisord's environment plus their line's own assignments; their
    output goes to supervisord's stdout, or to ``<log_dir>/<name>.log`` when given."""
    run = _quote(str(run_dir))
    sections = [
        f"""[supervisord]
nodaemon=true
logfile={run}/supervisord.log
logfile_maxbytes=10MB
pidfile={run}/supervisord.pid
childlogdir={run}
directory={_quote(str(ROOT))}

[unix_http_server]
file={run}/supervisor.sock
chmod=0700

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{run}/supervisor.sock
"""
    ]
    for name, definition in process_definitions(env, procfile).items():
        sections.append(_program(name, definition.argv, definition.env, log_dir))
    return "".join(sections)


def write_config(env: Mapping[str, str], run_dir: Path, *, log_dir: Path | None = None) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "supervisord.conf"
    path.write_text(supervisord_config(env, run_dir, log_dir=log_dir))
    return path


def main() -> None:
    from settings import load_settings

    env = dict(os.environ)
    env.setdefault("PYTHONPATH", str(ROOT))
    config = write_config(env, load_settings().data_dir / "supervisor")
    print(f"supervisord: {config} (supervisorctl -c {config} status)", flush=True)
    supervisord = VENV_BIN / "supervisord"
    os.execve(str(supervisord), [str(supervisord), "-n", "-c", str(config)], env)


if __name__ == "__main__":
    sys.exit(main())
