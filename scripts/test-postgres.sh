#!/usr/bin/env bash
# A throwaway PostgreSQL for the test suite: data and socket in a fresh `mktemp -d` directory (in
# /dev/shm when it has room, else /tmp), a Unix socket only (no TCP port), fsync off. PostgreSQL refuses
# to run as root, so as root it runs as the unprivileged `postgres` user (created if missing);
# otherwise as the current user.
#
#   scripts/test-postgres.sh start   # starts it (or finds it running) and prints the libpq conninfo
#   scripts/test-postgres.sh url     # prints the conninfo of the running instance
#   scripts/test-postgres.sh env     # prints `export WHARF_TEST_DATABASE_URL=...` for eval
#   scripts/test-postgres.sh stop    # stops it and removes its directory
#
# Which instance: the path in WHARF_TEST_PG_STATE (a file holding the instance's directory), by
# default one per user and checkout, so separate checkouts and scripts/test.sh runs do not share one.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
state_file=${WHARF_TEST_PG_STATE:-/tmp/wharf-test-pg-$(id -u)-$(printf '%s' "$root" | cksum | cut -d' ' -f1).state}

# Debian's postgresql package keeps initdb and pg_ctl outside PATH.
if ! command -v initdb >/dev/null 2>&1; then
  pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  [ -n "$pgbin" ] && PATH="$pgbin:$PATH"
fi
command -v initdb >/dev/null 2>&1 || { echo "initdb not found: install PostgreSQL (apt-get install postgresql)" >&2; exit 1; }

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    if command -v runuser >/dev/null 2>&1; then
      runuser -u postgres -- "$@"
    else
      su postgres -s /bin/sh -c "PATH='$PATH' $(printf '%q ' "$@")"
    fi
  else
    "$@"
  fi
}

conninfo() { echo "host=$1 port=5432 user=postgres dbname=postgres"; }

running_dir() {
  [ -f "$state_file" ] || return 1
  local dir
  dir=$(cat "$state_file")
  [ -d "$dir/pg" ] && as_pg pg_ctl -D "$dir/pg" status >/dev/null 2>&1 || return 1
  echo "$dir"
}

start() {
  local dir
  if dir=$(running_dir); then
    conninfo "$dir"
    return
  fi
  [ -f "$state_file" ] && stop
  if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin postgres
  fi
  # In memory when there is room (a run creates about a gigabyte of databases, and writing, then
  # deleting, that much on a busy disk costs more than the tests), else /tmp. Not $TMPDIR: as root,
  # the postgres user must be able to reach the directory.
  local parent=/tmp
  if [ -d /dev/shm ] && [ -w /dev/shm ] && [ "$(df -Pk /dev/shm | awk 'NR == 2 { print $4 }')" -gt $((4 << 20)) ]; then
    parent=/dev/shm
  fi
  dir=$(mktemp -d "$parent/wharf-test-pg.XXXXXX")
  chmod 755 "$dir"
  if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir"; fi
  echo "$dir" >"$state_file"
  if ! as_pg initdb -D "$dir/pg" -U postgres --auth=trust -E UTF8 --no-instructions >"$dir/initdb.log" 2>&1; then
    cat "$dir/initdb.log" >&2
    exit 1
  fi
  # Tests favour speed over durability: nothing here needs to survive a power cut.
  local options="-c listen_addresses='' -k $dir -p 5432 -c fsync=off -c synchronous_commit=off"
  options+=" -c full_page_writes=off -c max_connections=400"
  if ! as_pg pg_ctl -D "$dir/pg" -l "$dir/pg/server.log" -w -t 60 -o "$options" start >/dev/null; then
    cat "$dir/pg/server.log" >&2 || true
    exit 1
  fi
  conninfo "$dir"
}

stop() {
  [ -f "$state_file" ] || return 0
  local dir
  dir=$(cat "$state_file")
  if [ -f "$dir/pg/postmaster.pid" ]; then
    # Immediate: nothing in it is worth a clean shutdown. If it still hangs on, kill it outright.
    if ! as_pg pg_ctl -D "$dir/pg" -m immediate -w -t 15 stop >/dev/null 2>&1; then
      pid=$(head -1 "$dir/pg/postmaster.pid" 2>/dev/null || true)
      [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    fi
  fi
  case "$dir" in /tmp/wharf-test-pg.* | /dev/shm/wharf-test-pg.*) rm -rf "$dir" ;; esac
  rm -f "$state_file"
}

case "${1:-}" in
  start) start ;;
  url)
    dir=$(running_dir) || { echo "no test PostgreSQL running; run: $0 start" >&2; exit 1; }
    conninfo "$dir"
    ;;
  env) echo "export WHARF_TEST_DATABASE_URL='$(start)'" ;;
  stop) stop ;;
  *) echo "usage: $0 start|url|env|stop" >&2; exit 2 ;;
esac
