"""``make bench``: every benchmark, one process each, then the JSON, Markdown table and plots.

    python -m bench.run_all [--tiny] [--only relay e2e] [--skip write_api] [--profile]
                            [--quiet-wait 120] [--results-dir bench/results]
                            [--args relay "--events 50000"] ...

Each benchmark runs as ``python -m bench.<name>_bench`` in its own process with the
benchmark environment (own databases, topics, groups, vhost and ports); this process imports
no project module and changes nothing in its own environment, so it can be called from a test
(``python -m bench.run_all --tiny`` takes well under a minute). Before each benchmark it waits
(at most ``--quiet-wait`` s) for the machine to be idle, since other work on a 2-core machine
skews the figures, and records how busy it was.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import report
from bench.environment import BENCH_ENV, RESULTS_DIR, ROOT
from bench.machine import BusyMeter, wait_until_quiet

# name -> (module, arguments of a full run, arguments of a tiny run or None to skip it)
SCRIPTS: dict[str, tuple[str, list[str], list[str] | None]] = {
    "relay": ("bench.relay_bench", [], []),
    "projection": ("bench.projection_bench", [], []),
    "e2e": ("bench.e2e_bench", [], []),
    "read_api": ("bench.read_api_bench", [], []),
    "write_api": ("bench.write_api_bench", [], []),
    "consistency": ("bench.consistency_bench", [], []),
    "idle": ("bench.idle_bench", [], []),
    "scaling": ("bench.scaling_bench", [], []),
    "erasure": ("bench.erasure_bench", [], []),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.run_all",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--tiny", action="store_true", help="small sizes: a smoke run of every benchmark")
    p.add_argument("--only", nargs="+", choices=list(SCRIPTS), default=None)
    p.add_argument("--skip", nargs="+", choices=list(SCRIPTS), default=[])
    p.add_argument("--profile", action="store_true", help="profile where the scripts support it")
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=None,
        help="seconds to wait at most for an idle machine before each benchmark (default 120, tiny 0)",
    )
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    p.add_argument(
        "--args",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "ARGS"),
        help='extra arguments for one benchmark, e.g. --args relay "--events 50000"',
    )
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per benchmark at most")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_wait = args.quiet_wait if args.quiet_wait is not None else (0.0 if args.tiny else 120.0)
    names = [n for n in (args.only or list(SCRIPTS)) if n not in args.skip]
    extra: dict[str, list[str]] = {}
    for name, text in args.args:
        if name not in SCRIPTS:
            raise SystemExit(f"--args: unknown benchmark {name!r}")
        extra.setdefault(name, []).extend(shlex.split(text))
    results_dir: Path = args.results_dir.resolve()
    results_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    started_at = report.now()
    summaries: dict[str, dict[str, Any]] = {}
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    # The children switch to BENCH_ENV themselves; these only make sure nothing from the
    # caller's environment (a test session's, say) points them elsewhere.
    for key in (*BENCH_ENV, "BENCH_VHOST"):
        env.pop(key, None)
    for name in names:
        out = results_dir / f"{name}.json"
        out.unlink(missing_ok=True)
        module, full_args, tiny_args = SCRIPTS[name]
        if args.tiny and tiny_args is None:
            continue
        command = [sys.executable, "-m", module, "--out", str(out)]
        command += ["--tiny", *tiny_args] if args.tiny and tiny_args is not None else full_args
        command += ["--profile"] if args.profile else []
        command += extra.get(name, [])
        machine = wait_until_quiet(quiet_wait) if quiet_wait > 0 else {}
        shown = " ".join(["python", *command[1:]]).replace(str(ROOT) + "/", "")
        print(f"\n### {name}: {shown}", flush=True)
        t0 = time.monotonic()
        meter = BusyMeter().start()
        try:
            proc = subprocess.run(command, cwd=ROOT, env=env, timeout=args.timeout, check=False)
            ok = proc.returncode == 0 and out.exists()
            error = "" if ok else f"exit code {proc.returncode}"
        except subprocess.TimeoutExpired:
            ok, error = False, f"timed out after {args.timeout:.0f} s"
        summaries[name] = {
            "ok": ok,
            "error": error,
            "seconds": round(time.monotonic() - t0, 1),
            "command": shown,
            "machine_before": machine,
            "machine_during": {"busy": meter.stop(), "loadavg_1m": round(os.getloadavg()[0], 2)},
        }
    if args.only or args.skip:
        _keep_earlier_results(results_dir, summaries)
    meta = {
        "started": started_at,
        "tiny": args.tiny,
        "partial": bool(args.only or args.skip),
        "seconds": time.monotonic() - started,
        "command": "python -m bench.run_all " + " ".join(argv if argv is not None else sys.argv[1:]),
        "cpus": os.cpu_count(),
    }
    document = report.build(results_dir, summaries, meta)
    print("\n" + "\n".join(report.table_rows(document)))
    print("\nIssue 13, every figure beside its target:\n" + "\n".join(report.scoreboard(document)))
    print("\n".join(report.machine_lines(document)))
    print(f"\nresults: {results_dir}/results.md, results.json, " + ", ".join(document["plots"]))
    print(f"total {time.monotonic() - started:.1f} s")
    return 0 if all(s["ok"] for s in summaries.values()) else 1


def _keep_earlier_results(results_dir: Path, summaries: dict[str, dict[str, Any]]) -> None:
    """A partial run (--only/--skip) keeps in the report what earlier runs left in the folder."""
    import json

    for name in SCRIPTS:
        path = results_dir / f"{name}.json"
        if name in summaries or not path.exists():
            continue
        earlier = json.loads(path.read_text())
        summaries[name] = {
            "ok": True,
            "error": "",
            "seconds": round(earlier.get("seconds", 0.0), 1),
            "command": f"(an earlier run, finished {earlier.get('finished_at', '?')})",
            "machine_before": {},
        }


if __name__ == "__main__":
    sys.exit(main())
