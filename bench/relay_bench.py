"""Relay throughput: a pre-filled outbox of N events to Kafka with ``relay_outbox``.

    python -m bench.relay_bench [--events 100000] [--batch-size 1000] [--profile]

The outbox of ``auth_bench`` is filled with COPY (payloads from ``new_event`` and
``serialize_event``), then ``relay_outbox`` runs in this process as the relay task runs it
(same producer settings, batch size and time budget, called again while rows are left) until
the outbox is empty. Each batch's end is timed through a wrapper of ``_produce_and_wait``.
"""

from __future__ import annotations

import time
from typing import Any

from bench import common
from bench.environment import apply, run_id
from bench.machine import server_pids, tree_cpu_seconds
from bench.stats import row

TARGET = 10_000


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = common.parser("relay_bench", __doc__ or "")
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--batch-size", type=int, default=None, help="rows per batch (RELAY_BATCH_SIZE)")
    p.add_argument("--partitions", type=int, default=6)
    args = p.parse_args(argv)
    if args.tiny:
        args.events = min(args.events, 3000)
    topic = f"user-events-bench-relay-{run_id()}"
    apply(tiny=args.tiny, KAFKA_TOPIC=topic)
    started = time.monotonic()
    result = run(args, topic)
    result["seconds"] = time.monotonic() - started
    common.write_result(args.out, result)
    common.print_rows(result)
    return result


def run(args: Any, topic: str) -> dict[str, Any]:
    from bench import resources
    from bench.events import user_events

    resources.prepare_databases()
    resources.create_topic(topic, args.partitions)
    try:
        events = list(user_events(args.events))
        measured = _measure(args, topic, events, profile=False)
        result = {
            "name": "relay",
            "params": {
                "events": args.events,
                "batch_size": measured["batch_size"],
                "partitions": args.partitions,
            },
            "rows": [
                row(
                    f"relay: outbox -> Kafka, {args.events:,} events",
                    round(measured["rate"], 1),
                    "events/s",
                    f">= {TARGET:,}",
                    measured["rate"] >= TARGET,
                ),
                row(
                    f"relay: median time of a {measured['batch_size']}-row batch: "
                    "Kafka produce + delivery reports",
                    round(measured["batch_ms_p50"], 1),
                    "ms",
                ),
                row(
                    "relay: share of the run in Kafka produce + wait (rest: database)",
                    f"{100 * measured['kafka_share']:.0f}%",
                    "",
                ),
                row(
                    "relay: CPU µs per event (the relay process incl. librdkafka threads; servers)",
                    ", ".join(f"{k} {v:.0f}" for k, v in measured["cpu_us_per_event"].items()),
                    "",
                ),
            ],
            "series": {"throughput": measured["timeline"], "batch_ms": measured["batch_ms"]},
            "notes": [f"fill (COPY of {args.events:,} rows): {measured['fill_seconds']:.1f} s"],
        }
        if args.profile:
            profiled = _measure(args, topic, events[: min(len(events), 30000)], profile=True)
            result["notes"].append(f"profile: {profiled['profile_path']}")
        return result
    finally:
        resources.delete_topic(topic)
        resources.reset_auth()


def _measure(args: Any, topic: str, events: list[Any], *, profile: bool) -> dict[str, Any]:
    from bench import resources
    from bench.events import fill_outbox
    from outbox_relay import relay as relay_module
    from outbox_relay.relay import kafka_producer, relay_outbox
    from settings import load_settings

    settings = load_settings()
    batch_size = args.batch_size or settings.relay_batch_size
    engine = resources.auth_engine()
    resources.reset_auth()
    fill_started = time.perf_counter()
    fill_outbox(engine, events)
    fill_seconds = time.perf_counter() - fill_started
    resources.vacuum(engine, "outbox")  # a live outbox is autovacuumed; start from that state

    producer = kafka_producer(settings.kafka_bootstrap, settings.relay_delivery_timeout_ms)
    producer.list_topics(topic, timeout=10)  # metadata first, as a long-lived relay has it

    original = relay_module._produce_and_wait
    marks: list[tuple[float, int]] = []
    batch_ms: list[float] = []
    state = {"published": 0, "t0": 0.0}

    def timed(producer_: Any, topic_: str, rows: list[Any], timeout_s: float) -> list[int]:
        t = time.perf_counter()
        delivered = original(producer_, topic_, rows, timeout_s)
        now = time.perf_counter()
        batch_ms.append((now - t) * 1000)
        state["published"] += len(delivered)
        marks.append((now - state["t0"], state["published"]))
        return delivered

    relay_module._produce_and_wait = timed  # type: ignore[assignment]
    profiler = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        profiler.start()
    try:
        servers_before = tree_cpu_seconds(server_pids())
        cpu_before = time.process_time()
        state["t0"] = time.perf_counter()
        marks.append((0.0, 0))
        total = 0
        while True:
            result = relay_outbox(
                engine,
                producer,
                topic,
                batch_size=batch_size,
                max_seconds=settings.relay_max_seconds,
                delivery_timeout_s=settings.relay_delivery_timeout_ms / 1000 + 5,
            )
            total += result.published
            if result.failed:
                raise RuntimeError(f"relay: {result.failed} rows not acknowledged")
            if not result.more_pending:
                break
        elapsed = time.perf_counter() - state["t0"]
        relay_cpu = time.process_time() - cpu_before
        servers = {k: v - servers_before.get(k, 0.0) for k, v in tree_cpu_seconds(server_pids()).items()}
    finally:
        relay_module._produce_and_wait = original  # type: ignore[assignment]
        if profiler is not None:
            profiler.stop()
        producer.flush(10)

    left = resources.sql(engine, "SELECT count(*) FROM outbox WHERE published_at IS NULL")
    if total != len(events) or left:
        raise RuntimeError(f"relay published {total} of {len(events)}; {left} rows left")
    measured: dict[str, Any] = {
        "rate": total / elapsed,
        "elapsed": elapsed,
        "batch_size": batch_size,
        "fill_seconds": fill_seconds,
        "batch_ms": [round(x, 3) for x in batch_ms],
        "batch_ms_p50": sorted(batch_ms)[len(batch_ms) // 2] if batch_ms else 0.0,
        "kafka_share": sum(batch_ms) / 1000 / elapsed if elapsed else 0.0,
        "cpu_us_per_event": {"relay process": 1e6 * relay_cpu / total}
        | {k: 1e6 * v / total for k, v in servers.items() if k != "rabbitmq"},
        "timeline": _timeline(marks),
    }
    if profiler is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        path = args.out.parent / "profile-relay.txt"
        path.write_text(profiler.output_text(unicode=True, color=False, show_all=False))
        (args.out.parent / "profile-relay.html").write_text(profiler.output_html())
        measured["profile_path"] = str(path)
    return measured


def _timeline(marks: list[tuple[float, int]], bin_seconds: float = 0.25) -> dict[str, list[float]]:
    """Events/s per time bin, from the (t, cumulative) marks at each batch's end."""
    if len(marks) < 2:
        return {"t": [], "rate": []}
    t_end = marks[-1][0]
    t: list[float] = []
    rate: list[float] = []
    edge = bin_seconds
    index = 0
    previous_count = 0
    while edge < t_end + bin_seconds:
        while index + 1 < len(marks) and marks[index + 1][0] <= edge:
            index += 1
        count = marks[index][1]
        t.append(round(edge, 3))
        rate.append((count - previous_count) / bin_seconds)
        previous_count = count
        edge += bin_seconds
    return {"t": t, "rate": rate}


if __name__ == "__main__":
    main()
