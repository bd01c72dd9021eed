"""Scaling out: projection throughput by projectors x projection workers, relay throughput by shards.

    python -m bench.scaling_bench [--events 20000] [--projectors 1 2] [--workers 1 2 4] [--shards 1 2 4]
    python -m bench.scaling_bench --only relay --shards 1 2 4 --events 50000

Projection: the topic is filled once; for each (projectors, workers) pair the read model and
the projections queue start empty, W projection workers (``celery worker -Q projections
--concurrency 1``, each its own process) are started and ready, then P projector processes
(``python -m projector``, one consumer group, cooperative rebalancing) start; the clock runs
from the first projector's start until ``processed_events`` holds every event.

Relay: for each shard count S the outbox is filled with COPY, then S relay processes start at
once, relay process i running ``relay_shards(shards=S, first=i)`` (what the relay task runs)
until the outbox is drained; the clock runs from their start to the last row published.

Every row carries the machine's load: on 2 shared cores other sessions move these figures.
Its own databases, vhost, topics and groups (``*_bench_scale``), beside ``make bench``.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from typing import Any

from bench import common
from bench.environment import LOG_DIR, apply, run_id
from bench.machine import BusyMeter, server_pids, tree_cpu_seconds
from bench.stats import row


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = common.parser("scaling_bench", __doc__ or "")
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--projectors", type=int, nargs="+", default=[1, 2])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--only", choices=["projection", "relay"], default=None)
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--timeout", type=float, default=900.0)
    args = p.parse_args(argv)
    if args.tiny:
        args.events = min(args.events, 600)
        args.projectors, args.workers, args.shards = [2], [1], [2]
    rid = run_id()
    suffix = "_scale" + ("_tiny" if args.tiny else "")
    env = apply(
        tiny=args.tiny,
        AUTH_DB_NAME=f"auth_bench{suffix}",
        QUERY_DB_NAME=f"query_bench{suffix}",
        RABBITMQ_VHOST=f"cqrs_bench{suffix}",
        BENCH_VHOST=f"cqrs_bench{suffix}",
        BEAT_SCHEDULE=str(LOG_DIR.parent / f"bench-celerybeat-schedule{suffix}"),
        KAFKA_TOPIC=f"user-events-bench-scale-{rid}",
        PROJECTOR_GROUP_ID=f"query-projector-bench-scale-{rid}",
    )
    from bench import resources

    resources.prepare_databases()
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    notes = [f"machine: {os.cpu_count()} CPUs, shared with other sessions; load = 1-minute loadavg"]
    if args.only in (None, "projection"):
        rows += _projection(args, env, rid, notes)
    if args.only in (None, "relay"):
        rows += _relay(args, env["KAFKA_TOPIC"] + "-relay", notes)
    result = {
        "name": "scaling",
        "params": {k: getattr(args, k) for k in ("events", "projectors", "workers", "shards", "partitions")},
        "rows": rows,
        "notes": notes,
        "seconds": time.monotonic() - started,
    }
    common.write_result(args.out, result)
    common.print_rows(result)
    return result


def _conditions(busy: float) -> str:
    return f"machine busy {busy:.0%}, load {os.getloadavg()[0]:.2f}"


# --- projection -------------------------------------------------------------------------------


def _projection(args: Any, env: dict[str, str], rid: str, notes: list[str]) -> list[dict[str, Any]]:
    from bench import resources
    from bench.events import fill_topic, user_events
    from bench.processes import stop_stale_processes

    topic = env["KAFKA_TOPIC"]
    stop_stale_processes()
    resources.prepare_vhost()
    resources.create_topic(topic, args.partitions)
    rows = []
    try:
        fill_seconds = fill_topic(topic, list(user_events(args.events)))
        notes.append(
            f"projection: {args.events:,} events in {args.partitions} partitions ({fill_seconds:.1f} s)"
        )
        for projectors in args.projectors:
            for workers in args.workers:
                m = _measure_projection(
                    args, env, topic, f"{rid}-{projectors}p{workers}w", projectors, workers
                )
                label = f"projection, {projectors} projector(s) x {workers} worker process(es)"
                cpu = ", ".join(f"{k} {v:.0f}" for k, v in m["cpu_us_per_event"].items())
                rows.append(
                    row(f"{label} [{m['conditions']}]; CPU µs/event: {cpu}", round(m["rate"], 1), "events/s")
                )
    finally:
        resources.delete_topic(topic)
        resources.reset_query()
        resources.purge_queues()
    return rows


def _measure_projection(
    args: Any, env: dict[str, str], topic: str, tag: str, projectors: int, workers: int
) -> dict[str, Any]:
    from bench import resources
    from bench.environment import free_port
    from bench.processes import bench_processes, wait_celery_ready

    resources.reset_query()
    resources.purge_queues()
    procs = bench_processes(
        {**env, "KAFKA_TOPIC": topic, "PROJECTOR_GROUP_ID": f"query-projector-bench-{tag}"},
        LOG_DIR / f"scaling-{tag}",
    )
    engine = resources.query_engine()
    try:
        names = [f"projection_worker_{i}" for i in range(workers)]
        for name in names:
            own = {"PROJECTION_CONCURRENCY": "1", "PROJECTION_METRICS_PORT": str(free_port())}
            procs.start("projection_worker", own, as_name=name)
        for name in names:
            wait_celery_ready(procs, name)
        feeders = [f"projector_{i}" for i in range(projectors)]
        pids = {name: procs.pid(name) for name in names}
        cpu_before = tree_cpu_seconds(pids | server_pids())
        meter = BusyMeter().start()
        t0 = time.perf_counter()
        for name in feeders:
            procs.start("projector", {"PROJECTOR_METRICS_PORT": str(free_port())}, as_name=name)
        deadline = time.monotonic() + args.timeout
        count = 0
        while count < args.events:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {count} of {args.events} events projected after {args.timeout} s")
            for name in (*names, *feeders):
                if not procs.alive(name):
                    raise RuntimeError(f"{name} died:\n{procs.log_text(name)[-3000:]}")
            time.sleep(0.2)
            count = int(resources.sql(engine, "SELECT count(*) FROM read_model.processed_events"))
        elapsed = time.perf_counter() - t0
        busy = meter.stop()
        conditions = _conditions(busy)
        pids |= {name: procs.pid(name) for name in feeders}
        cpu = {k: v - cpu_before.get(k, 0.0) for k, v in tree_cpu_seconds(pids | server_pids()).items()}
    finally:
        procs.stop_all()
    by_kind: dict[str, float] = {}
    for name, seconds in cpu.items():
        kind = name.rsplit("_", 1)[0] if name[-1].isdigit() else name
        by_kind[kind] = by_kind.get(kind, 0.0) + seconds
    return {
        "rate": args.events / elapsed,
        "cpu_us_per_event": {k: 1e6 * v / args.events for k, v in by_kind.items()},
        "conditions": conditions,
    }


# --- relay ------------------------------------------------------------------------------------


def _relay(args: Any, topic: str, notes: list[str]) -> list[dict[str, Any]]:
    from bench import resources
    from bench.events import fill_outbox, user_events

    resources.create_topic(topic, args.partitions)
    rows = []
    try:
        events = list(user_events(args.events))
        for shards in args.shards:
            resources.reset_auth()
            fill_outbox(resources.auth_engine(), events)
            resources.vacuum(resources.auth_engine(), "outbox")
            m = _measure_relay(topic, shards)
            unpublished = resources.sql(
                resources.auth_engine(), "SELECT count(*) FROM outbox WHERE published_at IS NULL"
            )
            if unpublished:
                raise RuntimeError(f"{unpublished} rows left unpublished with {shards} shards")
            rows.append(
                row(
                    f"relay, {shards} shard(s), {shards} relay process(es) [{m['conditions']}];"
                    f" CPU µs/event: relays {m['relay_cpu_us']:.0f}, "
                    + ", ".join(f"{k} {v:.0f}" for k, v in m["server_cpu_us"].items()),
                    round(args.events / m["seconds"], 1),
                    "events/s",
                )
            )
        notes.append(f"relay: {args.events:,} outbox rows per shard count, batch {_batch()} rows")
    finally:
        resources.delete_topic(topic)
        resources.reset_auth()
    return rows


def _batch() -> int:
    from settings import load_settings

    return load_settings().relay_batch_size


def _measure_relay(topic: str, shards: int) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")  # librdkafka and engines do not survive fork
    start = context.Event()
    results = context.Queue()
    relays = [
        context.Process(target=_relay_process, args=(topic, shards, i, start, results)) for i in range(shards)
    ]
    for relay in relays:
        relay.start()
    ready = [results.get(timeout=120) for _ in relays]
    assert all(r == "ready" for r in ready), ready
    servers_before = tree_cpu_seconds(server_pids())
    meter = BusyMeter().start()
    t0 = time.perf_counter()
    start.set()
    done = [results.get(timeout=900) for _ in relays]
    elapsed = max(d["finished"] for d in done) - t0
    busy = meter.stop()
    servers = {k: v - servers_before.get(k, 0.0) for k, v in tree_cpu_seconds(server_pids()).items()}
    for relay in relays:
        relay.join(30)
    published = sum(d["published"] for d in done)
    return {
        "seconds": elapsed,
        "relay_cpu_us": 1e6 * sum(d["cpu"] for d in done) / max(1, published),
        "server_cpu_us": {k: 1e6 * v / max(1, published) for k, v in servers.items()},
        "conditions": _conditions(busy),
    }


def _relay_process(topic: str, shards: int, first: int, start: Any, results: Any) -> None:
    """One relay worker: what the relay task runs, in a loop until its view of the outbox is empty."""
    from sqlalchemy import create_engine, text

    from outbox_relay.relay import kafka_producer, relay_shards
    from settings import load_settings

    settings = load_settings()
    engine = create_engine(settings.relay_database_url)
    producer = kafka_producer(
        settings.kafka_bootstrap,
        settings.relay_delivery_timeout_ms,
        **{"linger.ms": settings.relay_linger_ms},
    )
    producer.list_topics(topic, timeout=10)
    results.put("ready")
    start.wait()
    cpu0 = time.process_time()
    published = 0
    while True:
        result = relay_shards(
            engine,
            producer,
            topic,
            shards=shards,
            first=first,
            batch_size=settings.relay_batch_size,
            max_seconds=settings.relay_max_seconds,
            delivery_timeout_s=settings.relay_delivery_timeout_ms / 1000 + 2,
            lock_timeout_s=settings.relay_lock_timeout_seconds,
        )
        published += result.published
        if result.failed:
            raise RuntimeError(f"relay {first}: {result.failed} rows not acknowledged")
        if not result.published and not result.more_pending:
            with engine.connect() as conn:
                left = conn.execute(text("SELECT count(*) FROM outbox WHERE published_at IS NULL")).scalar()
            if not left:
                break
            time.sleep(0.01)  # another relay holds the shard with rows left: let it finish
    results.put({"published": published, "cpu": time.process_time() - cpu0, "finished": time.perf_counter()})


if __name__ == "__main__":
    main()
