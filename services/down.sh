#!/usr/bin/env bash
# Stop the PostgreSQL, RabbitMQ, Kafka, Redis and mail catcher servers started by services/up.sh (by recorded PID,
# see $DATA_DIR/run/*.pid). Data in $DATA_DIR is kept; `rm -rf .data` resets everything.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

pids=()
for svc in kafka rabbitmq postgres redis mailcatcher; do
    bash "$SERVICES_DIR/$svc.sh" stop &
    pids+=($!)
done
# The cluster profile's brokers and the read replica, if up.sh started them.
bash "$SERVICES_DIR/kafka.sh" cluster-stop &
pids+=($!)
bash "$SERVICES_DIR/postgres.sh" replica-stop &
pids+=($!)
rc=0
for p in "${pids[@]}"; do
    wait "$p" || rc=1
done
((rc == 0)) || die "some server did not stop cleanly (see above)"
log "all services stopped"
