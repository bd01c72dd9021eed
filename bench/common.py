"""Argument parsing and result files shared by the benchmark scripts."""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

from bench.environment import RESULTS_DIR


def parser(name: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m bench.{name}", description=description)
    p.add_argument("--tiny", action="store_true", help="a few seconds' smoke run with small sizes")
    p.add_argument(
        "--out",
        type=Path,
        default=RESULTS_DIR / f"{name.removesuffix('_bench')}.json",
        help="where to write the JSON result (%(default)s)",
    )
    p.add_argument("--profile", action="store_true", help="also profile (py-spy / pyinstrument)")
    return p


def write_result(out: Path, result: dict[str, Any]) -> None:
    result.setdefault("machine", {"cpus": _cpus(), "python": platform.python_version()})
    result.setdefault("finished_at", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str))


def print_rows(result: dict[str, Any]) -> None:
    print(f"== {result['name']} ({result.get('seconds', 0):.1f} s)")
    for r in result.get("rows", []):
        value = r["value"]
        shown = (
            f"{value:,.1f}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else value
        )
        verdict = "" if r.get("ok") is None else ("  OK" if r["ok"] else "  MISSED")
        target = f"  (target {r['target']})" if r.get("target") else ""
        print(f"   {r['metric']}: {shown} {r.get('unit', '')}{target}{verdict}")
    for note in result.get("notes", []):
        print(f"   note: {note}")


def _cpus() -> int:
    import os

    return os.cpu_count() or 0
