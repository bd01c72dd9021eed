#!/usr/bin/env bash
# Generated credentials under $SECRETS_DIR (default $DATA_DIR/secrets), one file each, 0600.
#
#   services/secrets.sh ensure NAME...   # create what is missing (quiet)
#   services/secrets.sh flower           # create Flower's password if missing and show the login
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case "${1:-}" in
ensure)
    shift
    for name in "$@"; do ensure_secret "$name" >/dev/null; done
    ;;
flower)
    # Shown once at `make run`: the operator's login for the Flower UI and API.
    password="$(ensure_secret flower)"
    printf 'Flower: http://127.0.0.1:%s  user: flower  password: %s  (kept in %s)\n' \
        "${FLOWER_PORT:-5555}" "$password" "$SECRETS_DIR/flower"
    ;;
*)
    echo "usage: $0 {ensure NAME...|flower}" >&2
    exit 2
    ;;
esac
