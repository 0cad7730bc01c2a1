#!/usr/bin/env bash
# Rewrites Protocol/schema.sql from a freshly migrated database (run after adding a migration).
# Uses WHARF_TEST_DATABASE_URL when set, otherwise starts a throwaway PostgreSQL for the run.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${WHARF_TEST_DATABASE_URL:-}" ]; then
  export WHARF_TEST_PG_STATE=${WHARF_TEST_PG_STATE:-$(mktemp -u /tmp/wharf-schema-pg.XXXXXX)}
  WHARF_TEST_DATABASE_URL=$(bash scripts/test-postgres.sh start)
  export WHARF_TEST_DATABASE_URL
  trap 'bash scripts/test-postgres.sh stop' EXIT
fi
swift build --build-tests >/dev/null
WHARF_WRITE_SCHEMA=1 swift test --skip-build --filter SchemaFileTests
git diff --stat -- Protocol/schema.sql
