#!/usr/bin/env bash
# Local RabbitMQ node for development and tests (Debian package rabbitmq-server, no Docker,
# no system service).
#
#   services/rabbitmq.sh install      # apt-get install rabbitmq-server if missing (no autostart)
#   services/rabbitmq.sh start        # start our node; no-op if running
#   services/rabbitmq.sh stop         # SIGTERM to the recorded beam.smp PID (graceful), then SIGKILL
#   services/rabbitmq.sh status       # exit 0 if running, 3 if not
#   services/rabbitmq.sh ctl ARGS...  # rabbitmqctl against our node (e.g. `ctl list_queues`)
#   services/rabbitmq.sh diag ARGS... # rabbitmq-diagnostics against our node
#   services/rabbitmq.sh setup        # the project's user and vhost (idempotent)
#   services/rabbitmq.sh vhost NAME   # one more vhost for the project's user (tests, benchmarks)
#
# Env: RABBITMQ_PORT (AMQP, default 5672), RABBITMQ_DIST_PORT (Erlang distribution, default
# RABBITMQ_PORT+20000, or RABBITMQ_PORT-20000 when that exceeds 65535), RABBITMQ_NODENAME
# (default rabbit@localhost, or rabbit_<port>@localhost when RABBITMQ_PORT is not 5672, so two
# checkouts can run side by side). epmd listens on 127.0.0.1:4369 (shared by all nodes; started
# and recorded in $DATA_DIR/run/epmd.pid if none runs, stopped with the last node that used it).
# The project's own user ${RABBITMQ_USER:-cqrs} (password generated on first run in
# $SECRETS_DIR/rabbitmq/<user>, 0600) on its own vhost ${RABBITMQ_VHOST:-cqrs}:
# amqp://cqrs:<password>@127.0.0.1:5672/cqrs. The project never uses guest.
# Data $DATA_DIR/rabbitmq/mnesia (durable queues survive stop/start), console log
# $DATA_DIR/log/rabbitmq.log, beam.smp PID in $DATA_DIR/run/rabbitmq.pid.
#
# The node runs as root straight from /usr/lib/rabbitmq/bin (not via the /usr/sbin wrapper,
# which `su`s to the rabbitmq user, sets HOME=/var/lib/rabbitmq and writes its own logs), with
# HOME=$DATA_DIR/rabbitmq so the server and our CLI calls share $DATA_DIR/rabbitmq/.erlang.cookie.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RABBITMQ_PORT="${RABBITMQ_PORT:-5672}"
if [[ -z "${RABBITMQ_DIST_PORT:-}" ]]; then
    RABBITMQ_DIST_PORT=$((RABBITMQ_PORT + 20000))
    ((RABBITMQ_DIST_PORT <= 65535)) || RABBITMQ_DIST_PORT=$((RABBITMQ_PORT - 20000))
fi
if [[ -z "${RABBITMQ_NODENAME:-}" ]]; then
    if [[ "$RABBITMQ_PORT" == 5672 ]]; then
        RABBITMQ_NODENAME=rabbit@localhost
    else
        RABBITMQ_NODENAME="rabbit_${RABBITMQ_PORT}@localhost"
    fi
fi
RABBITMQ_HOST=127.0.0.1
RABBITMQ_START_TIMEOUT="${RABBITMQ_START_TIMEOUT:-90}"
RABBITMQ_STOP_TIMEOUT="${RABBITMQ_STOP_TIMEOUT:-30}"
RABBITMQ_LIB_BIN="${RABBITMQ_LIB_BIN:-/usr/lib/rabbitmq/bin}"

RMQ_BASE="${DATA_DIR:?}/rabbitmq"
RMQ_PIDFILE="$RUN_DIR/rabbitmq.pid"                   # beam.smp (the Erlang VM)
RMQ_LAUNCHER_PIDFILE="$RUN_DIR/rabbitmq-launcher.pid" # the rabbitmq-server sh that waits for beam
EPMD_PIDFILE="$RUN_DIR/epmd.pid"
RMQ_LOG="$LOG_DIR/rabbitmq.log"
RMQ_MNESIA_BASE="$RMQ_BASE/mnesia"

# Environment of the node and of the CLI tools (same HOME => same Erlang cookie).
rmq_env() {
    export HOME="$RMQ_BASE"
    export ERL_EPMD_ADDRESS=127.0.0.1
    export RABBITMQ_NODENAME RABBITMQ_DIST_PORT
    export RABBITMQ_NODE_IP_ADDRESS="$RABBITMQ_HOST"
    export RABBITMQ_NODE_PORT="$RABBITMQ_PORT"
    export RABBITMQ_MNESIA_BASE="$RMQ_MNESIA_BASE"
    export RABBITMQ_LOG_BASE="$RMQ_BASE/log"
    export RABBITMQ_LOGS=- # console => $RMQ_LOG
    export RABBITMQ_PID_FILE="$RMQ_BASE/beam.pid"
    export RABBITMQ_CONFIG_FILE="$RMQ_BASE/rabbitmq.conf" # not created; used if someone adds it
    export RABBITMQ_ADVANCED_CONFIG_FILE="$RMQ_BASE/advanced.config"
    export RABBITMQ_ENABLED_PLUGINS_FILE="$RMQ_BASE/enabled_plugins"
    export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
    unset RABBITMQ_ALLOW_INPUT NOTIFY_SOCKET
}

ctl() {
    (
        rmq_env
        "$RABBITMQ_LIB_BIN/rabbitmqctl" -n "$RABBITMQ_NODENAME" "$@"
    )
}

diag() {
    (
        rmq_env
        "$RABBITMQ_LIB_BIN/rabbitmq-diagnostics" -n "$RABBITMQ_NODENAME" "$@"
    )
}

cmd_install() {
    if [[ -x "$RABBITMQ_LIB_BIN/rabbitmq-server" && -x "$RABBITMQ_LIB_BIN/rabbitmqctl" ]]; then
        log "rabbitmq-server already installed"
        return 0
    fi
    # policy-rc.d (in apt_install) keeps apt from starting the system rabbitmq-server service.
    apt_install rabbitmq-server
    [[ -x "$RABBITMQ_LIB_BIN/rabbitmq-server" ]] || die "rabbitmq-server installed but $RABBITMQ_LIB_BIN/rabbitmq-server is missing"
}

# The beam command line holds "-home $RMQ_BASE", which tells our node from any other.
rmq_running() { is_running "$RMQ_PIDFILE" "-home $RMQ_BASE "; }

cmd_status() {
    if rmq_running && port_open "$RABBITMQ_HOST" "$RABBITMQ_PORT"; then
        log "running (pid $(read_pid "$RMQ_PIDFILE")) node $RABBITMQ_NODENAME on $RABBITMQ_HOST:$RABBITMQ_PORT"
        return 0
    fi
    log "not running"
    return 3
}

write_config() {
    install -d -m 755 "$RMQ_BASE" "$RMQ_MNESIA_BASE" "$RMQ_BASE/log"
    # Erlang cookie shared by the node and the CLI (HOME=$RMQ_BASE).
    if [[ ! -s "$RMQ_BASE/.erlang.cookie" ]]; then
        (
            umask 077
            od -An -N16 -tx1 /dev/urandom | tr -d ' \n' | tr '0-9a-f' 'A-P' >"$RMQ_BASE/.erlang.cookie"
        )
    fi
    chmod 400 "$RMQ_BASE/.erlang.cookie"
    [[ -f "$RMQ_BASE/enabled_plugins" ]] || printf '[].\n' >"$RMQ_BASE/enabled_plugins"
    # No rabbitmq.conf on purpose: the defaults fit (guest is loopback only), and with no
    # .conf file the node skips the cuttlefish schema pass, which costs seconds at every boot.
    # Listener, logging (console) and paths come from the environment (rmq_env).
}

# ensure_epmd: start epmd on loopback (and record its PID) unless one already answers.
ensure_epmd() {
    if port_open 127.0.0.1 4369; then
        return 0
    fi
    local epmd
    epmd="$(command -v epmd || true)"
    [[ -n "$epmd" ]] || epmd="$(find /usr/lib/erlang -name epmd -type f -perm -u+x 2>/dev/null | head -n 1)"
    [[ -n "$epmd" ]] || die "epmd not found (is erlang-base installed?)"
    log "starting epmd on 127.0.0.1:4369"
    ERL_EPMD_ADDRESS=127.0.0.1 start_detached "$EPMD_PIDFILE" "$LOG_DIR/epmd.log" "$epmd"
    if ! wait_for_port 127.0.0.1 4369 10 "$(read_pid "$EPMD_PIDFILE")"; then
        tail_log "$LOG_DIR/epmd.log"
        die "epmd did not start"
    fi
}

# stop_epmd_if_idle: stop the epmd we started, once no Erlang node is registered with it.
stop_epmd_if_idle() {
    is_running "$EPMD_PIDFILE" epmd || {
        rm -f "$EPMD_PIDFILE"
        return 0
    }
    local epmd names
    epmd="$(tr '\0' '\n' <"/proc/$(read_pid "$EPMD_PIDFILE")/cmdline" | head -n 1)"
    names="$("$epmd" -names 2>/dev/null | grep -c '^name ' || true)"
    if [[ "$names" == 0 ]]; then
        stop_by_pidfile "$EPMD_PIDFILE" 10 TERM epmd
    fi
}

cmd_start() {
    ensure_dirs
    if rmq_running; then
        if port_open "$RABBITMQ_HOST" "$RABBITMQ_PORT"; then
            log "already running (pid $(read_pid "$RMQ_PIDFILE")) node $RABBITMQ_NODENAME on $RABBITMQ_HOST:$RABBITMQ_PORT"
            return 0
        fi
        # Still booting (e.g. a parallel start): wait for it like a fresh start would.
        local pid
        pid="$(read_pid "$RMQ_PIDFILE")"
        log "node is up (pid $pid) but $RABBITMQ_HOST:$RABBITMQ_PORT is not open yet, waiting"
        if ! wait_for_port "$RABBITMQ_HOST" "$RABBITMQ_PORT" "$RABBITMQ_START_TIMEOUT" "$pid"; then
            tail_log "$RMQ_LOG"
            die "RabbitMQ (pid $pid) does not listen on $RABBITMQ_HOST:$RABBITMQ_PORT (another RABBITMQ_PORT? run services/rabbitmq.sh stop)"
        fi
        return 0
    fi
    if port_open "$RABBITMQ_HOST" "$RABBITMQ_PORT"; then
        if adopt_listener "$RABBITMQ_PORT" "$RMQ_PIDFILE" "-home $RMQ_BASE " && rmq_running; then
            return 0
        fi
        die "port $RABBITMQ_HOST:$RABBITMQ_PORT is already in use by a server that is not ours ($(who_listens "$RABBITMQ_PORT")); stop it or set RABBITMQ_PORT"
    fi
    if port_open 127.0.0.1 "$RABBITMQ_DIST_PORT"; then
        die "Erlang distribution port $RABBITMQ_DIST_PORT is in use ($(who_listens "$RABBITMQ_DIST_PORT")); set RABBITMQ_DIST_PORT"
    fi
    [[ -x "$RABBITMQ_LIB_BIN/rabbitmq-server" ]] || die "rabbitmq-server not installed (run: services/rabbitmq.sh install)"
    # A launcher left over from a killed beam would only be waiting; make sure it is gone.
    stop_by_pidfile "$RMQ_LAUNCHER_PIDFILE" 5 TERM rabbitmq-server >/dev/null 2>&1 || true

    write_config
    ensure_epmd
    rm -f "$RMQ_BASE/beam.pid" "$RMQ_PIDFILE"
    printf '\n===== %s starting %s =====\n' "$(date '+%F %T')" "$RABBITMQ_NODENAME" >>"$RMQ_LOG"
    log "starting RabbitMQ node $RABBITMQ_NODENAME on $RABBITMQ_HOST:$RABBITMQ_PORT (dist port $RABBITMQ_DIST_PORT)"
    (
        rmq_env
        cd "$RMQ_BASE"
        start_detached "$RMQ_LAUNCHER_PIDFILE" "$RMQ_LOG" "$RABBITMQ_LIB_BIN/rabbitmq-server"
    )
    local launcher pid
    launcher="$(read_pid "$RMQ_LAUNCHER_PIDFILE")"
    # rabbit writes the beam.smp PID to RABBITMQ_PID_FILE early during boot.
    if ! wait_for_file "$RMQ_BASE/beam.pid" 30 "$launcher"; then
        tail_log "$RMQ_LOG"
        die "RabbitMQ did not write its pid file $RMQ_BASE/beam.pid (launcher pid $launcher)"
    fi
    pid="$(read_pid "$RMQ_BASE/beam.pid")"
    [[ -n "$pid" ]] || die "bad pid file $RMQ_BASE/beam.pid"
    printf '%s\n' "$pid" >"$RMQ_PIDFILE"
    local wrc=0
    wait_for_port "$RABBITMQ_HOST" "$RABBITMQ_PORT" "$RABBITMQ_START_TIMEOUT" "$pid" || wrc=$?
    if ((wrc != 0)); then
        tail_log "$RMQ_LOG"
        if ((wrc == 2)); then
            rm -f "$RMQ_PIDFILE"
            die "RabbitMQ (pid $pid) exited during startup; see the log above ($RMQ_LOG)"
        fi
        cmd_stop || true
        die "RabbitMQ did not open $RABBITMQ_HOST:$RABBITMQ_PORT within ${RABBITMQ_START_TIMEOUT}s (stopped it; log above)"
    fi
    # The AMQP listener opens a moment before the boot finishes; await_startup waits for the
    # rest (and proves that rabbitmqctl reaches the node with our cookie).
    if ! timeout 70 bash "$SERVICES_DIR/rabbitmq.sh" ctl -q await_startup --timeout 60 >>"$RMQ_LOG" 2>&1; then
        tail_log "$RMQ_LOG"
        die "rabbitmqctl await_startup failed for $RABBITMQ_NODENAME (pid $pid)"
    fi
    log "RabbitMQ running (pid $pid) node $RABBITMQ_NODENAME on $RABBITMQ_HOST:$RABBITMQ_PORT"
}

cmd_stop() {
    # SIGTERM to beam.smp makes rabbit shut down gracefully (rabbit_prelaunch_sighandler).
    stop_by_pidfile "$RMQ_PIDFILE" "$RABBITMQ_STOP_TIMEOUT" TERM "-home $RMQ_BASE "
    # The launcher shell exits by itself once beam is gone; make sure of it.
    local launcher
    launcher="$(read_pid "$RMQ_LAUNCHER_PIDFILE")"
    if is_running "$RMQ_LAUNCHER_PIDFILE" rabbitmq-server && ! wait_pid_exit "$launcher" 5; then
        stop_by_pidfile "$RMQ_LAUNCHER_PIDFILE" 5 TERM rabbitmq-server
    fi
    rm -f "$RMQ_LAUNCHER_PIDFILE" "$RMQ_BASE/beam.pid"
    stop_epmd_if_idle
}

RABBITMQ_USER="${RABBITMQ_USER:-cqrs}"
RABBITMQ_VHOST="${RABBITMQ_VHOST:-cqrs}"

# ensure_user: the project's user, with the password kept in its secret file.
ensure_user() {
    local password verb=change_password
    password="$(ensure_secret "rabbitmq/$RABBITMQ_USER")"
    ctl list_users --silent | cut -f1 | grep -qx "$RABBITMQ_USER" || verb=add_user
    # The password goes through stdin: never on a command line, never in the log.
    printf '%s' "$password" | ctl -q "$verb" "$RABBITMQ_USER" >/dev/null
}

# ensure_vhost NAME: the vhost, with every right on it for the project's user only.
ensure_vhost() {
    ctl list_vhosts --silent | grep -qx "$1" || ctl add_vhost "$1" >/dev/null
    ctl set_permissions -p "$1" "$RABBITMQ_USER" ".*" ".*" ".*" >/dev/null
    # A vhost an older set-up opened to guest is closed to it.
    if ctl list_permissions -p "$1" --silent | cut -f1 | grep -qx guest; then
        ctl clear_permissions -p "$1" guest >/dev/null
    fi
}

case "${1:-}" in
install) cmd_install ;;
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status || exit $? ;;
ctl)
    shift
    ctl "$@"
    ;;
diag)
    shift
    diag "$@"
    ;;
setup)
    ensure_user
    ensure_vhost "$RABBITMQ_VHOST"
    log "user $RABBITMQ_USER on vhost $RABBITMQ_VHOST (password in $SECRETS_DIR/rabbitmq/$RABBITMQ_USER)"
    ;;
vhost)
    # An isolated virtual host (the tests and benchmarks use their own) for the project's user.
    [ -n "${2:-}" ] || die "usage: $0 vhost NAME"
    ensure_user
    ensure_vhost "$2"
    ;;
*)
    echo "usage: $0 {install|start|stop|status|setup|vhost NAME|ctl ARGS...|diag ARGS...}" >&2
    exit 2
    ;;
esac
