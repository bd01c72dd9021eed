"""celery_config.launch: one worker or beat subcommand, the celery command's options."""

from __future__ import annotations

import subprocess
import sys

import pytest

from celery_config.launch import main
from settings import ROOT


@pytest.mark.parametrize(
    "argv",
    [[], ["worker"], ["-A", "celery_config.worker:relay"], ["--broker", "x", "worker"]],
)
def test_it_needs_an_app_then_a_command(argv):
    with pytest.raises(SystemExit, match="usage"):
        main(argv)


def test_it_runs_only_worker_and_beat():
    with pytest.raises(SystemExit, match="unsupported command 'shell'"):
        main(["-A", "celery_config.worker:relay", "shell"])


def test_the_worker_takes_the_celery_commands_options_without_loading_other_subcommands():
    # --help parses the worker's own options and exits before connecting anywhere.
    code = (
        "import sys\n"
        "from celery_config.launch import main\n"
        "try:\n"
        "    main(['-A', 'celery_config.worker:relay', 'worker', '--help'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "loaded = [m for m in ('celery.bin.celery', 'click_repl', 'flower') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--concurrency" in result.stdout and "--without-gossip" in result.stdout
