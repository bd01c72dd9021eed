"""Read-your-writes under attack: do waiting reads starve everyone else?

    python -m bench.consistency_bench [--waiters 64] [--duration 15] [--probes 4]

``query_api`` runs under gunicorn as in the Procfile. ``--waiters`` clients (threads here)
each hold, over and over, a read with a valid consistency token of their own for a write
that is never projected (each such read waits the full bound, or is refused at once when
the per-caller or per-process bound is reached, after which it honours Retry-After).
Meanwhile a closed loop of ``--probes`` clients in another process (bench/loadgen.py)
measures GET /health and GET /users/me.
Target: both p99 under 100 ms.
"""

from __future__ import annotations

import http.client
import threading
import time
import uuid
from collections import Counter
from typing import Any

from bench import common
from bench.environment import LOG_DIR, apply, run_id
from bench.stats import latency_summary, row, sample

TARGET_P99_MS = 100.0


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = common.parser("consistency_bench", __doc__ or "")
    p.add_argument("--waiters", type=int, default=64)
    p.add_argument("--probes", type=int, default=4)
    p.add_argument("--duration", type=float, default=15.0, help="seconds per probed endpoint")
    args = p.parse_args(argv)
    if args.tiny:
        args.waiters, args.duration = min(args.waiters, 8), min(args.duration, 2.0)
    env = apply(tiny=args.tiny, KAFKA_TOPIC=f"user-events-bench-consistency-{run_id()}")
    started = time.monotonic()
    result = run(args, env)
    result["seconds"] = time.monotonic() - started
    common.write_result(args.out, result)
    common.print_rows(result)
    return result


def run(args: Any, env: dict[str, str]) -> dict[str, Any]:
    from bench import resources
    from bench.loadgen import run_closed
    from bench.processes import bench_processes, stop_stale_processes, wait_http_ok
    from bench.read_api_bench import _fill_read_model

    stop_stale_processes()
    resources.prepare_databases()
    resources.reset_query()
    user_ids = _fill_read_model(args.waiters + 1)
    tokens = _tokens(user_ids)
    port = int(env["QUERY_API_PORT"])
    procs = bench_processes(env, LOG_DIR / f"consistency-{run_id()}")
    rows: list[dict[str, Any]] = []
    series: dict[str, Any] = {}
    outcomes: Counter[str] = Counter()
    stop = threading.Event()
    try:
        procs.start("query_api")
        wait_http_ok(port)
        waiters = [
            threading.Thread(
                target=_hold_waits, args=(port, access, consistency, stop, outcomes), daemon=True
            )
            for access, consistency in tokens["waiters"]
        ]
        for thread in waiters:
            thread.start()
        time.sleep(1.0)  # every waiter has a read in flight before the probes start
        me = {"Authorization": f"Bearer {tokens['probe']}"}
        for label, path, headers in (("GET /health", "/health", {}), ("GET /users/me", "/users/me", me)):
            spec = {"kind": "get", "path": path, "headers": headers}
            records = run_closed(spec, port, args.probes, args.duration)
            ok = [(r[3] - r[2]) * 1000 for r in records if r[4] == 200]
            summary = latency_summary(ok)
            p99 = summary["p99_ms"] or float("inf")
            rows.append(
                row(f"{label}: p50 while {args.waiters} clients wait", round(summary["p50_ms"] or 0, 2), "ms")
            )
            rows.append(
                row(
                    f"{label}: p99 while {args.waiters} clients wait",
                    round(p99, 2),
                    "ms",
                    target=f"<= {TARGET_P99_MS:g}",
                    ok=p99 <= TARGET_P99_MS,
                )
            )
            rows.append(row(f"{label}: answered 200", f"{len(ok)} of {len(records)}", ""))
            series[label] = {"kind": "samples", "values": sample(ok)}
    finally:
        stop.set()
        procs.stop_all()
        resources.reset_query()
    total = sum(outcomes.values()) or 1
    for outcome, count in sorted(outcomes.items()):
        rows.append(row(f"waiting reads: {outcome}", f"{count} ({100 * count / total:.0f} %)", ""))
    return {
        "name": "consistency",
        "params": {"waiters": args.waiters, "probes": args.probes, "duration": args.duration},
        "rows": rows,
        "series": {"latency": series},
        "notes": [
            "waiters: threads of the benchmark process, one connection each, looping on GET /users/me "
            "with a consistency token for a write that is never projected; probes: bench/loadgen.py "
            "closed loop in its own process; gunicorn as in gunicorn.conf.py"
        ],
    }


def _tokens(user_ids: list[uuid.UUID]) -> dict[str, Any]:
    """Access tokens (benchmark key) and, for each waiter, a token of a write never projected."""
    from dataclasses import replace
    from datetime import timedelta

    from flask import current_app
    from flask_jwt_extended import create_access_token

    from auth_api import create_app
    from settings import load_settings
    from web.consistency_token import ConsistencyClaim, sign_consistency_token

    app = create_app(replace(load_settings(), relay_kick=False))
    with app.app_context():
        key = current_app.config["JWT_PRIVATE_KEY"]

        def access(user: uuid.UUID) -> str:
            return create_access_token(identity=str(user), additional_claims={"roles": ["user"]})

        waiters = [
            (
                access(u),
                sign_consistency_token(key, ConsistencyClaim(u, uuid.uuid4(), 10**6), timedelta(hours=1)),
            )
            for u in user_ids[1:]
        ]
        return {"probe": access(user_ids[0]), "waiters": waiters}


def _hold_waits(port: int, access: str, consistency: str, stop: threading.Event, outcomes: Counter) -> None:
    headers = {"Authorization": f"Bearer {access}", "X-Consistency-Token": consistency}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while not stop.is_set():
        started = time.monotonic()
        try:
            conn.request("GET", "/users/me", headers=headers)
            response = conn.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            outcomes["connection error"] += 1
            time.sleep(0.1)
            continue
        took = time.monotonic() - started
        if status == 503 and took >= 1.5:
            outcomes["waited the full bound, then 503"] += 1
        elif status == 503:
            outcomes["refused at once (503, a bound reached)"] += 1
            # A client that ignores Retry-After is the rate limiter's business, not this test's.
            stop.wait(float(response.getheader("Retry-After") or 1))
        else:
            outcomes[f"status {status}"] += 1
    conn.close()


if __name__ == "__main__":
    main()
