#!/usr/bin/env bash
# Install (if missing) and start (if not running) PostgreSQL, RabbitMQ, Kafka, Redis and the mail catcher for
# this checkout, then create the roles, databases, RabbitMQ user and vhost, and the Kafka
# topic. Idempotent: a second run
# reuses the running servers and takes about a second.
#
#   bash services/up.sh            # PYTHON (default .venv/bin/python) must have confluent-kafka
#
# Env: DATA_DIR (default <repo>/.data), PGPORT (5432), RABBITMQ_PORT (5672), KAFKA_PORT (9092), REDIS_PORT (6379),
#      KAFKA_CONTROLLER_PORT (9093), KAFKA_TOPIC (user-events), KAFKA_PARTITIONS (6), PYTHON.
# Cluster profile: KAFKA_CLUSTER=1 starts three KRaft brokers (KAFKA_CLUSTER_PORT, default 9192,
# +1, +2) instead of the single one, and makes the topic with replication factor 3 and
# min.insync.replicas 2. PG_REPLICA_PORT=<port> also starts a streaming replica of PostgreSQL
# there (services/postgres.sh replica-start), which the read API then reads.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

started=$SECONDS
ensure_dirs

python="${PYTHON:-$ROOT/.venv/bin/python}"
if [[ ! -x "$python" && "$python" != /* && -x "$ROOT/$python" ]]; then
    python="$ROOT/$python"
fi
[[ -x "$python" ]] || command -v "$python" >/dev/null 2>&1 ||
    die "Python not found: '$python' (set PYTHON to a python with confluent-kafka, e.g. PYTHON=.venv/bin/python)"

# Installs run one after the other (apt holds a lock); each is a quick check when done before.
bash "$SERVICES_DIR/postgres.sh" install
bash "$SERVICES_DIR/rabbitmq.sh" install
bash "$SERVICES_DIR/kafka.sh" install
bash "$SERVICES_DIR/redis.sh" install

# RabbitMQ boots slowest (~10-15 s here), so it starts in the background meanwhile.
bash "$SERVICES_DIR/rabbitmq.sh" start &
rabbit_job=$!
rc=0
bash "$SERVICES_DIR/postgres.sh" start || rc=$?
kafka_cluster=0
case "${KAFKA_CLUSTER:-0}" in 1 | true | yes | on) kafka_cluster=1 ;; esac
if ((rc == 0)); then
    if ((kafka_cluster)); then
        bash "$SERVICES_DIR/kafka.sh" cluster-start || rc=$?
    else
        bash "$SERVICES_DIR/kafka.sh" start || rc=$?
    fi
fi
if ((rc == 0)); then
    bash "$SERVICES_DIR/redis.sh" start || rc=$?
fi
if ((rc == 0)); then
    PYTHON="$python" bash "$SERVICES_DIR/mailcatcher.sh" start || rc=$?
fi
rabbit_rc=0
wait "$rabbit_job" || rabbit_rc=$?
((rc == 0)) || die "a server failed to start (see above)"
((rabbit_rc == 0)) || die "RabbitMQ failed to start (see above)"

bash "$SERVICES_DIR/postgres.sh" setup
if [[ -n "${PG_REPLICA_PORT:-}" ]]; then
    bash "$SERVICES_DIR/postgres.sh" replica-start
fi
bash "$SERVICES_DIR/rabbitmq.sh" setup
if ((kafka_cluster)); then
    bootstrap="$(bash "$SERVICES_DIR/kafka.sh" cluster-bootstrap)"
    replication=(--replication-factor 3 --min-insync-replicas 2)
else
    bootstrap="127.0.0.1:${KAFKA_PORT:-9092}"
    replication=()
fi
"$python" "$SERVICES_DIR/create_topic.py" \
    --bootstrap "$bootstrap" \
    --topic "${KAFKA_TOPIC:-user-events}" \
    --partitions "${KAFKA_PARTITIONS:-6}" "${replication[@]}" ||
    die "could not create Kafka topic ${KAFKA_TOPIC:-user-events} (see $LOG_DIR/kafka*.log)"

log "all services up in $((SECONDS - started))s:"
log "  postgresql://127.0.0.1:${PGPORT:-5432}/auth_db and .../query_db, a role per process kind"
log "  amqp://${RABBITMQ_USER:-cqrs}@127.0.0.1:${RABBITMQ_PORT:-5672}/${RABBITMQ_VHOST:-cqrs}"
log "  (generated passwords in $SECRETS_DIR, mode 0600)"
log "  kafka $bootstrap, topic ${KAFKA_TOPIC:-user-events}"
[[ -z "${PG_REPLICA_PORT:-}" ]] || log "  read replica of PostgreSQL on 127.0.0.1:$PG_REPLICA_PORT"
log "  redis://127.0.0.1:${REDIS_PORT:-6379} (rate limits)"
log "  smtp://127.0.0.1:${SMTP_PORT:-1025}, a mail catcher (python -m services.mail_catcher list)"
