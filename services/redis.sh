#!/usr/bin/env bash
# Local Redis for the APIs' rate-limit counters (Debian package redis-server, no Docker, no
# system service). Counters are short-lived, so nothing is persisted: a restart forgets them.
#
#   services/redis.sh install   # apt-get install redis-server if no redis-server binary is found
#   services/redis.sh start     # start our server; no-op if running
#   services/redis.sh stop      # SIGTERM to the recorded PID, then SIGKILL
#   services/redis.sh status    # exit 0 if running, 3 if not
#
# Env: REDIS_PORT (default 6379). Listens on 127.0.0.1 only; working folder $DATA_DIR/redis,
# log $DATA_DIR/log/redis.log, PID in $DATA_DIR/run/redis.pid.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REDIS_PORT="${REDIS_PORT:-6379}"
REDIS_HOST=127.0.0.1
REDIS_DIR="${DATA_DIR:?}/redis"
REDIS_PIDFILE="$RUN_DIR/redis.pid"
REDIS_LOG="$LOG_DIR/redis.log"
# redis-server rewrites its process title to "redis-server 127.0.0.1:<port>".
REDIS_TITLE="redis-server $REDIS_HOST:$REDIS_PORT"

cmd_install() {
    if command -v redis-server >/dev/null 2>&1; then
        log "Redis already installed ($(command -v redis-server))"
        return 0
    fi
    # policy-rc.d (in apt_install) keeps apt from starting the system's redis service.
    apt_install redis-server
}

redis_running() { is_running "$REDIS_PIDFILE" "$REDIS_TITLE"; }

cmd_status() {
    if redis_running && port_open "$REDIS_HOST" "$REDIS_PORT"; then
        log "running (pid $(read_pid "$REDIS_PIDFILE")) on $REDIS_HOST:$REDIS_PORT"
        return 0
    fi
    log "not running"
    return 3
}

cmd_start() {
    ensure_dirs
    if redis_running && port_open "$REDIS_HOST" "$REDIS_PORT"; then
        log "already running (pid $(read_pid "$REDIS_PIDFILE")) on $REDIS_HOST:$REDIS_PORT"
        return 0
    fi
    if port_open "$REDIS_HOST" "$REDIS_PORT"; then
        adopt_listener "$REDIS_PORT" "$REDIS_PIDFILE" "$REDIS_TITLE" && return 0
        die "port $REDIS_HOST:$REDIS_PORT is already in use by a server that is not ours ($(who_listens "$REDIS_PORT")); stop it or set REDIS_PORT"
    fi
    command -v redis-server >/dev/null 2>&1 || die "redis-server not found (run: services/redis.sh install)"
    mkdir -p "$REDIS_DIR"
    log "starting Redis on $REDIS_HOST:$REDIS_PORT"
    start_detached "$REDIS_PIDFILE" "$REDIS_LOG" redis-server \
        --bind "$REDIS_HOST" --port "$REDIS_PORT" --protected-mode yes --dir "$REDIS_DIR" \
        --save "" --appendonly no --daemonize no
    local rc=0
    wait_for_port "$REDIS_HOST" "$REDIS_PORT" 30 "$(read_pid "$REDIS_PIDFILE")" || rc=$?
    if ((rc != 0)); then
        tail_log "$REDIS_LOG"
        die "Redis did not start"
    fi
    log "running (pid $(read_pid "$REDIS_PIDFILE")) on $REDIS_HOST:$REDIS_PORT"
}

cmd_stop() {
    stop_by_pidfile "$REDIS_PIDFILE" "${REDIS_STOP_TIMEOUT:-10}" TERM "redis-server"
}

case "${1:-}" in
install) cmd_install ;;
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status || exit $? ;;
*)
    echo "usage: $0 {install|start|stop|status}" >&2
    exit 2
    ;;
esac
