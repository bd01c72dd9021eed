"""Idle cost: every process of the Procfile running, no load; CPU and memory per process.

    python -m bench.idle_bench [--settle 15] [--window 60]

Starts every Procfile line (as ``make run`` does, on the benchmark's databases, topic, vhost
and ports), waits until each is ready and ``--settle`` seconds more (start-up work done),
then measures for ``--window`` seconds: CPU time of each process and its children (from
/proc, so other load on the machine does not change it), and memory as RSS (what the issue
counts; a forked child's pages shared with its parent count in both) and PSS (each shared
page split between the processes sharing it: what the processes take together). ``make run``
adds supervisord (one more Python process, measured here at the start as ``supervisord``
when ``--supervisord`` is given; else not counted).
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Any

from bench import common
from bench.environment import LOG_DIR, apply, run_id
from bench.machine import BusyMeter, _children, tree_cpu_seconds
from bench.stats import row

# Issue 13: "Python processes under 1 % of a core and 600 MiB together when idle" (was 2.7 %
# of a core and 1.37 GiB of RSS under honcho).
TARGET_CPU_PERCENT = 1.0
TARGET_RSS_MIB = 600.0
BEFORE = {"cpu_percent": 2.7, "rss_mib": 1.37 * 1024}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = common.parser("idle_bench", __doc__ or "")
    p.add_argument("--settle", type=float, default=15.0, help="seconds after every process is ready")
    p.add_argument("--window", type=float, default=60.0, help="seconds measured")
    args = p.parse_args(argv)
    if args.tiny:
        args.settle = min(args.settle, 1.0)
        args.window = min(args.window, 3.0)
    rid = run_id()
    topic = f"user-events-bench-idle-{rid}"
    env = apply(tiny=args.tiny, KAFKA_TOPIC=topic, PROJECTOR_GROUP_ID=f"query-projector-bench-idle-{rid}")
    started = time.monotonic()
    result = run(args, env, topic, rid)
    result["seconds"] = time.monotonic() - started
    common.write_result(args.out, result)
    common.print_rows(result)
    return result


def run(args: Any, env: dict[str, str], topic: str, rid: str) -> dict[str, Any]:
    from bench import resources
    from bench.processes import bench_processes, stop_stale_processes, wait_celery_ready, wait_http_ok
    from services.procfile import process_definitions

    stop_stale_processes()
    resources.prepare_databases()
    resources.prepare_vhost()
    resources.create_topic(topic)
    procs = bench_processes(env, LOG_DIR / f"idle-{rid}")
    names = list(process_definitions(env))
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    try:
        # Flower refuses to start without a login: the benchmark's own, never shown.
        flower = {"FLOWER_BASIC_AUTH": f"bench:{secrets.token_urlsafe(18)}"}
        for name in names:
            procs.start(name, flower if name == "flower" else None)
        for name in names:
            if name in ("auth_api", "query_api"):
                wait_http_ok(int(env["AUTH_API_PORT" if name == "auth_api" else "QUERY_API_PORT"]))
            elif name.endswith("worker"):
                wait_celery_ready(procs, name)
            elif name == "projector":
                procs.wait_for_log("projector", "projector: assigned")
        time.sleep(args.settle)
        pids = {name: procs.pid(name) for name in names}
        before = tree_cpu_seconds(pids)
        meter = BusyMeter().start()
        t0 = time.monotonic()
        time.sleep(args.window)
        wall = time.monotonic() - t0
        busy = meter.stop()
        cpu = {k: 100 * (v - before.get(k, 0.0)) / wall for k, v in tree_cpu_seconds(pids).items()}
        memory = {name: tree_memory_kib(pid) for name, pid in pids.items()}
        for name in names:
            if not procs.alive(name):
                raise RuntimeError(f"{name} exited while idle:\n{procs.log_text(name)[-2000:]}")
    finally:
        procs.stop_all()
        resources.delete_topic(topic)
        resources.purge_queues()
    total_cpu = sum(cpu.values())
    rss = sum(m["rss"] for m in memory.values()) / 1024
    pss = sum(m["pss"] for m in memory.values()) / 1024
    count = sum(m["processes"] for m in memory.values())
    rows.append(
        row(
            f"idle: Python processes' CPU, {len(names)} Procfile lines (before: {BEFORE['cpu_percent']:g}%)",
            round(total_cpu, 2),
            "% of a core",
            f"< {TARGET_CPU_PERCENT:g}",
            total_cpu < TARGET_CPU_PERCENT,
        )
    )
    rows.append(
        row(
            f"idle: Python processes' RSS, {count} processes (before: {BEFORE['rss_mib']:,.0f} MiB)",
            round(rss, 1),
            "MiB",
            f"< {TARGET_RSS_MIB:g}",
            rss < TARGET_RSS_MIB,
        )
    )
    rows.append(row("idle: Python processes' PSS (shared pages split between sharers)", round(pss, 1), "MiB"))
    for name in names:
        m = memory[name]
        notes.append(
            f"{name}: {cpu[name]:.2f}% of a core, {m['processes']} process(es), "
            f"RSS {m['rss'] / 1024:.0f} MiB, PSS {m['pss'] / 1024:.0f} MiB"
        )
    notes.append(
        f"measured for {args.window:g} s after {args.settle:g} s of settling; the whole machine (others' "
        f"work included) was {100 * busy:.0f}% busy; supervisord of `make run` (one more Python process) "
        "is not counted"
    )
    return {
        "name": "idle",
        "params": {"settle": args.settle, "window": args.window},
        "rows": rows,
        "series": {},
        "notes": notes,
        "per_process": {n: {"cpu_percent": cpu[n], **memory[n]} for n in names},
    }


def tree_memory_kib(root: int) -> dict[str, int]:
    """RSS and PSS (KiB) of a process and its descendants, and how many processes."""
    tree = _children()
    seen: set[int] = set()
    stack = [root]
    rss = pss = 0
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        stack.extend(tree.get(pid, []))
        rollup = Path(f"/proc/{pid}/smaps_rollup")
        try:
            fields = dict(
                (line.split(":", 1)[0], int(line.split()[1]))
                for line in rollup.read_text().splitlines()[1:]
                if line.split()[-1] == "kB"
            )
        except (OSError, ValueError, IndexError):
            continue
        rss += fields.get("Rss", 0)
        pss += fields.get("Pss", 0)
    return {"rss": rss, "pss": pss, "processes": len(seen)}


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
