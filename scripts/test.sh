#!/usr/bin/env bash
# Runs the test suite on SQLite and then on PostgreSQL (the same tests, both databases).
# Usage: scripts/test.sh [sqlite|postgres|all] [extra pytest args]
# PostgreSQL comes from OMNIFY_TEST_PG_URL (default: this machine's server); each run
# creates and drops its own database. Outside CI a missing server is skipped with a
# message; with CI=true it is a failure. pytest's exit code 5 (no tests) is a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${VENV:-.venv}/bin
which=${1:-all}
[ $# -gt 0 ] && shift
PG_URL=${OMNIFY_TEST_PG_URL:-postgresql+asyncpg://postgres@127.0.0.1:5432/postgres}
export OMNIFY_TEST_REDIS_URL=${OMNIFY_TEST_REDIS_URL:-redis://127.0.0.1:6379/15}

pg_reachable() {
  "$BIN/python" - "$PG_URL" <<'PY'
import asyncio, sys
import asyncpg
url = sys.argv[1].replace("postgresql+asyncpg", "postgresql")
async def main():
    conn = await asyncpg.connect(url, timeout=5)
    await conn.close()
try:
    asyncio.run(main())
except Exception as exc:
    print(f"PostgreSQL not reachable at {url}: {exc}", file=sys.stderr)
    sys.exit(1)
PY
}

run_suite() {
  local label=$1; shift
  echo "================ test suite on ${label} ================"
  "$BIN/pytest" "$@" "${EXTRA[@]}"
  local rc=$?
  if [ "$rc" -eq 5 ]; then
    echo "no tests were collected on ${label}: failing" >&2
    rc=1
  fi
  echo "================ ${label}: exit ${rc} ================"
  return "$rc"
}

EXTRA=("$@")
status=0
if [ "$which" = "all" ] || [ "$which" = "sqlite" ]; then
  OMNIFY_DATABASE_URL= run_suite sqlite -q -ra --durations=10 || status=1
fi
if [ "$which" = "all" ] || [ "$which" = "postgres" ]; then
  if pg_reachable; then
    OMNIFY_DATABASE_URL="$PG_URL" run_suite postgresql -q -ra --durations=10 || status=1
  elif [ "${CI:-}" = "true" ]; then
    echo "CI requires PostgreSQL for the second run" >&2
    status=1
  else
    echo "skipping the PostgreSQL run (server unreachable; CI would fail here)"
  fi
fi
exit $status
