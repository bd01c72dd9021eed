#!/usr/bin/env bash
# Command-line tools the tests use besides the servers: a Compose CLI to validate
# docker-compose.yml (`docker compose` if the Docker CLI has the plugin, else
# Debian's docker-compose), and Debian's headless-capable Chromium, which the e2e test
# of the Swagger UI page (/docs) drives. Installs only what is missing.
set -euo pipefail
# shellcheck source=services/lib.sh
source "$(dirname "$0")/lib.sh"

missing=()
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
    missing+=(docker-compose)
fi
# The test calls /usr/bin/chromium (or CHROMIUM): nothing else, so a snap stub or
# another browser on PATH does not count.
if [[ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]]; then
    missing+=(chromium)
fi
if ((${#missing[@]})); then
    # One apt-get run (one `apt-get update`) for everything missing.
    apt_install "${missing[@]}"
fi
