"""A tiny pass of every benchmark, so the scripts do not rot. No timing is asserted here:
figures come from `make bench` on a quiet machine."""

from __future__ import annotations

import json
import subprocess
import sys

from settings import ROOT


def test_every_benchmark_runs_and_reports(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bench.run_all", "--tiny", "--results-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    report = json.loads((tmp_path / "results.json").read_text())
    assert report  # figures of every benchmark, whatever their values
    markdown = (tmp_path / "results.md").read_text()
    assert markdown.startswith("# Benchmark results")
    # Issue 13: every figure with a target is listed with PASS or MISS, and the machine's load.
    board = markdown.split("## Every figure with a target", 1)[1].split("## Every figure\n", 1)[0]
    verdicts = [line for line in board.splitlines() if line.endswith(("| PASS |", "| **MISS** |"))]
    for benchmark in ("write_api", "e2e", "read_api", "idle"):
        assert any(line.startswith(f"| {benchmark} |") for line in verdicts), benchmark
    assert "machine busy during it" in markdown
    assert list(tmp_path.glob("*.png")), "no plots written"
