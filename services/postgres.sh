#!/usr/bin/env bash
# Local PostgreSQL for development and tests (no Docker, no system cluster).
#
#   services/postgres.sh install   # apt-get install postgresql if no server binaries are found
#   services/postgres.sh start     # initdb (first time) + start our own cluster; no-op if running
#   services/postgres.sh setup     # roles, databases auth_db, query_db, notify_db, privileges (idempotent;
#                                  # run it again after migrations so new tables get their grants)
#   services/postgres.sh stop      # fast shutdown (SIGINT) of the recorded postmaster PID
#   services/postgres.sh status    # exit 0 if running, 3 if not
#   services/postgres.sh psql ...  # psql as superuser over the cluster's unix socket
#   services/postgres.sh replica-start   # a hot standby on ${PG_REPLICA_PORT:-5433}: pg_basebackup
#                                  # from the primary the first time, then streaming replication
#   services/postgres.sh replica-stop | replica-status
#
# Cluster: $DATA_DIR/postgres/data (owned by the 'postgres' OS user, postgres refuses root),
# TCP 127.0.0.1:${PGPORT:-5432} (scram-sha-256), unix socket in $DATA_DIR/postgres/run (trust),
# log $DATA_DIR/log/postgres.log, postmaster PID in $DATA_DIR/run/postgres.pid.
# Parent directories of $DATA_DIR that the postgres user cannot traverse get o+x (logged).
#
# Least privilege (services/sql/*_access.sql): a role per process kind, named
# ${PG_ROLE_PREFIX:-cqrs}_{auth,relay,projection,reader,notifier}, password generated on first run in
# $SECRETS_DIR/postgres/<role> (0600); databases ${AUTH_DB_NAME:-auth_db}, ${QUERY_DB_NAME:-query_db},
# ${NOTIFY_DB_NAME:-notify_db}.
# The tests and benchmarks pass their own prefix and database names.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PGPORT="${PGPORT:-5432}"
PGHOST_TCP=127.0.0.1
PG_OS_USER="${PG_OS_USER:-postgres}"
PG_ROLE_PREFIX="${PG_ROLE_PREFIX:-cqrs}"
AUTH_DB_NAME="${AUTH_DB_NAME:-auth_db}"
QUERY_DB_NAME="${QUERY_DB_NAME:-query_db}"
NOTIFY_DB_NAME="${NOTIFY_DB_NAME:-notify_db}"
PG_START_TIMEOUT="${PG_START_TIMEOUT:-60}"

PG_BASE="${DATA_DIR:?}/postgres"
PGDATA_DIR="$PG_BASE/data"
PG_PIDFILE="$RUN_DIR/postgres.pid"
PG_LOG="$LOG_DIR/postgres.log"

# Unix socket dir: inside .data if the socket path fits the 107-byte sun_path limit, else /tmp.
PG_SOCKET_DIR="$PG_BASE/run"
if ((${#PG_SOCKET_DIR} + ${#PGPORT} + 12 > 100)); then
    PG_SOCKET_DIR=/tmp
fi

find_pg_bindir() {
    if [[ -n "${PG_BINDIR:-}" ]]; then
        [[ -x "$PG_BINDIR/pg_ctl" ]] && printf '%s\n' "$PG_BINDIR"
        return 0
    fi
    # Debian layout: /usr/lib/postgresql/<major>/bin; take the newest major installed.
    local d best="" bestv=0 v
    for d in /usr/lib/postgresql/*/bin; do
        [[ -x "$d/pg_ctl" && -x "$d/initdb" && -x "$d/postgres" ]] || continue
        v="$(basename "$(dirname "$d")")"
        v="${v%%.*}"
        [[ "$v" =~ ^[0-9]+$ ]] || continue
        if ((v > bestv)); then
            bestv="$v"
            best="$d"
        fi
    done
    if [[ -z "$best" ]] && command -v pg_config >/dev/null 2>&1; then
        d="$(pg_config --bindir 2>/dev/null || true)"
        [[ -n "$d" && -x "$d/pg_ctl" && -x "$d/initdb" ]] && best="$d"
    fi
    [[ -n "$best" ]] && printf '%s\n' "$best"
    return 0
}

pg_bindir() {
    local d
    d="$(find_pg_bindir)"
    [[ -n "$d" ]] || die "PostgreSQL server binaries not found (run: services/postgres.sh install)"
    printf '%s\n' "$d"
}

as_pg() { runuser -u "$PG_OS_USER" -- "$@"; }

cmd_install() {
    if [[ -n "$(find_pg_bindir)" ]] && id "$PG_OS_USER" >/dev/null 2>&1; then
        log "PostgreSQL already installed ($(find_pg_bindir))"
        return 0
    fi
    # policy-rc.d (in apt_install) keeps apt from starting the Debian 'main' cluster.
    apt_install postgresql
    [[ -n "$(find_pg_bindir)" ]] || die "postgresql installed but no pg_ctl found under /usr/lib/postgresql"
}

pg_running() { is_running "$PG_PIDFILE" "$PGDATA_DIR"; }

cmd_status() {
    if pg_running && port_open "$PGHOST_TCP" "$PGPORT"; then
        log "running (pid $(read_pid "$PG_PIDFILE")) on $PGHOST_TCP:$PGPORT, data $PGDATA_DIR"
        return 0
    fi
    log "not running"
    return 3
}

init_cluster() {
    local bindir="$1"
    log "initdb $PGDATA_DIR"
    install -d -o "$PG_OS_USER" -g "$PG_OS_USER" -m 700 "$PGDATA_DIR"
    # initdb wants an empty directory; a half-made cluster from a failed run is moved aside.
    if [[ -n "$(ls -A "$PGDATA_DIR")" ]]; then
        local aside
        aside="$PG_BASE/data.broken.$(date +%s)"
        warn "moving incomplete cluster $PGDATA_DIR to $aside"
        mv "$PGDATA_DIR" "$aside"
        install -d -o "$PG_OS_USER" -g "$PG_OS_USER" -m 700 "$PGDATA_DIR"
    fi
    as_pg "$bindir/initdb" -D "$PGDATA_DIR" -U postgres -E UTF8 --locale=C \
        --auth-local=trust --auth-host=scram-sha-256 >>"$PG_LOG" 2>&1 ||
        {
            tail_log "$PG_LOG"
            die "initdb failed"
        }
    cat >"$PGDATA_DIR/pg_hba.conf" <<'EOF'
# Written by services/postgres.sh
# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 trust
host    all       all   127.0.0.1/32  scram-sha-256
host    all       all   ::1/128       scram-sha-256
EOF
    cat >>"$PGDATA_DIR/postgresql.conf" <<'EOF'

# ---- services/postgres.sh (port and unix_socket_directories are given on the command line) ----
listen_addresses = '127.0.0.1'
max_connections = 300
password_encryption = 'scram-sha-256'
fsync = on
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
EOF
    chown "$PG_OS_USER:$PG_OS_USER" "$PGDATA_DIR/pg_hba.conf" "$PGDATA_DIR/postgresql.conf"
}

cmd_start() {
    ensure_dirs
    if pg_running; then
        if port_open "$PGHOST_TCP" "$PGPORT"; then
            log "already running (pid $(read_pid "$PG_PIDFILE")) on $PGHOST_TCP:$PGPORT"
            return 0
        fi
        die "postmaster pid $(read_pid "$PG_PIDFILE") is alive but $PGHOST_TCP:$PGPORT does not answer (started with another PGPORT? run services/postgres.sh stop first)"
    fi
    if port_open "$PGHOST_TCP" "$PGPORT"; then
        die "port $PGHOST_TCP:$PGPORT is already in use by a server that is not ours ($(who_listens "$PGPORT")); stop it or set PGPORT"
    fi
    local bindir
    bindir="$(pg_bindir)"
    id "$PG_OS_USER" >/dev/null 2>&1 || die "OS user '$PG_OS_USER' missing (run: services/postgres.sh install)"

    install -d -o "$PG_OS_USER" -g "$PG_OS_USER" -m 700 "$PG_BASE"
    [[ "$PG_SOCKET_DIR" == /tmp ]] || install -d -o "$PG_OS_USER" -g "$PG_OS_USER" -m 700 "$PG_SOCKET_DIR"
    make_traversable "$PG_OS_USER" "$PG_BASE"
    touch "$PG_LOG"
    chown "$PG_OS_USER:$PG_OS_USER" "$PG_LOG"

    if [[ ! -f "$PGDATA_DIR/PG_VERSION" ]]; then
        init_cluster "$bindir"
    fi

    log "starting PostgreSQL ($bindir) on $PGHOST_TCP:$PGPORT"
    pg_ctl_start "$bindir" "$PGDATA_DIR" "$PGPORT" "$PG_LOG" "$PG_PIDFILE"
    log "PostgreSQL running (pid $(read_pid "$PG_PIDFILE")) on $PGHOST_TCP:$PGPORT"
}

# pg_ctl_start BINDIR DATA PORT LOG PIDFILE [SERVER OPTION...]: start a cluster, record its
# postmaster's PID, wait until it accepts TCP connections.
pg_ctl_start() {
    local bindir="$1" data="$2" port="$3" logfile="$4" pidfile="$5" pid
    shift 5
    if ! as_pg "$bindir/pg_ctl" -D "$data" -l "$logfile" -w -t "$PG_START_TIMEOUT" \
        -o "-p $port -k $PG_SOCKET_DIR $*" start >/dev/null; then
        tail_log "$logfile"
        die "pg_ctl start of $data failed"
    fi
    pid="$(head -n 1 "$data/postmaster.pid" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || die "no PID in $data/postmaster.pid"
    printf '%s\n' "$pid" >"$pidfile"
    if ! wait_for_port "$PGHOST_TCP" "$port" 30 "$pid"; then
        tail_log "$logfile"
        die "PostgreSQL (pid $pid) does not accept TCP connections on $PGHOST_TCP:$port"
    fi
}

cmd_stop() {
    # SIGINT = "fast" shutdown (SIGTERM would be "smart" and wait for clients to disconnect).
    stop_by_pidfile "$PG_PIDFILE" "${PG_STOP_TIMEOUT:-30}" INT "$PGDATA_DIR"
}

superuser_psql() {
    local bindir
    bindir="$(pg_bindir)"
    PGCONNECT_TIMEOUT=10 "$bindir/psql" -X -q -v ON_ERROR_STOP=1 \
        -h "$PG_SOCKET_DIR" -p "$PGPORT" -U postgres "$@"
}

cmd_setup() {
    pg_running || die "PostgreSQL is not running (run: services/postgres.sh start)"
    local auth="${PG_ROLE_PREFIX}_auth" relay="${PG_ROLE_PREFIX}_relay"
    local projection="${PG_ROLE_PREFIX}_projection" reader="${PG_ROLE_PREFIX}_reader"
    local notifier="${PG_ROLE_PREFIX}_notifier"
    log "ensuring roles $auth, $relay, $projection, $reader, $notifier and databases $AUTH_DB_NAME, $QUERY_DB_NAME, $NOTIFY_DB_NAME"
    # Passwords travel in psql's environment (\getenv), not on its command line.
    OWNER_PASSWORD="$(ensure_secret "postgres/$auth")" RELAY_PASSWORD="$(ensure_secret "postgres/$relay")" \
        superuser_psql -d postgres -v db="$AUTH_DB_NAME" -v owner="$auth" -v relay="$relay" \
        -f "$SERVICES_DIR/sql/auth_db_access.sql" >/dev/null
    OWNER_PASSWORD="$(ensure_secret "postgres/$projection")" READER_PASSWORD="$(ensure_secret "postgres/$reader")" \
        superuser_psql -d postgres -v db="$QUERY_DB_NAME" -v owner="$projection" -v reader="$reader" \
        -f "$SERVICES_DIR/sql/query_db_access.sql" >/dev/null
    OWNER_PASSWORD="$(ensure_secret "postgres/$notifier")" \
        superuser_psql -d postgres -v db="$NOTIFY_DB_NAME" -v owner="$notifier" \
        -f "$SERVICES_DIR/sql/notify_db_access.sql" >/dev/null
    # The consumers that open events' personal fields read the data keys in auth_db.
    PROJECTION_PASSWORD="$(ensure_secret "postgres/$projection")" NOTIFIER_PASSWORD="$(ensure_secret "postgres/$notifier")" \
        superuser_psql -d postgres -v db="$AUTH_DB_NAME" -v projection="$projection" -v notifier="$notifier" \
        -f "$SERVICES_DIR/sql/data_keys_access.sql" >/dev/null
    # Failing statements carry their values (an email in a unique-key error): the server log
    # keeps neither the statement nor the error's DETAIL, so no personal data lands there.
    superuser_psql -d postgres -c "ALTER SYSTEM SET log_error_verbosity = 'terse'" \
        -c "ALTER SYSTEM SET log_min_error_statement = 'panic'" -c "SELECT pg_reload_conf()" >/dev/null
    log "databases ready on $PGHOST_TCP:$PGPORT (passwords in $SECRETS_DIR/postgres/)"
}

# ---- the streaming replica (hot standby) that the read API may read -------------------------
PG_REPLICA_PORT="${PG_REPLICA_PORT:-5433}"
PG_REPLICA_DATA="$PG_BASE/replica-$PG_REPLICA_PORT"
PG_REPLICA_PIDFILE="$RUN_DIR/postgres-replica-$PG_REPLICA_PORT.pid"
PG_REPLICA_LOG="$LOG_DIR/postgres-replica-$PG_REPLICA_PORT.log"

replica_running() { is_running "$PG_REPLICA_PIDFILE" "$PG_REPLICA_DATA"; }

# The replica connects over the unix socket as the superuser (trust there, as for psql);
# replication connections need a pg_hba line of their own.
allow_local_replication() {
    if ! grep -Eq '^local[[:space:]]+replication[[:space:]]' "$PGDATA_DIR/pg_hba.conf"; then
        log "allowing local replication connections on the primary"
        printf 'local   replication  %s  trust\n' "$PG_OS_USER" >>"$PGDATA_DIR/pg_hba.conf"
        superuser_psql -d postgres -c 'SELECT pg_reload_conf()' >/dev/null
    fi
}

cmd_replica_start() {
    ensure_dirs
    pg_running || die "the primary is not running (run: services/postgres.sh start)"
    if replica_running; then
        port_open "$PGHOST_TCP" "$PG_REPLICA_PORT" ||
            wait_for_port "$PGHOST_TCP" "$PG_REPLICA_PORT" 30 "$(read_pid "$PG_REPLICA_PIDFILE")" ||
            die "replica pid $(read_pid "$PG_REPLICA_PIDFILE") does not answer on $PG_REPLICA_PORT"
        log "replica already running (pid $(read_pid "$PG_REPLICA_PIDFILE")) on $PGHOST_TCP:$PG_REPLICA_PORT"
        return 0
    fi
    if port_open "$PGHOST_TCP" "$PG_REPLICA_PORT"; then
        die "port $PGHOST_TCP:$PG_REPLICA_PORT is in use by a server that is not our replica; set PG_REPLICA_PORT"
    fi
    local bindir
    bindir="$(pg_bindir)"
    touch "$PG_REPLICA_LOG"
    chown "$PG_OS_USER:$PG_OS_USER" "$PG_REPLICA_LOG"
    if [[ ! -f "$PG_REPLICA_DATA/PG_VERSION" ]]; then
        allow_local_replication
        rm -rf "$PG_REPLICA_DATA"
        install -d -o "$PG_OS_USER" -g "$PG_OS_USER" -m 700 "$PG_REPLICA_DATA"
        log "pg_basebackup of the primary into $PG_REPLICA_DATA"
        # -R: standby.signal and primary_conninfo, so it starts as a streaming hot standby.
        if ! as_pg "$bindir/pg_basebackup" -h "$PG_SOCKET_DIR" -p "$PGPORT" -U postgres \
            -D "$PG_REPLICA_DATA" -X stream -R --checkpoint=fast >>"$PG_REPLICA_LOG" 2>&1; then
            tail_log "$PG_REPLICA_LOG"
            rm -rf "$PG_REPLICA_DATA"
            die "pg_basebackup failed"
        fi
    fi
    log "starting the replica on $PGHOST_TCP:$PG_REPLICA_PORT"
    pg_ctl_start "$bindir" "$PG_REPLICA_DATA" "$PG_REPLICA_PORT" "$PG_REPLICA_LOG" "$PG_REPLICA_PIDFILE" \
        -c hot_standby=on
    log "replica running (pid $(read_pid "$PG_REPLICA_PIDFILE")) on $PGHOST_TCP:$PG_REPLICA_PORT, streaming from $PGPORT"
}

cmd_replica_stop() {
    stop_by_pidfile "$PG_REPLICA_PIDFILE" "${PG_STOP_TIMEOUT:-30}" INT "$PG_REPLICA_DATA"
}

cmd_replica_status() {
    if replica_running && port_open "$PGHOST_TCP" "$PG_REPLICA_PORT"; then
        log "replica running (pid $(read_pid "$PG_REPLICA_PIDFILE")) on $PGHOST_TCP:$PG_REPLICA_PORT"
        return 0
    fi
    log "replica not running"
    return 3
}

case "${1:-}" in
install) cmd_install ;;
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status || exit $? ;;
setup) cmd_setup ;;
replica-start) cmd_replica_start ;;
replica-stop) cmd_replica_stop ;;
replica-status) cmd_replica_status || exit $? ;;
psql)
    shift
    superuser_psql "$@"
    ;;
*)
    echo "usage: $0 {install|start|stop|status|setup|replica-start|replica-stop|replica-status|psql [args]}" >&2
    exit 2
    ;;
esac
