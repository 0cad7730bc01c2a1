#!/usr/bin/env bash
# A throwaway PostgreSQL for the test suite: its own data and socket directory under /tmp, a Unix
# socket only (no TCP port), run as an unprivileged user because PostgreSQL refuses to run as root.
#
#   scripts/test-postgres.sh start   # prints the libpq conninfo
#   scripts/test-postgres.sh stop
set -euo pipefail

state_file=${WHARF_TEST_PG_STATE:-/tmp/wharf-test-pg.dir}

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
  if [ -f "$state_file" ] && [ -d "$(cat "$state_file")/pg" ]; then
    dir=$(cat "$state_file")
    if as_pg pg_ctl -D "$dir/pg" status >/dev/null 2>&1; then
      echo "host=$dir port=5432 user=postgres dbname=postgres"
      return
    fi
  fi
  if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin postgres
  fi
  dir=$(mktemp -d /tmp/wharf-test-pg.XXXXXX)
  chmod 755 "$dir"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
  as_pg initdb -D "$dir/pg" -U postgres --auth=trust -E UTF8 --no-instructions >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
  # Tests favour speed over durability: nothing here needs to survive a power cut.
  as_pg pg_ctl -D "$dir/pg" -l "$dir/pg/server.log" -w -t 60 \
    -o "-c listen_addresses='' -k $dir -p 5432 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
    start >/dev/null
  echo "$dir" >"$state_file"
  echo "host=$dir port=5432 user=postgres dbname=postgres"
}

stop() {
  [ -f "$state_file" ] || return 0
  dir=$(cat "$state_file")
  as_pg pg_ctl -D "$dir/pg" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$dir" "$state_file"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
