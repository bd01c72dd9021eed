# shellcheck shell=bash
# Shared helpers for the local service scripts (postgres.sh, rabbitmq.sh, kafka.sh,
# up.sh, down.sh). Source it; it does not run anything by itself except computing paths.
#
# Layout (all git-ignored, under DATA_DIR, default <repo root>/.data):
#   $DATA_DIR/run/<name>.pid   PID of the real server process (postmaster, beam.smp, java)
#   $DATA_DIR/log/<name>.log   server console log
#   $DATA_DIR/<name>/          server data

SERVICES_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$SERVICES_DIR")"
DATA_DIR="$(realpath -m "${DATA_DIR:-$ROOT/.data}")"
RUN_DIR="$DATA_DIR/run"
LOG_DIR="$DATA_DIR/log"
# Generated credentials (database roles, RabbitMQ user, Flower), one file each, mode 0600.
# settings.py reads the same files for its default URLs.
SECRETS_DIR="$(realpath -m "${SECRETS_DIR:-$DATA_DIR/secrets}")"
export SERVICES_DIR ROOT DATA_DIR RUN_DIR LOG_DIR SECRETS_DIR

LOG_TAG="${LOG_TAG:-$(basename "${0%.sh}")}"

# With `set -e`, say which command failed instead of exiting silently.
set -E
trap 'log "ERROR: command failed (exit $?) at ${BASH_SOURCE[0]##*/}:$LINENO: $BASH_COMMAND"' ERR

log() { printf '[%s %s] %s\n' "$(date +%H:%M:%S)" "$LOG_TAG" "$*" >&2; }
warn() { log "WARNING: $*"; }
die() {
    log "ERROR: $*"
    exit 1
}

ensure_dirs() {
    mkdir -p "$DATA_DIR" "$RUN_DIR" "$LOG_DIR"
}

# ensure_secret NAME: print the secret kept in $SECRETS_DIR/NAME, generating it on first use
# (192 random bits as hex: safe in URLs). Never logged; the file is 0600 in a 0700 folder.
ensure_secret() {
    local file="$SECRETS_DIR/$1" tmp
    if [[ ! -s "$file" ]]; then
        install -d -m 700 "$SECRETS_DIR" "$(dirname "$file")"
        tmp="$(umask 077 && mktemp "$file.XXXXXX")"
        od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$tmp"
        # No clobber: two set-ups at once keep one password, the first one written.
        mv -n "$tmp" "$file"
        rm -f "$tmp"
    fi
    chmod 600 "$file"
    cat "$file"
}

# tail_log FILE [LINES]: print the last lines of a log to stderr (for failure reports).
tail_log() {
    local file="$1" lines="${2:-60}"
    if [[ -f "$file" ]]; then
        printf -- '----- last %s lines of %s -----\n' "$lines" "$file" >&2
        tail -n "$lines" "$file" >&2 || true
        printf -- '----- end of %s -----\n' "$file" >&2
    else
        printf -- '(no log file %s)\n' "$file" >&2
    fi
}

# port_open HOST PORT: true if a TCP connect succeeds within 1 s.
port_open() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 1 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# pid_alive PID: true if the process exists and is not a zombie.
pid_alive() {
    local pid="$1" state
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
    [[ "$state" != "Z" ]]
}

# read_pid PIDFILE: print the PID stored in the file (first line), or nothing.
read_pid() {
    local f="$1" pid=""
    if [[ -f "$f" ]]; then
        read -r pid <"$f" 2>/dev/null || true
    fi
    [[ "$pid" =~ ^[0-9]+$ ]] && printf '%s\n' "$pid"
    return 0
}

# is_running PIDFILE [CMDLINE-SUBSTRING]: true if the PID in the file is alive (and, when a
# substring is given, its command line contains it, which guards against a reused PID).
is_running() {
    local pidfile="$1" pattern="${2:-}" pid cmdline
    pid="$(read_pid "$pidfile")"
    [[ -n "$pid" ]] || return 1
    pid_alive "$pid" || return 1
    if [[ -n "$pattern" ]]; then
        cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
        [[ "$cmdline" == *"$pattern"* ]] || return 1
    fi
    return 0
}

# wait_for_port HOST PORT TIMEOUT [PID-TO-WATCH]
# Returns 0 once the port accepts connections, 2 if the watched PID died, 1 on timeout.
wait_for_port() {
    local host="$1" port="$2" timeout="$3" pid="${4:-}" deadline
    deadline=$((SECONDS + timeout))
    while ((SECONDS < deadline)); do
        if port_open "$host" "$port"; then
            return 0
        fi
        if [[ -n "$pid" ]] && ! pid_alive "$pid"; then
            log "process $pid exited while waiting for $host:$port"
            return 2
        fi
        sleep 0.25
    done
    log "timed out after ${timeout}s waiting for $host:$port"
    return 1
}

# wait_for_file FILE TIMEOUT [PID-TO-WATCH]: wait until FILE exists and is non-empty.
wait_for_file() {
    local file="$1" timeout="$2" pid="${3:-}" deadline
    deadline=$((SECONDS + timeout))
    while ((SECONDS < deadline)); do
        [[ -s "$file" ]] && return 0
        if [[ -n "$pid" ]] && ! pid_alive "$pid"; then
            return 2
        fi
        sleep 0.2
    done
    return 1
}

# wait_pid_exit PID TIMEOUT: true once the PID is gone (or a zombie), false on timeout.
wait_pid_exit() {
    local pid="$1" timeout="$2" deadline
    deadline=$((SECONDS + timeout))
    while pid_alive "$pid"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
    return 0
}

# stop_by_pidfile PIDFILE TIMEOUT [SIGNAL] [CMDLINE-SUBSTRING]
# Sends SIGNAL (default TERM) to the PID in the file, waits up to TIMEOUT seconds, then SIGKILL.
# Removes the pid file. A missing/stale pid file is not an error.
stop_by_pidfile() {
    local pidfile="$1" timeout="$2" sig="${3:-TERM}" pattern="${4:-}" pid
    pid="$(read_pid "$pidfile")"
    if [[ -z "$pid" ]] || ! is_running "$pidfile" "$pattern"; then
        [[ -n "$pid" ]] && log "stale pid file $pidfile (pid $pid is not running, or is not this server), removing"
        rm -f "$pidfile"
        return 0
    fi
    log "sending SIG$sig to pid $pid"
    kill "-$sig" "$pid" 2>/dev/null || true
    if ! wait_pid_exit "$pid" "$timeout"; then
        warn "pid $pid still alive after ${timeout}s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_pid_exit "$pid" 10 || die "pid $pid survived SIGKILL"
    fi
    rm -f "$pidfile"
    log "stopped (pid $pid)"
}

# who_listens PORT: best-effort description of the process listening on a TCP port.
who_listens() {
    if command -v ss >/dev/null 2>&1; then
        ss -Hltnp "sport = :$1" 2>/dev/null | head -n 3
    fi
}

# adopt_listener PORT PIDFILE CMDLINE-SUBSTRING: if the process listening on PORT is ours
# (its command line holds the substring, e.g. our data folder) but its PID file is gone,
# as after a start that was killed before it wrote the file, record its PID and succeed.
adopt_listener() {
    local port="$1" pidfile="$2" pattern="$3" pid cmdline
    for pid in $(who_listens "$port" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u); do
        cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
        if [[ "$cmdline" == *"$pattern"* ]]; then
            printf '%s\n' "$pid" >"$pidfile"
            log "adopted our server already listening on port $port (pid $pid, its PID file was missing)"
            return 0
        fi
    done
    return 1
}

# apt_install PKG...: install Debian packages without letting their maintainer scripts
# start system services (a temporary /usr/sbin/policy-rc.d that answers 101).
# `apt-get update` runs once per process before the first install.
APT_UPDATED="${APT_UPDATED:-}"
apt_install() {
    [[ "$(id -u)" == 0 ]] || die "installing $* needs root (apt-get)"
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install $* by hand"
    local policy=/usr/sbin/policy-rc.d backup="" rc=0
    if [[ -e "$policy" ]]; then
        backup="$(mktemp)"
        cp -p "$policy" "$backup"
    fi
    printf '#!/bin/sh\n# temporary, from %s: do not start services during apt-get install\nexit 101\n' \
        "$SERVICES_DIR/lib.sh" >"$policy"
    chmod 755 "$policy"
    if [[ -z "$APT_UPDATED" ]]; then
        log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || rc=$?
        APT_UPDATED=1
        export APT_UPDATED
    fi
    if ((rc == 0)); then
        log "apt-get install -y $*"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >&2 || rc=$?
    fi
    if [[ -n "$backup" ]]; then
        mv -f "$backup" "$policy"
    else
        rm -f "$policy"
    fi
    ((rc == 0)) || die "apt-get failed (exit $rc) installing: $*"
}

# make_traversable USER DIR: make sure USER can reach DIR (search permission on each parent).
# Missing o+x bits on parent directories are added (only x, never r/w), and each change is logged.
make_traversable() {
    local user="$1" dir="$2" d
    d="$dir"
    local parents=()
    while [[ "$d" != "/" && -n "$d" ]]; do
        d="$(dirname "$d")"
        parents+=("$d")
    done
    local i
    for ((i = ${#parents[@]} - 1; i >= 0; i--)); do
        d="${parents[i]}"
        if ! runuser -u "$user" -- test -x "$d" 2>/dev/null; then
            log "granting o+x on $d so that user '$user' can reach $dir"
            chmod o+x "$d"
        fi
    done
}

# start_detached PIDFILE LOGFILE CMD...: run CMD in its own session, stdin from /dev/null and
# stdout/stderr appended to LOGFILE; the PID of CMD itself (after exec) is written to PIDFILE.
start_detached() {
    local pidfile="$1" logfile="$2"
    shift 2
    rm -f "$pidfile"
    # shellcheck disable=SC2016 # $$ and $0 are expanded by the inner sh
    setsid sh -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" </dev/null >>"$logfile" 2>&1 &
    wait_for_file "$pidfile" 10 || die "could not start: $*"
}
