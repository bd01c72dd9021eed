#!/usr/bin/env bash
# Local mail catcher for the notifier (aiosmtpd, pinned in requirements/): an SMTP server on
# loopback that stores every message it accepts in a Maildir instead of delivering it.
# Read the mail with `python -m services.mail_catcher list` / `show N`.
#
#   services/mailcatcher.sh start    # start ours; no-op if running
#   services/mailcatcher.sh stop     # SIGTERM to the recorded PID, then SIGKILL
#   services/mailcatcher.sh status   # exit 0 if running, 3 if not
#
# Env: SMTP_PORT (default 1025), MAIL_DIR (default $DATA_DIR/mail), PYTHON (default the venv's).
# Listens on 127.0.0.1 only; log $DATA_DIR/log/mailcatcher-<port>.log, PID in
# $DATA_DIR/run/mailcatcher-<port>.pid (one catcher per port: the tests run their own).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SMTP_PORT="${SMTP_PORT:-1025}"
SMTP_HOST=127.0.0.1
MAIL_DIR="$(realpath -m "${MAIL_DIR:-$DATA_DIR/mail}")"
MAIL_PIDFILE="$RUN_DIR/mailcatcher-$SMTP_PORT.pid"
MAIL_LOG="$LOG_DIR/mailcatcher-$SMTP_PORT.log"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
# What its command line holds, to tell it from a reused PID.
MAIL_TITLE="-m aiosmtpd -n -l $SMTP_HOST:$SMTP_PORT"

catcher_running() { is_running "$MAIL_PIDFILE" "$MAIL_TITLE"; }

cmd_status() {
    if catcher_running && port_open "$SMTP_HOST" "$SMTP_PORT"; then
        log "running (pid $(read_pid "$MAIL_PIDFILE")) on $SMTP_HOST:$SMTP_PORT, mail in $MAIL_DIR"
        return 0
    fi
    log "not running"
    return 3
}

cmd_start() {
    ensure_dirs
    if catcher_running && port_open "$SMTP_HOST" "$SMTP_PORT"; then
        log "already running (pid $(read_pid "$MAIL_PIDFILE")) on $SMTP_HOST:$SMTP_PORT"
        return 0
    fi
    if port_open "$SMTP_HOST" "$SMTP_PORT"; then
        adopt_listener "$SMTP_PORT" "$MAIL_PIDFILE" "$MAIL_TITLE" && return 0
        die "port $SMTP_HOST:$SMTP_PORT is already in use by a server that is not ours ($(who_listens "$SMTP_PORT")); stop it or set SMTP_PORT"
    fi
    "$PYTHON" -c 'import aiosmtpd' 2>/dev/null || die "aiosmtpd not installed in $PYTHON (make install)"
    # A Maildir: the handler creates these only when the folder itself is missing.
    mkdir -p "$MAIL_DIR/cur" "$MAIL_DIR/new" "$MAIL_DIR/tmp"
    log "starting the mail catcher on $SMTP_HOST:$SMTP_PORT (Maildir $MAIL_DIR)"
    # -n: never setuid to nobody (the Maildir is ours); -u: accept UTF-8 addresses.
    start_detached "$MAIL_PIDFILE" "$MAIL_LOG" "$PYTHON" -m aiosmtpd -n -l "$SMTP_HOST:$SMTP_PORT" -u \
        -c aiosmtpd.handlers.Mailbox "$MAIL_DIR"
    local rc=0
    wait_for_port "$SMTP_HOST" "$SMTP_PORT" 30 "$(read_pid "$MAIL_PIDFILE")" || rc=$?
    if ((rc != 0)); then
        tail_log "$MAIL_LOG"
        die "the mail catcher did not start"
    fi
    log "running (pid $(read_pid "$MAIL_PIDFILE")) on $SMTP_HOST:$SMTP_PORT"
}

cmd_stop() {
    stop_by_pidfile "$MAIL_PIDFILE" "${MAIL_STOP_TIMEOUT:-10}" TERM "$MAIL_TITLE"
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status || exit $? ;;
*)
    echo "usage: $0 {start|stop|status}" >&2
    exit 2
    ;;
esac
