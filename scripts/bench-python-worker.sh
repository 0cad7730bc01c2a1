#!/usr/bin/env bash
# The Python wharf.Worker draining no-op jobs next to pgqueuer's Python workers, in alternating rounds
# on the peer benchmarks' PostgreSQL (../shared/bench/start-pg.sh, see ../shared/bench/README.md).
#
# Each round runs, one after the other:
#   after   `python -m wharf.bench` with this checkout's Clients/python (PROCS x CONC, async no-op handler)
#   before  the same benchmark with the wharf package of BEFORE_REF (default main), i.e. its Worker
#   swift   `wharf bench jobs` with PROCS Swift worker connections x lease BATCH: the server's own drain, the
#           ceiling a client can reach (SWIFT=0 skips it)
#   pgqueuer  PROCS=$PROCS BATCH=$BATCH ../shared/bench/run-pgqueuer.sh (one run, no latency part)
# Each Wharf run gets a fresh database and a fresh release `wharf serve` on it, after a CHECKPOINT
# (pgqueuer's script truncates, vacuums and checkpoints its tables the same way).
#
# env: ROUNDS (3), JOBS (20000), PROCS (2), CONC (200: the Worker's concurrency), BATCH (200: pgqueuer's
#      batch_size), BEFORE_REF (main; empty: skip), WHARF_BIN (default: the release build, built if missing),
#      PEERS (path of the shared bench scripts, default ../shared/bench next to the repository's parent)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-3} JOBS=${JOBS:-20000} PROCS=${PROCS:-2} CONC=${CONC:-200} BATCH=${BATCH:-200}
BEFORE_REF=${BEFORE_REF-main}
PEERS=${PEERS:-$(cd "$root/../.." && pwd)/shared/bench}
[ -x "$PEERS/run-pgqueuer.sh" ] || PEERS=/work/shared/bench
PY=${PYTHON:-python3}
PORT=${PORT:-17491}
work=$(mktemp -d /tmp/bench-python-worker.XXXXXX)
server_pid=

if [ -z "${WHARF_BIN:-}" ]; then
  (cd "$root" && swift build -c release --product wharf >&2)
  WHARF_BIN=$(cd "$root" && swift build -c release --show-bin-path)/wharf
fi
cp "$WHARF_BIN" "$work/wharf"  # a rebuild during the rounds must not change the server under test

eval "$("$PEERS/start-pg.sh" | grep -E '^(PG_URL|PG_PID)=')"
PSQL="psql -h 127.0.0.1 -p 54329 -U postgres -v ON_ERROR_STOP=1 -qAt"
db=wharf_pybench_$$

stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
  fi
  $PSQL -d postgres -c "drop database if exists $db" >/dev/null 2>&1 || true
}
trap 'stop_server; rm -rf "$work"' EXIT

start_server() {
  $PSQL -d postgres -c "drop database if exists $db" -c "create database $db owner bench" -c "checkpoint" >/dev/null
  "$work/wharf" serve --database "postgresql://bench@127.0.0.1:54329/$db" --listen "127.0.0.1:$PORT" \
    --log-level warning >"$work/serve.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 200); do
    if "$PY" -c "import socket,sys; s=socket.create_connection(('127.0.0.1',$PORT),1); s.sendall(b'{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"server.ping\"}\n'); sys.exit(0 if b'pong' in s.recv(999) else 1)" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  cat "$work/serve.log" >&2
  echo "wharf serve did not start" >&2
  exit 1
}

# The "before" package: BEFORE_REF's wharf package, with this checkout's benchmark module.
if [ -n "$BEFORE_REF" ]; then
  mkdir -p "$work/before"
  git -C "$root" archive "$BEFORE_REF" Clients/python/wharf | tar -x -C "$work/before"
  cp "$root/Clients/python/wharf/bench.py" "$work/before/Clients/python/wharf/bench.py"
fi

wharf_run() { # $1: label, $2: PYTHONPATH
  start_server
  (cd "$work" && PYTHONPATH="$2" "$PY" -m wharf.bench --port "$PORT" --jobs "$JOBS" --procs "$PROCS" \
    --concurrency "$CONC" --runs 1 --server-pid "$server_pid" --pg-pid "$PG_PID") 2>&1 | grep -E 'run 1|processed' \
    | sed "s/^/[$1] /" | tee -a "$work/$1.txt"
  stop_server
}

swift_run() { # the same drain by `wharf bench jobs`' own workers (Swift, PROCS connections x lease BATCH)
  start_server
  "$work/wharf" bench jobs --server "127.0.0.1:$PORT" --jobs "$JOBS" --workers "$PROCS" --batch "$BATCH" \
    --samples 5 2>&1 | grep '^drain:' | sed 's/^/[swift] /; s/jobs\/s$/jobs\/s processed/' | tee -a "$work/swift.txt"
  stop_server
}

for round in $(seq 1 "$ROUNDS"); do
  echo "== round $round of $ROUNDS" >&2
  wharf_run after "$root/Clients/python"
  [ -n "$BEFORE_REF" ] && wharf_run before "$work/before/Clients/python"
  [ "${SWIFT:-1}" = 1 ] && swift_run
  PROCS=$PROCS BATCH=$BATCH RUNS=1 JOBS=$JOBS "$PEERS/run-pgqueuer.sh" --single-jobs 0 --latency-samples 0 \
    | tail -1 | tee -a "$work/pgqueuer.txt"
done

values() { # $1: file -> the jobs/s processed of each run, sorted
  grep '^\[.*\] wharf.Worker\|^\[swift\] drain\|^pgqueuer' "$1" 2>/dev/null | grep -o '[0-9]* jobs/s processed' | awk '{print $1}' | sort -n
}
median() { awk '{ v[NR] = $1 } END { if (NR) printf "%.0f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
summary() { # $1: file -> "median jobs/s (runs: all)"
  local m; m=$(values "$1" | median)
  [ -n "$m" ] && echo "$m jobs/s (runs: $(values "$1" | tr '\n' ' ' | sed 's/ $//'))" || echo "-"
}
after=$(values "$work/after.txt" | median)
pgq=$(values "$work/pgqueuer.txt" | median)
echo
echo "Python workers draining $JOBS no-op jobs, $PROCS processes, $ROUNDS alternating rounds (median; every run):"
echo "  wharf.Worker, this checkout (concurrency $CONC, async handler): $(summary "$work/after.txt")"
[ -n "$BEFORE_REF" ] && echo "  wharf.Worker, $BEFORE_REF (concurrency $CONC, async handler): $(summary "$work/before.txt")"
[ "${SWIFT:-1}" = 1 ] && echo "  wharf bench jobs drain (Swift workers, $PROCS x lease $BATCH): $(summary "$work/swift.txt")"
echo "  pgqueuer $PROCS procs x batch_size $BATCH: $(summary "$work/pgqueuer.txt")"
[ -n "$after" ] && [ -n "$pgq" ] && awk -v a="$after" -v p="$pgq" 'BEGIN { printf "  this checkout / pgqueuer: %.2fx (goal: 1.5x)\n", a / p }'
