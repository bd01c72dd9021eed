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
# The cluster profile's brokers and read replicas: up.sh's, and those `make test-cluster` left up
# on its own ports. Their PID files name the port (kafka-cluster-<port>-<node>, postgres-replica-<port>).
cluster_ports=("${KAFKA_CLUSTER_PORT:-9192}")
replica_ports=("${PG_REPLICA_PORT:-5433}")
shopt -s nullglob
for f in "$RUN_DIR"/kafka-cluster-*-*.pid; do
    port="${f##*/kafka-cluster-}"
    cluster_ports+=("${port%-*}")
done
for f in "$RUN_DIR"/postgres-replica-*.pid; do
    port="${f##*/postgres-replica-}"
    replica_ports+=("${port%.pid}")
done
shopt -u nullglob
for port in $(printf '%s\n' "${cluster_ports[@]}" | sort -u); do
    KAFKA_CLUSTER_PORT="$port" bash "$SERVICES_DIR/kafka.sh" cluster-stop &
    pids+=($!)
done
for port in $(printf '%s\n' "${replica_ports[@]}" | sort -u); do
    PG_REPLICA_PORT="$port" bash "$SERVICES_DIR/postgres.sh" replica-stop &
    pids+=($!)
done
rc=0
for p in "${pids[@]}"; do
    wait "$p" || rc=1
done
((rc == 0)) || die "some server did not stop cleanly (see above)"
log "all services stopped"
