#!/usr/bin/env bash
# Installs what is missing and runs every test: Swift unit and integration tests, the Python
# client's tests and the protocol conformance suite, against a throwaway PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."

section() { printf '\n==== %s ====\n' "$*"; }

section "dependencies"
eval "$(bash scripts/install-deps.sh)"
python3 -m pip install -q --disable-pip-version-check pytest jsonrpcclient standardwebhooks cronsim 2>&1 | tail -2 || true

section "throwaway PostgreSQL"
export WHARF_TEST_DATABASE_URL
WHARF_TEST_DATABASE_URL=$(bash scripts/test-postgres.sh start)
trap 'bash scripts/test-postgres.sh stop' EXIT
echo "$WHARF_TEST_DATABASE_URL"

section "swift build"
swift build --build-tests
export WHARF_BIN
WHARF_BIN="$(swift build --show-bin-path)/wharf"

section "swift test"
set +e
swift test --skip-build 2>&1 | tee /tmp/wharf-swift-test.log
swift_status=${PIPESTATUS[0]}
set -e

section "python tests"
paths=()
for d in Clients/python/tests Protocol/conformance Tests/locks-jepsen; do
  [ -d "$d" ] && paths+=("$d")
done
py_status=0
if [ ${#paths[@]} -gt 0 ]; then
  PYTHONPATH="Clients/python${PYTHONPATH:+:$PYTHONPATH}" python3 -m pytest -q "${paths[@]}" || py_status=$?
fi

section "summary"
echo "swift test exit: $swift_status, pytest exit: $py_status"
[ "$swift_status" -eq 0 ] && [ "$py_status" -eq 0 ]
