#!/usr/bin/env bash
# Command-line tools the tests use besides the servers: a Compose CLI to validate
# docker-compose.yml (`docker compose` if the Docker CLI has the plugin, else
# Debian's docker-compose). Installs only what is missing.
set -euo pipefail
# shellcheck source=services/lib.sh
source "$(dirname "$0")/lib.sh"

if docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1; then
    exit 0
fi
apt_install docker-compose
