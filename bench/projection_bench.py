"""Projection throughput: a pre-filled topic of N events into the read model.

    python -m bench.projection_bench [--events 100000] [--workers 1 2] [--mode processes]

The topic is filled once. For each worker count, the read model and the projections queue
start empty, the projection workers are started and ready, then the real projector process
(``python -m projector``) starts on a fresh consumer group; the clock runs from the
projector's start until ``read_model.processed_events`` holds N rows.

--mode processes    N separate projection workers (the Procfile's, with concurrency 1)
--mode concurrency  one projection worker (the Procfile's) with concurrency N
"""

from __future__ import annotations

import time
from typing import Any

from bench import common
from bench.environment import LOG_DIR, apply, run_id
from bench.machine import server_pids, tree_cpu_seconds
from bench.stats import cumulative_to_rate, row

TARGET = 5_000


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = common.parser("projection_bench", __doc__ or "")
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--mode", choices=["processes", "concurrency"], default="processes")
    p.add_argument("--logins-per-user", type=int, default=3)
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--timeout", type=float, default=1500.0, help="give up after this many seconds")
    args = p.parse_args(argv)
    if args.tiny:
        args.events = min(args.events, 500)
        args.workers = args.workers[:1]
    rid = run_id()
    topic = f"user-events-bench-projection-{rid}"
    env = apply(tiny=args.tiny, KAFKA_TOPIC=topic, PROJECTOR_GROUP_ID=f"query-projector-bench-{rid}")
    started = time.monotonic()
    result = run(args, env, topic, rid)
    result["seconds"] = time.monotonic() - started
    common.write_result(args.out, result)
    common.print_rows(result)
    return result


def run(args: Any, env: dict[str, str], topic: str, rid: str) -> dict[str, Any]:
    from bench import resources
    from bench.events import fill_topic, user_events
    from bench.processes import stop_stale_processes

    stop_stale_processes()
    resources.prepare_databases()
    resources.prepare_vhost()
    resources.create_topic(topic, args.partitions)
    rows: list[dict[str, Any]] = []
    series: dict[str, Any] = {}
    notes: list[str] = []
    try:
        events = list(user_events(args.events, args.logins_per_user))
        fill_seconds = fill_topic(topic, events)
        del events
        notes.append(
            f"{args.events:,} events ({args.logins_per_user} logins per registration) in {topic}, "
            f"{args.partitions} partitions, filled in {fill_seconds:.1f} s; workers: "
            + (
                "separate `celery worker -Q projections --concurrency 1` processes"
                if args.mode == "processes"
                else "one `celery worker -Q projections --concurrency N`"
            )
        )
        for workers in args.workers:
            measured = _measure(args, env, topic, f"{rid}-{workers}", workers)
            label = f"projection, {workers} worker{'s' if workers > 1 else ''}"
            rows.append(
                row(
                    f"{label}: {args.events:,} events, projector start -> all processed",
                    round(measured["rate"], 1),
                    "events/s",
                    f">= {TARGET:,}",
                    measured["rate"] >= TARGET,
                )
            )
            rows.append(
                row(f"{label}: steady rate (10%..90% of events)", round(measured["steady"], 1), "events/s")
            )
            rows.append(
                row(
                    f"{label}: CPU of the projection worker processes per event "
                    "(less sensitive to other load than events/s)",
                    round(measured["workers_cpu_us_per_event"], 1),
                    "µs",
                )
            )
            series[f"{workers}w"] = measured["timeline"]
            shares = ", ".join(
                f"{k} {v:.0f}" for k, v in sorted(measured["cpu_us_per_event"].items(), key=lambda kv: -kv[1])
            )
            notes.append(f"{label}: CPU µs per event by process (servers shared with others): {shares}")
            if measured.get("busy") is not None:
                notes.append(f"{label}: whole machine CPU busy {measured['busy']:.0%} during the run")
            if measured.get("profile"):
                notes.append(f"{label}: profile {measured['profile']}")
    finally:
        resources.delete_topic(topic)
        resources.reset_query()
        resources.purge_queues()
    return {
        "name": "projection",
        "params": {
            "events": args.events,
            "workers": args.workers,
            "mode": args.mode,
            "logins_per_user": args.logins_per_user,
        },
        "rows": rows,
        "series": {"throughput": series},
        "notes": notes,
    }


def _measure(args: Any, env: dict[str, str], topic: str, tag: str, workers: int) -> dict[str, Any]:
    from bench import profiling, resources
    from bench.environment import free_port
    from bench.machine import BusyMeter
    from bench.processes import bench_processes, wait_celery_ready

    resources.reset_query()
    resources.purge_queues()
    extra = {"PROJECTOR_GROUP_ID": f"query-projector-bench-{tag}", "KAFKA_TOPIC": topic}
    procs = bench_processes({**env, **extra}, LOG_DIR / f"projection-{tag}")
    engine = resources.query_engine()
    profilers = []
    try:
        names = []
        if args.mode == "processes":
            for i in range(workers):
                name = f"projection_worker_{i}"
                # Each its own node name (from as_name) and metrics port.
                own = {"PROJECTION_CONCURRENCY": "1", "PROJECTION_METRICS_PORT": str(free_port())}
                procs.start("projection_worker", own, as_name=name)
                names.append(name)
        else:
            procs.start("projection_worker", {"PROJECTION_CONCURRENCY": str(workers)})
            names.append("projection_worker")
        for name in names:
            wait_celery_ready(procs, name)
        worker_pids = {name: procs.pid(name) for name in names}
        cpu_before = tree_cpu_seconds(worker_pids | server_pids())
        meter = BusyMeter().start()
        t0 = time.perf_counter()
        procs.start("projector")
        if args.profile:
            for name in names:
                out = args.out.parent / f"profile-projection-{workers}w-{name}.collapsed"
                profilers.append((profiling.start_record(procs.pid(name), out, duration=20), out))
        marks = [(0.0, 0)]
        deadline = time.monotonic() + args.timeout
        count = 0
        while count < args.events:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {count} of {args.events} events projected after {args.timeout} s")
            for name in (*names, "projector"):
                if not procs.alive(name):
                    raise RuntimeError(f"{name} died:\n{procs.log_text(name)[-3000:]}")
            time.sleep(0.2)
            count = int(resources.sql(engine, "SELECT count(*) FROM read_model.processed_events"))
            marks.append((time.perf_counter() - t0, count))
        elapsed = marks[-1][0]
        busy = meter.stop()
        pids = worker_pids | server_pids() | {"projector": procs.pid("projector")}
        cpu = {k: v - cpu_before.get(k, 0.0) for k, v in tree_cpu_seconds(pids).items()}
    finally:
        for proc, _ in profilers:
            profiling.finish(proc)
        procs.stop_all()
    dead = resources.sql(engine, "SELECT count(*) FROM dead_letters")
    if dead:
        raise RuntimeError(f"{dead} events were dead-lettered")
    profile_path = None
    for _, out in profilers:
        summary = out.with_suffix(".txt")
        profiling.summarize(out, summary)
        profile_path = str(summary)
    workers_cpu = sum(v for k, v in cpu.items() if k.startswith("projection_worker"))
    return {
        "cpu_us_per_event": {k: 1e6 * v / args.events for k, v in cpu.items()},
        "workers_cpu_us_per_event": 1e6 * workers_cpu / args.events,
        "rate": args.events / elapsed,
        "steady": _steady(marks, args.events),
        "timeline": cumulative_to_rate(marks),
        "busy": busy,
        "profile": profile_path,
    }


def _steady(marks: list[tuple[float, int]], total: int) -> float:
    """Rate between the samples where 10% and 90% of the events were processed."""
    low = next((m for m in marks if m[1] >= total * 0.1), marks[0])
    high = next((m for m in marks if m[1] >= total * 0.9), marks[-1])
    if high[0] <= low[0]:
        return total / max(marks[-1][0], 1e-9)
    return (high[1] - low[1]) / (high[0] - low[0])


if __name__ == "__main__":
    main()
