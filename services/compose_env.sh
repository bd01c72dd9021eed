#!/usr/bin/env bash
# Writes .env for `docker compose` (mode 0600, git-ignored) with a generated password for the
# PostgreSQL superuser, each database role (and the cluster profile's replication role), the
# RabbitMQ user and Flower. Keeps an existing .env (the databases in the volumes already have
# those passwords), adding only a credential it lacks.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENV_FILE="${ENV_FILE:-$ROOT/.env}"
secret() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }
if [[ -s "$ENV_FILE" ]]; then
    for name in PG_REPLICATION_PASSWORD; do
        grep -q "^$name=" "$ENV_FILE" || printf '%s=%s\n' "$name" "$(secret)" >>"$ENV_FILE"
    done
    echo "$ENV_FILE exists; keeping it" >&2
    exit 0
fi
(
    umask 077
    {
        for name in POSTGRES_PASSWORD PG_AUTH_PASSWORD PG_RELAY_PASSWORD PG_PROJECTION_PASSWORD \
            PG_READER_PASSWORD PG_NOTIFIER_PASSWORD PG_REPLICATION_PASSWORD RABBITMQ_PASSWORD; do
            printf '%s=%s\n' "$name" "$(secret)"
        done
        printf 'FLOWER_BASIC_AUTH=flower:%s\n' "$(secret)"
    } >"$ENV_FILE"
)
echo "wrote $ENV_FILE (Flower's login is its FLOWER_BASIC_AUTH line)" >&2
