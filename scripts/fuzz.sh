#!/usr/bin/env bash
# Builds the libFuzzer targets (Tests/Fuzz) with `-sanitize=fuzzer,address` in .build-fuzz and runs one
# of them, or all, for SECONDS each, starting from the seed corpus in Tests/Fuzz/corpus/TARGET. Prints
# executions per second and the total for each target. New inputs go to .build-fuzz/corpus/TARGET (the
# repository's seeds are only read); a crashing input is saved as .build-fuzz/crashes/TARGET-crash-*
# and the script fails.
#
# Usage: scripts/fuzz.sh TARGET|all [SECONDS]   (targets: json framer rpc cron url; default 30 s)
# Environment: WHARF_FUZZ_SCRATCH (the build directory, default .build-fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."

all_targets=(json framer rpc cron url)
target=${1:-all}
seconds=${2:-30}
scratch=${WHARF_FUZZ_SCRATCH:-.build-fuzz}
if [ "$target" = all ]; then targets=("${all_targets[@]}"); else targets=("$target"); fi
for t in "${targets[@]}"; do
  case " ${all_targets[*]} " in *" $t "*) ;; *) echo "unknown target $t (${all_targets[*]} or all)" >&2; exit 2 ;; esac
done

# Longest input per target: enough for the structures each one parses, short enough to stay fast.
max_len() { case "$1" in json | rpc) echo 8192 ;; framer) echo 4096 ;; cron) echo 256 ;; url) echo 512 ;; esac; }

# Swift's own crash reporter would race libFuzzer's, which records the input.
export SWIFT_BACKTRACE=enable=no

build_started=$SECONDS
WHARF_FUZZ=1 swift build -c release --product WharfFuzz --scratch-path "$scratch" \
  -Xswiftc -sanitize=fuzzer,address -Xswiftc -Xclang-linker -Xswiftc -fuse-ld=lld 2>&1 | grep -v '^\[' || true
bin="$(WHARF_FUZZ=1 swift build -c release --scratch-path "$scratch" --show-bin-path)/WharfFuzz"
[ -x "$bin" ] || { echo "no fuzz binary at $bin" >&2; exit 1; }
echo "fuzz build: $((SECONDS - build_started)) s"

mkdir -p "$scratch/crashes" "$scratch/logs"
failed=()
for t in "${targets[@]}"; do
  mkdir -p "$scratch/corpus/$t"
  log="$scratch/logs/$t.log"
  status=0
  "$bin" "$t" "$scratch/corpus/$t" "Tests/Fuzz/corpus/$t" \
    -max_total_time="$seconds" -max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$scratch/crashes/$t-" >"$log" 2>&1 || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
  printf '%-7s %6s s  %10s executions  %7s exec/s  %s  corpus %s\n' \
    "$t" "$seconds" "${runs:-?}" "${rate:-?}" "${cov:-}" "$(ls "$scratch/corpus/$t" | wc -l)"
  if [ "$status" -ne 0 ]; then
    failed+=("$t")
    echo "---- $t failed (exit $status); the end of $log:" >&2
    tail -40 "$log" >&2
  fi
done
[ ${#failed[@]} -eq 0 ] || { echo "fuzz targets failed: ${failed[*]}" >&2; exit 1; }
