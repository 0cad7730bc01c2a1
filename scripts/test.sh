#!/usr/bin/env bash
# Installs what is missing and runs every test against a throwaway PostgreSQL: the Swift unit and
# integration tests, then the Python client's tests and the protocol conformance suite against the
# built `wharf` binary. Exits non-zero when anything fails.
#
# Environment: WHARF_SCRATCH_PATH (SwiftPM build directory, default .build), WHARF_FUZZ_SECONDS (per
# fuzz target, default 10).
set -euo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
section() { printf '\n==== %s ====\n' "$*"; }
elapsed() { echo "$(($(date +%s) - started)) s"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

scratch=(--scratch-path "${WHARF_SCRATCH_PATH:-.build}")
python_tests=(Clients/python/tests Protocol/conformance Tests/hostile Tests/faults Tests/locks-jepsen Tests/cron-replicas Tests/tls Tests/ops Tests/browser)
python_modules=(pytest cronsim jsonrpcclient standardwebhooks prometheus_client playwright)

section "dependencies"
eval "$(bash scripts/install-deps.sh)"
if ! python3 -c "import $(IFS=,; echo "${python_modules[*]}")" 2>/dev/null; then
  echo "installing Python test dependencies: ${python_modules[*]}"
  if ! python3 -m pip --version >/dev/null 2>&1; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip
  fi
  pip=(python3 -m pip install -q --disable-pip-version-check)
  [ "$(id -u)" -eq 0 ] || pip+=(--user)
  # Debian's own Python refuses pip outside a virtualenv (PEP 668) unless told otherwise.
  "${pip[@]}" "${python_modules[@]}" 2>/dev/null || "${pip[@]}" --break-system-packages "${python_modules[@]}"
  python3 -c "import $(IFS=,; echo "${python_modules[*]}")"
fi
# Tests/ops parses deploy/'s YAML files (the module is yaml, its package PyYAML).
if ! python3 -c "import yaml" 2>/dev/null; then
  python3 -m pip install -q --disable-pip-version-check PyYAML 2>/dev/null ||
    python3 -m pip install -q --disable-pip-version-check --break-system-packages PyYAML
fi
# The dashboard's tests drive Debian's chromium headless (Playwright for Python, pointed at it).
if ! command -v chromium >/dev/null 2>&1; then
  echo "installing chromium (the dashboard's browser tests)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
echo "ok"

section "throwaway PostgreSQL"
# A state file of this run's own, so concurrent runs in one checkout each get their own instance.
WHARF_TEST_PG_STATE=$(mktemp /tmp/wharf-test-pg-run.XXXXXX)
export WHARF_TEST_PG_STATE
cleanup() {
  local t=$SECONDS
  bash scripts/test-postgres.sh stop
  rm -f "$WHARF_TEST_PG_STATE"
  echo "throwaway PostgreSQL removed ($((SECONDS - t)) s)"
}
trap cleanup EXIT
WHARF_TEST_DATABASE_URL=$(bash scripts/test-postgres.sh start)
export WHARF_TEST_DATABASE_URL
echo "WHARF_TEST_DATABASE_URL=$WHARF_TEST_DATABASE_URL"

section "swift build ($(elapsed))"
swift build --build-tests "${scratch[@]}"
# The Swift tests run the debug build in-process. The Python suites run the release binary, the one
# users run: the hostile suite's latency bounds (a bystander's ping p99 under 50 ms while a peer
# misbehaves) describe the server as shipped, not a build without optimisation.
section "swift build -c release ($(elapsed))"
swift build -c release --product wharf "${scratch[@]}"
WHARF_BIN="$(swift build -c release "${scratch[@]}" --show-bin-path)/wharf"
export WHARF_BIN
[ -x "$WHARF_BIN" ] || { echo "no wharf binary at $WHARF_BIN" >&2; exit 1; }

section "swift test ($(elapsed))"
swift_status=0
timeout --kill-after=30 900 swift test --skip-build "${scratch[@]}" || swift_status=$?

section "python tests ($(elapsed))"
export PYTHONPATH="Clients/python${PYTHONPATH:+:$PYTHONPATH}"
py_failed=()
for dir in "${python_tests[@]}"; do
  if [ ! -d "$dir" ]; then
    echo "$dir: absent, skipped"
    continue
  fi
  echo "-- $dir"
  status=0
  # Exit code 5 means no tests were collected: a failure, since the directory exists.
  timeout --kill-after=30 600 python3 -m pytest -q -p no:cacheprovider "$dir" || status=$?
  [ "$status" -eq 0 ] || py_failed+=("$dir (exit $status)")
done

section "fuzz ($(elapsed))"
# Each libFuzzer target for a short while on its seed corpus (scripts/fuzz.sh builds them in .build-fuzz).
fuzz_status=0
fuzz_started=$SECONDS
timeout --kill-after=30 900 bash scripts/fuzz.sh all "${WHARF_FUZZ_SECONDS:-10}" || fuzz_status=$?
echo "fuzz build and runs: $((SECONDS - fuzz_started)) s"

section "summary ($(elapsed))"
echo "swift test: $([ "$swift_status" -eq 0 ] && echo passed || echo "FAILED (exit $swift_status)")"
if [ ${#py_failed[@]} -eq 0 ]; then echo "python tests: passed"; else echo "python tests: FAILED: ${py_failed[*]}"; fi
echo "fuzz: $([ "$fuzz_status" -eq 0 ] && echo passed || echo "FAILED (exit $fuzz_status)")"
[ "$swift_status" -eq 0 ] && [ ${#py_failed[@]} -eq 0 ] && [ "$fuzz_status" -eq 0 ]
