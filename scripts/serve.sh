#!/usr/bin/env bash
# Installs what is missing, builds Wharf and runs `wharf serve` on its embedded PostgreSQL
# (data under ./.wharf, or /var/lib/wharf/embedded-* when run as root from a folder the postgres user
# cannot enter). Extra arguments go to `wharf serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(bash scripts/install-deps.sh)"
swift build -c release --product wharf
exec "$(swift build -c release --show-bin-path)/wharf" serve "$@"
