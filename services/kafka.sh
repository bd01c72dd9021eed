#!/usr/bin/env bash
# Local Kafka (KRaft, one node = broker + controller) for development and tests, assembled from
# Maven Central jars and run with `java` (no Docker, no Apache download site).
#
#   services/kafka.sh install   # resolve the broker jars into $DATA_DIR/kafka/libs (once; cached)
#   services/kafka.sh start     # format storage (first time) + start; no-op if running
#   services/kafka.sh stop      # SIGTERM to the recorded broker PID, SIGKILL after 30 s
#   services/kafka.sh status    # exit 0 if running, 3 if not
#
# The cluster profile (three KRaft nodes, each broker + controller, replication factor 3,
# min.insync.replicas 2), beside the single broker and sharing its jars:
#   services/kafka.sh cluster-start          # format (first time) + start the three; no-op if running
#   services/kafka.sh cluster-stop | cluster-status | cluster-bootstrap
#   services/kafka.sh broker-start N | broker-stop N | broker-kill N   # one node (1..3); kill = SIGKILL
# Node N listens on ${KAFKA_CLUSTER_PORT:-9192}+N-1, its controller on KAFKA_CLUSTER_PORT+10+N-1;
# data $DATA_DIR/kafka-cluster-<KAFKA_CLUSTER_PORT>/, logs $DATA_DIR/log/kafka-cluster-<port>-N.log,
# heap ${KAFKA_CLUSTER_HEAP_OPTS:--Xms256m -Xmx384m} each (three fit beside the single broker),
# start timeout ${KAFKA_CLUSTER_START_TIMEOUT:-300} s per node.
#
# Bootstrap 127.0.0.1:${KAFKA_PORT:-9092}, controller 127.0.0.1:${KAFKA_CONTROLLER_PORT:-9093}.
# Version ${KAFKA_VERSION:-see services/kafka/pom.xml}; data $DATA_DIR/kafka/data, config
# $DATA_DIR/kafka/server.properties (from services/kafka/server.properties.in), log
# $DATA_DIR/log/kafka.log, broker PID in $DATA_DIR/run/kafka.pid.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_HOST=127.0.0.1
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms512m -Xmx512m}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"

KAFKA_SRC="$SERVICES_DIR/kafka"
KAFKA_POM="$KAFKA_SRC/pom.xml"
# Default version = the one in pom.xml; KAFKA_VERSION overrides it.
if [[ -z "${KAFKA_VERSION:-}" ]]; then
    KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$KAFKA_POM" | head -n 1)"
fi
[[ -n "$KAFKA_VERSION" ]] || die "cannot read <kafka.version> from $KAFKA_POM"

KAFKA_BASE="${DATA_DIR:?}/kafka"
KAFKA_LIBS="$KAFKA_BASE/libs"
KAFKA_MARKER="$KAFKA_LIBS/.installed"
KAFKA_DATA="$KAFKA_BASE/data"
KAFKA_PROPS="$KAFKA_BASE/server.properties"
KAFKA_CLUSTER_ID_FILE="$KAFKA_BASE/cluster.id"
KAFKA_PIDFILE="$RUN_DIR/kafka.pid"
KAFKA_LOG="$LOG_DIR/kafka.log"

java_major() {
    local v
    v="$(java -version 2>&1 | sed -n 's/.* version "\([0-9][0-9]*\)\(\.[0-9]*\)*.*".*/\1/p' | head -n 1 || true)"
    if [[ "$v" == 1 ]]; then v=8; fi # 1.8.0_x
    printf '%s\n' "${v:-0}"
}

marker_text() { printf 'kafka_2.13 %s\npom sha256 %s\n' "$KAFKA_VERSION" "$(sha256sum "$KAFKA_POM" | cut -d' ' -f1)"; }

cmd_install() {
    ensure_dirs
    local need=()
    if ! command -v java >/dev/null 2>&1 || (($(java_major) < 17)); then
        need+=(default-jre-headless)
    fi
    command -v mvn >/dev/null 2>&1 || [[ -f "$KAFKA_MARKER" ]] || need+=(maven)
    if ((${#need[@]})); then
        apt_install "${need[@]}"
    fi
    (($(java_major) >= 17)) || die "Kafka 4.x needs Java 17+, found: $(java -version 2>&1 | head -n 1)"

    if [[ -f "$KAFKA_MARKER" ]] && [[ "$(cat "$KAFKA_MARKER")" == "$(marker_text)" ]]; then
        log "Kafka $KAFKA_VERSION jars already in $KAFKA_LIBS"
        return 0
    fi
    command -v mvn >/dev/null 2>&1 || apt_install maven
    log "resolving Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_LIBS"
    local tmp="$KAFKA_BASE/libs.tmp.$$"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    if ! mvn -B -q -f "$KAFKA_POM" -Dkafka.version="$KAFKA_VERSION" \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" \
        >"$LOG_DIR/kafka-install.log" 2>&1; then
        tail_log "$LOG_DIR/kafka-install.log" 40
        rm -rf "$tmp"
        die "mvn could not resolve org.apache.kafka:kafka_2.13:$KAFKA_VERSION (see $LOG_DIR/kafka-install.log)"
    fi
    compgen -G "$tmp/kafka_2.13-$KAFKA_VERSION.jar" >/dev/null || die "kafka_2.13-$KAFKA_VERSION.jar missing after mvn"
    marker_text >"$tmp/.installed"
    rm -rf "$KAFKA_LIBS"
    mv "$tmp" "$KAFKA_LIBS"
    log "installed $(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars for Kafka $KAFKA_VERSION"
}

kafka_running() { is_running "$KAFKA_PIDFILE" "$KAFKA_PROPS"; }

cmd_status() {
    if kafka_running && port_open "$KAFKA_HOST" "$KAFKA_PORT"; then
        log "running (pid $(read_pid "$KAFKA_PIDFILE")) on $KAFKA_HOST:$KAFKA_PORT"
        return 0
    fi
    log "not running"
    return 3
}

write_props() {
    mkdir -p "$KAFKA_DATA"
    sed -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" \
        -e "s|@KAFKA_CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
        -e "s|@KAFKA_DATA_DIR@|$KAFKA_DATA|g" \
        "$KAFKA_SRC/server.properties.in" >"$KAFKA_PROPS.tmp"
    mv "$KAFKA_PROPS.tmp" "$KAFKA_PROPS"
}

java_cmd() {
    # shellcheck disable=SC2086 # KAFKA_HEAP_OPTS is a list of JVM flags
    printf '%s\0' java $KAFKA_HEAP_OPTS \
        -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
        -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
        "-Dlog4j2.configurationFile=$KAFKA_SRC/log4j2.properties" \
        "-Dkafka.logs.dir=$LOG_DIR" \
        -cp "$KAFKA_LIBS/*" "$@"
}

# format_storage [DATA PROPS CLUSTER-ID-FILE]: the single broker's by default.
format_storage() {
    local data="${1:-$KAFKA_DATA}" props="${2:-$KAFKA_PROPS}" id_file="${3:-$KAFKA_CLUSTER_ID_FILE}"
    if [[ -f "$data/meta.properties" ]]; then
        return 0
    fi
    local cid
    if [[ ! -s "$id_file" ]]; then
        cid="$(java -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool random-uuid 2>>"$LOG_DIR/kafka-format.log" | tail -n 1)"
        [[ "$cid" =~ ^[A-Za-z0-9_-]{22}$ ]] || {
            tail_log "$LOG_DIR/kafka-format.log"
            die "StorageTool random-uuid failed (got '$cid')"
        }
        printf '%s\n' "$cid" >"$id_file"
    fi
    cid="$(cat "$id_file")"
    log "formatting KRaft storage $data (cluster id $cid)"
    if ! java "-Dlog4j2.configurationFile=$KAFKA_SRC/log4j2.properties" -cp "$KAFKA_LIBS/*" \
        kafka.tools.StorageTool format -t "$cid" -c "$props" --ignore-formatted \
        >>"$LOG_DIR/kafka-format.log" 2>&1; then
        tail_log "$LOG_DIR/kafka-format.log"
        die "kafka StorageTool format failed"
    fi
}

cmd_start() {
    ensure_dirs
    if kafka_running; then
        local pid
        pid="$(read_pid "$KAFKA_PIDFILE")"
        if port_open "$KAFKA_HOST" "$KAFKA_PORT"; then
            log "already running (pid $pid) on $KAFKA_HOST:$KAFKA_PORT"
            return 0
        fi
        log "broker is up (pid $pid) but $KAFKA_HOST:$KAFKA_PORT is not open yet, waiting"
        if ! wait_for_port "$KAFKA_HOST" "$KAFKA_PORT" "$KAFKA_START_TIMEOUT" "$pid"; then
            tail_log "$KAFKA_LOG"
            die "Kafka (pid $pid) does not listen on $KAFKA_HOST:$KAFKA_PORT (another KAFKA_PORT? run services/kafka.sh stop)"
        fi
        return 0
    fi
    local p
    for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
        if port_open "$KAFKA_HOST" "$p"; then
            die "port $KAFKA_HOST:$p is already in use by a server that is not ours ($(who_listens "$p")); stop it or set KAFKA_PORT/KAFKA_CONTROLLER_PORT"
        fi
    done
    [[ -f "$KAFKA_MARKER" ]] || die "Kafka jars missing in $KAFKA_LIBS (run: services/kafka.sh install)"
    if [[ "$(cat "$KAFKA_MARKER")" != "$(marker_text)" ]]; then
        die "Kafka jars in $KAFKA_LIBS are not for $KAFKA_VERSION / the current pom (run: services/kafka.sh install)"
    fi

    write_props
    format_storage
    printf '\n===== %s starting Kafka %s =====\n' "$(date '+%F %T')" "$KAFKA_VERSION" >>"$KAFKA_LOG"
    log "starting Kafka $KAFKA_VERSION on $KAFKA_HOST:$KAFKA_PORT (controller $KAFKA_CONTROLLER_PORT)"
    local -a cmd
    mapfile -d '' cmd < <(java_cmd kafka.Kafka "$KAFKA_PROPS")
    (
        cd "$KAFKA_BASE"
        start_detached "$KAFKA_PIDFILE" "$KAFKA_LOG" "${cmd[@]}"
    )
    local pid
    pid="$(read_pid "$KAFKA_PIDFILE")"
    local wrc=0
    wait_for_port "$KAFKA_HOST" "$KAFKA_PORT" "$KAFKA_START_TIMEOUT" "$pid" || wrc=$?
    if ((wrc != 0)); then
        tail_log "$KAFKA_LOG"
        if ((wrc == 2)); then
            rm -f "$KAFKA_PIDFILE"
            die "Kafka (pid $pid) exited during startup; see the log above ($KAFKA_LOG)"
        fi
        stop_by_pidfile "$KAFKA_PIDFILE" 10 TERM "$KAFKA_PROPS"
        die "Kafka did not open $KAFKA_HOST:$KAFKA_PORT within ${KAFKA_START_TIMEOUT}s (stopped it; log above)"
    fi
    log "Kafka running (pid $pid), bootstrap $KAFKA_HOST:$KAFKA_PORT"
}

cmd_stop() {
    stop_by_pidfile "$KAFKA_PIDFILE" "$KAFKA_STOP_TIMEOUT" TERM "$KAFKA_PROPS"
}

# ---- the three-node cluster profile -------------------------------------------------------
KAFKA_CLUSTER_PORT="${KAFKA_CLUSTER_PORT:-9192}"
KAFKA_CLUSTER_NODES=3
KAFKA_CLUSTER_BASE="$DATA_DIR/kafka-cluster-$KAFKA_CLUSTER_PORT"

node_port() { printf '%s\n' $((KAFKA_CLUSTER_PORT + $1 - 1)); }
node_controller_port() { printf '%s\n' $((KAFKA_CLUSTER_PORT + 10 + $1 - 1)); }
node_pidfile() { printf '%s\n' "$RUN_DIR/kafka-cluster-$KAFKA_CLUSTER_PORT-$1.pid"; }
node_props() { printf '%s\n' "$KAFKA_CLUSTER_BASE/broker-$1.properties"; }
node_log() { printf '%s\n' "$LOG_DIR/kafka-cluster-$KAFKA_CLUSTER_PORT-$1.log"; }
node_running() { is_running "$(node_pidfile "$1")" "$(node_props "$1")"; }

check_node() {
    [[ "${1:-}" =~ ^[1-3]$ ]] || die "node number 1..$KAFKA_CLUSTER_NODES expected, got '${1:-}'"
}

cmd_cluster_bootstrap() {
    local n list=()
    for ((n = 1; n <= KAFKA_CLUSTER_NODES; n++)); do
        list+=("$KAFKA_HOST:$(node_port "$n")")
    done
    (IFS=,; printf '%s\n' "${list[*]}")
}

write_node_props() {
    local n="$1" voters=() v
    for ((v = 1; v <= KAFKA_CLUSTER_NODES; v++)); do
        voters+=("$v@$KAFKA_HOST:$(node_controller_port "$v")")
    done
    mkdir -p "$KAFKA_CLUSTER_BASE/data-$n"
    sed -e "s|@NODE_ID@|$n|g" \
        -e "s|@VOTERS@|$(IFS=,; printf '%s' "${voters[*]}")|g" \
        -e "s|@KAFKA_PORT@|$(node_port "$n")|g" \
        -e "s|@KAFKA_CONTROLLER_PORT@|$(node_controller_port "$n")|g" \
        -e "s|@KAFKA_DATA_DIR@|$KAFKA_CLUSTER_BASE/data-$n|g" \
        "$KAFKA_SRC/cluster.properties.in" >"$(node_props "$n").tmp"
    mv "$(node_props "$n").tmp" "$(node_props "$n")"
}

# launch_node N: start node N in the background (no wait); a running node is left alone.
launch_node() {
    local n="$1" p
    if node_running "$n"; then
        return 0
    fi
    for p in "$(node_port "$n")" "$(node_controller_port "$n")"; do
        if port_open "$KAFKA_HOST" "$p"; then
            die "port $KAFKA_HOST:$p is in use by a server that is not node $n ($(who_listens "$p")); set KAFKA_CLUSTER_PORT"
        fi
    done
    write_node_props "$n"
    format_storage "$KAFKA_CLUSTER_BASE/data-$n" "$(node_props "$n")" "$KAFKA_CLUSTER_BASE/cluster.id"
    printf '\n===== %s starting node %s =====\n' "$(date '+%F %T')" "$n" >>"$(node_log "$n")"
    log "starting cluster node $n on $KAFKA_HOST:$(node_port "$n") (controller $(node_controller_port "$n"))"
    local -a cmd
    mapfile -d '' cmd < <(KAFKA_HEAP_OPTS="${KAFKA_CLUSTER_HEAP_OPTS:--Xms256m -Xmx384m}" java_cmd kafka.Kafka "$(node_props "$n")")
    (
        cd "$KAFKA_CLUSTER_BASE"
        start_detached "$(node_pidfile "$n")" "$(node_log "$n")" "${cmd[@]}"
    )
}

# wait_node N: until node N listens (it does once unfenced, which needs a controller quorum).
wait_node() {
    local n="$1" pid rc=0
    pid="$(read_pid "$(node_pidfile "$n")")"
    # Longer than the single broker's: three JVMs start at once, and a node killed mid-write
    # recovers its logs first (over 90 s on a loaded 2-core machine).
    wait_for_port "$KAFKA_HOST" "$(node_port "$n")" "${KAFKA_CLUSTER_START_TIMEOUT:-300}" "$pid" || rc=$?
    if ((rc != 0)); then
        tail_log "$(node_log "$n")" 30
        die "cluster node $n (pid $pid) did not open $KAFKA_HOST:$(node_port "$n")"
    fi
}

ensure_jars() {
    [[ -f "$KAFKA_MARKER" && "$(cat "$KAFKA_MARKER")" == "$(marker_text)" ]] || cmd_install
}

cmd_cluster_start() {
    ensure_dirs
    ensure_jars
    mkdir -p "$KAFKA_CLUSTER_BASE"
    local n
    # All at once: a node opens its port only once a controller quorum (2 of 3) stands.
    for ((n = 1; n <= KAFKA_CLUSTER_NODES; n++)); do
        launch_node "$n"
    done
    for ((n = 1; n <= KAFKA_CLUSTER_NODES; n++)); do
        wait_node "$n"
    done
    log "Kafka cluster running, bootstrap $(cmd_cluster_bootstrap)"
}

cmd_cluster_stop() {
    local n pids=()
    for ((n = 1; n <= KAFKA_CLUSTER_NODES; n++)); do
        stop_by_pidfile "$(node_pidfile "$n")" "$KAFKA_STOP_TIMEOUT" TERM "$(node_props "$n")" &
        pids+=($!)
    done
    local rc=0
    for n in "${pids[@]}"; do wait "$n" || rc=1; done
    return "$rc"
}

cmd_cluster_status() {
    local n up=0
    for ((n = 1; n <= KAFKA_CLUSTER_NODES; n++)); do
        if node_running "$n" && port_open "$KAFKA_HOST" "$(node_port "$n")"; then
            up=$((up + 1))
            log "node $n running (pid $(read_pid "$(node_pidfile "$n")")) on $KAFKA_HOST:$(node_port "$n")"
        else
            log "node $n not running"
        fi
    done
    ((up == KAFKA_CLUSTER_NODES)) || return 3
}

cmd_broker() {
    local action="$1" n="$2"
    check_node "$n"
    case "$action" in
    start)
        ensure_dirs
        launch_node "$n"
        wait_node "$n"
        ;;
    stop) stop_by_pidfile "$(node_pidfile "$n")" "$KAFKA_STOP_TIMEOUT" TERM "$(node_props "$n")" ;;
    kill)
        # A crash, not a shutdown: no controlled leadership hand-over, log recovery at restart.
        local pid
        pid="$(read_pid "$(node_pidfile "$n")")"
        if [[ -n "$pid" ]] && node_running "$n"; then
            log "SIGKILL to cluster node $n (pid $pid)"
            kill -KILL "$pid"
            wait_pid_exit "$pid" 10 || die "node $n (pid $pid) survived SIGKILL"
        fi
        rm -f "$(node_pidfile "$n")"
        ;;
    esac
}

case "${1:-}" in
install) cmd_install ;;
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status || exit $? ;;
cluster-start) cmd_cluster_start ;;
cluster-stop) cmd_cluster_stop ;;
cluster-status) cmd_cluster_status || exit $? ;;
cluster-bootstrap) cmd_cluster_bootstrap ;;
broker-start | broker-stop | broker-kill) cmd_broker "${1#broker-}" "${2:-}" ;;
*)
    echo "usage: $0 {install|start|stop|status|cluster-start|cluster-stop|cluster-status|cluster-bootstrap|broker-start N|broker-stop N|broker-kill N}" >&2
    exit 2
    ;;
esac
