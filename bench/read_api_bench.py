"""Read API: GET /users/me and GET /users?limit=50 at a fixed concurrency.

    python -m bench.read_api_bench [--users 10000] [--concurrency 16] [--duration 15]
                                   [--tool auto|wrk|python]

``query_api`` runs under gunicorn as in the Procfile, on the benchmark's port and on
``query_bench``, filled with ``--users`` read-model rows. Bearer tokens (RS256) are minted
with the benchmark's own key pair inside an ``auth_api`` app context: a user token for
/users/me, an admin one for /users. If /users/me is not served (no 200 with the token's
user), GET /users/<id> is measured instead and the result says so. The load comes from
``wrk`` (Debian package) when installed, else from bench/loadgen.py in another process.
"""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import time
import uuid
from typing import Any

from bench import common
from bench.environment import LOG_DIR, ROOT, apply, run_id
from bench.machine import server_pids, tree_cpu_seconds
from bench.stats import latency_summary, row, sample


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = common.parser("read_api_bench", __doc__ or "")
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--duration", type=float, default=15.0, help="seconds per endpoint")
    p.add_argument("--tool", choices=["auto", "wrk", "python"], default="auto")
    args = p.parse_args(argv)
    if args.tiny:
        args.users = min(args.users, 200)
        args.duration = min(args.duration, 1.0)
        args.concurrency = min(args.concurrency, 4)
    env = apply(tiny=args.tiny, KAFKA_TOPIC=f"user-events-bench-read-{run_id()}")
    started = time.monotonic()
    result = run(args, env)
    result["seconds"] = time.monotonic() - started
    common.write_result(args.out, result)
    common.print_rows(result)
    return result


def run(args: Any, env: dict[str, str]) -> dict[str, Any]:
    from bench import resources
    from bench.processes import bench_processes, stop_stale_processes, wait_http_ok

    stop_stale_processes()
    resources.prepare_databases()
    resources.reset_query()
    user_ids = _fill_read_model(args.users)
    tokens = mint_tokens(str(user_ids[0]))
    port = int(env["QUERY_API_PORT"])
    procs = bench_processes(env, LOG_DIR / f"read-api-{run_id()}")
    tool = args.tool
    if tool == "auto":
        tool = "wrk" if shutil.which("wrk") else "python"
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    series: dict[str, Any] = {}
    cpu_ms: dict[str, float] = {}
    try:
        procs.start("query_api")
        wait_http_ok(port)
        me_path, me_note = _choose_me_endpoint(port, tokens["user"], str(user_ids[0]))
        if me_note:
            notes.append(me_note)
        status, _ = _get(port, "/users?limit=50", tokens["admin"])
        if status != 200:
            raise RuntimeError(f"GET /users?limit=50 with an admin token answered {status}")
        unauthenticated, _ = _get(port, "/users?limit=50", None)
        notes.append(
            f"GET /users without a token answers {unauthenticated}"
            + ("" if unauthenticated == 401 else " (the read API does not require a bearer token yet)")
        )
        targets = [
            (f"GET {me_path}", me_path, tokens["user"]),
            ("GET /users?limit=50", "/users?limit=50", tokens["admin"]),
        ]
        for label, path, token in targets:
            _get(port, path, token)  # warm the connection pools
            pids = {"query_api": procs.pid("query_api")} | server_pids()
            before = tree_cpu_seconds(pids)
            measured = _load(tool, port, path, token, args)
            used = {k: v - before.get(k, 0.0) for k, v in tree_cpu_seconds(pids).items()}
            is_me = path == me_path
            if is_me:
                served = max(1.0, measured["rps"] * args.duration)
                cpu_ms = {k: 1000 * v / served for k, v in used.items()}
            rows.append(
                row(
                    f"{label}: throughput at concurrency {args.concurrency}",
                    round(measured["rps"], 1),
                    "req/s",
                    ">= 1,500" if is_me else None,
                    measured["rps"] >= 1500 if is_me else None,
                )
            )
            rows.append(row(f"{label}: p50 latency", round(measured["p50_ms"], 2), "ms"))
            rows.append(
                row(
                    f"{label}: p99 latency",
                    round(measured["p99_ms"], 2),
                    "ms",
                    "<= 50" if is_me else None,
                    measured["p99_ms"] <= 50 if is_me else None,
                )
            )
            if measured["errors"]:
                notes.append(f"{label}: {measured['errors']} failed or non-2xx responses")
            series[label] = measured["distribution"]
        # The yardstick: a bare Flask JSON endpoint served the same way, in the same run.
        me_rps = next(r["value"] for r in rows if r["metric"].startswith(f"GET {me_path}: throughput"))
        bare = _bare_flask(env, tool, args)
        rows.append(
            row("bare Flask JSON endpoint, same gunicorn: throughput", round(bare["rps"], 1), "req/s")
        )
        rows.append(row("bare Flask JSON endpoint: p99 latency", round(bare["p99_ms"], 2), "ms"))
        ratio = me_rps / bare["rps"] if bare["rps"] else 0.0
        rows.append(
            row(
                f"GET {me_path} requests/s over the bare endpoint's",
                round(ratio, 2),
                "",
                ">= 0.5",
                ratio >= 0.5,
            )
        )
        cpu_note = ", ".join(f"{k} {v:.3f}" for k, v in sorted(cpu_ms.items(), key=lambda kv: -kv[1]))
        notes.append(f"GET {me_path}: CPU ms per request by process: {cpu_note}")
        notes.append(
            f"load from {'wrk -t1' if tool == 'wrk' else 'bench/loadgen.py (Python, own process)'}, "
            f"{args.concurrency} connections, {args.duration:g} s per endpoint; {args.users:,} users in the "
            f"read model; gunicorn as in gunicorn.conf.py ({_serving()})"
        )
    finally:
        procs.stop_all()
        resources.reset_query()
    return {
        "name": "read_api",
        "params": {
            "users": args.users,
            "concurrency": args.concurrency,
            "duration": args.duration,
            "tool": tool,
        },
        "rows": rows,
        "series": {"latency": series},
        "notes": notes,
    }


def _load(tool: str, port: int, path: str, token: str | None, args: Any) -> dict[str, Any]:
    if tool == "wrk":
        return _wrk(port, path, token, args.concurrency, args.duration)
    return _python_load(port, path, token, args.concurrency, args.duration)


def _serving() -> str:
    from settings import load_settings

    s = load_settings()
    return f"read API: {s.query_web_workers} processes x {s.query_web_threads} threads, gthread"


def _bare_flask(env: dict[str, str], tool: str, args: Any) -> dict[str, Any]:
    """bench.bare_app under gunicorn with the read API's configuration, measured alike."""
    import os
    import signal

    from bench.environment import free_port
    from bench.processes import wait_http_ok
    from services.processes import VENV_BIN

    port = free_port()
    log = LOG_DIR / f"bare-flask-{run_id()}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [str(VENV_BIN / "gunicorn"), "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [*command, "bench.bare_app:app"],
            cwd=ROOT,
            env={**os.environ, **env, "SERVICE_NAME": "query_api_bare"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_http_ok(port, "/users/me")
        return _load(tool, port, "/users/me", None, args)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _fill_read_model(count: int) -> list[uuid.UUID]:
    from bench import resources

    engine = resources.query_engine()
    raw = engine.raw_connection()
    ids = [uuid.uuid4() for _ in range(count)]
    try:
        with raw.cursor() as cur:
            cur.execute(
                "INSERT INTO read_model.users (id, email, roles, roles_version, registered_at, last_login_at,"
                " login_count, version)"
                " SELECT id::uuid, 'reader-' || n || '@example.com', ARRAY['user'], 1,"
                " now() - make_interval(secs => n), now(), 3, 4"
                " FROM unnest(%s::text[]) WITH ORDINALITY AS t(id, n)",
                ([str(i) for i in ids],),
            )
        raw.commit()
    finally:
        raw.close()
    resources.vacuum(engine, "read_model.users")
    return ids


def mint_tokens(user_id: str) -> dict[str, str]:
    """Access tokens signed with the benchmark's key: a plain user and an admin."""
    from dataclasses import replace

    from flask_jwt_extended import create_access_token

    from auth_api import create_app
    from settings import load_settings

    app = create_app(replace(load_settings(), relay_kick=False))
    with app.app_context():
        user = create_access_token(
            identity=user_id, additional_claims={"roles": ["user"], "email": "reader-1@example.com"}
        )
        admin = create_access_token(
            identity=str(uuid.uuid4()),
            additional_claims={"roles": ["admin", "user"], "email": "admin@example.com"},
        )
    return {"user": user, "admin": admin}


def _get(port: int, path: str, token: str | None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _choose_me_endpoint(port: int, token: str, user_id: str) -> tuple[str, str | None]:
    status, body = _get(port, "/users/me", token)
    if status == 200:
        try:
            if json.loads(body).get("id") == user_id:
                return "/users/me", None
        except ValueError:
            pass
    status_id, _ = _get(port, f"/users/{user_id}", token)
    if status_id != 200:
        raise RuntimeError(
            f"neither /users/me ({status}: {body[:200]!r}) nor /users/<id> ({status_id}) answers 200"
        )
    return (
        f"/users/{user_id}",
        f"GET /users/me answered {status}, not the token's user: measured GET /users/<id> instead",
    )


def _wrk(port: int, path: str, token: str | None, concurrency: int, duration: float) -> dict[str, Any]:
    command = [
        "wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(duration))}s", "--latency", "--timeout", "10s",
        "-s", str(ROOT / "bench" / "wrk_report.lua"),
        *(["-H", f"Authorization: Bearer {token}"] if token else []),
        f"http://127.0.0.1:{port}{path}",
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("WRK_JSON "))
    report = json.loads(line.removeprefix("WRK_JSON "))
    percentiles = {q: us / 1000 for q, us in report["latency_us"]["percentiles"]}
    errors = sum(report["errors"].values())
    return {
        "rps": report["requests"] / (report["duration_us"] / 1e6),
        "p50_ms": percentiles[50],
        "p99_ms": percentiles[99],
        "errors": errors,
        "distribution": {"kind": "percentiles", "points": [[q, ms] for q, ms in percentiles.items()]},
    }


def _python_load(
    port: int, path: str, token: str | None, concurrency: int, duration: float
) -> dict[str, Any]:
    from bench.loadgen import run_closed

    spec = {"kind": "get", "path": path, "headers": {"Authorization": f"Bearer {token}"} if token else {}}
    records = run_closed(spec, port, concurrency, duration)
    ok = [r for r in records if 200 <= r[4] < 300]
    latencies = [(r[3] - r[2]) * 1000 for r in ok]
    span = (max(r[3] for r in records) - min(r[2] for r in records)) if records else 1.0
    summary = latency_summary(latencies)
    return {
        "rps": len(ok) / span,
        "p50_ms": summary["p50_ms"] or 0.0,
        "p99_ms": summary["p99_ms"] or 0.0,
        "errors": len(records) - len(ok),
        "distribution": {"kind": "samples", "values": sample(latencies)},
    }


if __name__ == "__main__":
    main()
