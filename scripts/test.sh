#!/usr/bin/env bash
# Runs the test suite on SQLite and then on PostgreSQL (the same tests, both databases).
# Usage: scripts/test.sh [sqlite|postgres|all] [extra pytest args]
# PostgreSQL comes from OMNIFY_TEST_PG_URL (default: this machine's server); each run
# creates and drops its own database. Outside CI a missing server is skipped with a
# message; with CI=true it is a failure. pytest's exit code 5 (no tests) is a failure.
#
# Knobs (environment):
#   OMNIFY_TEST_WORKERS=N|auto   pytest-xdist workers per pass (default auto: one per CPU;
#                                0 runs in one process). Files are the unit of distribution
#                                (--dist loadfile): a module's fixtures are set up once.
#   OMNIFY_TEST_COVERAGE=1       measure src/omnify in every Python process the tests start
#                                (xdist workers, served apps, Celery workers and their forked
#                                children: coverage's `patch` setting in pyproject.toml), combine
#                                the passes that ran, and fail under OMNIFY_TEST_COVERAGE_MIN
#                                (default 80) percent. Report: coverage.xml, plus the summary.
#   OMNIFY_TEST_CLOCK_AHEAD_DAYS=N
#                                run with the wall clock N days ahead in every Python process
#                                (tests/clock/sitecustomize.py: time-machine; monotonic clocks,
#                                sleeps and timeouts stay real). Left out: tests that read the real
#                                calendar on purpose (marker version_gate: API version sunsets) and
#                                tests that compare with a clock outside Python, which the run does
#                                not move (marker server_clock: the PITR drill's WAL commit times,
#                                backup ages from the store's modification times).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
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

PYTEST=("$BIN/pytest")
COMMON=(-q -ra --durations=15)

workers=${OMNIFY_TEST_WORKERS:-auto}
if [ "$workers" != "0" ]; then
  COMMON+=(-n "$workers" --dist loadfile)
fi

coverage=${OMNIFY_TEST_COVERAGE:-0}
if [ "$coverage" = "1" ]; then
  rm -rf "$ROOT/.coverage-data" "$ROOT/coverage.xml"
  mkdir -p "$ROOT/.coverage-data"
  # An absolute data file: subprocesses started in other folders write beside it.
  export COVERAGE_FILE="$ROOT/.coverage-data/.coverage"
  PYTEST=("$BIN/coverage" run -m pytest)
fi

clock_days=${OMNIFY_TEST_CLOCK_AHEAD_DAYS:-}
if [ -n "$clock_days" ]; then
  if ! [[ "$clock_days" =~ ^[0-9]+$ ]]; then
    echo "OMNIFY_TEST_CLOCK_AHEAD_DAYS must be a number of days, not '$clock_days'" >&2
    exit 2
  fi
  export OMNIFY_TEST_CLOCK_AHEAD_DAYS=$clock_days
  export PYTHONPATH="$ROOT/tests/clock${PYTHONPATH:+:$PYTHONPATH}"
  COMMON+=(-m "not version_gate and not server_clock")
  echo "clock moved ${clock_days} days ahead: $(PYTHONPATH=$PYTHONPATH "$BIN/python" -c 'import datetime; print(datetime.datetime.now(datetime.UTC).isoformat())')"
fi

run_suite() {
  local label=$1; shift
  echo "================ test suite on ${label} ================"
  "${PYTEST[@]}" "$@" "${EXTRA[@]}"
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
start=$SECONDS
if [ "$which" = "all" ] || [ "$which" = "sqlite" ]; then
  OMNIFY_DATABASE_URL= run_suite sqlite "${COMMON[@]}" || status=1
  echo "(SQLite pass: $((SECONDS - start)) s)"
fi
if [ "$which" = "all" ] || [ "$which" = "postgres" ]; then
  pg_start=$SECONDS
  if pg_reachable; then
    OMNIFY_DATABASE_URL="$PG_URL" run_suite postgresql "${COMMON[@]}" || status=1
    echo "(PostgreSQL pass: $((SECONDS - pg_start)) s)"
  elif [ "${CI:-}" = "true" ]; then
    echo "CI requires PostgreSQL for the second run" >&2
    status=1
  else
    echo "skipping the PostgreSQL run (server unreachable; CI would fail here)"
  fi
fi

if [ "$coverage" = "1" ]; then
  min=${OMNIFY_TEST_COVERAGE_MIN:-80}
  echo "================ coverage (every pass that ran, subprocesses included) ================"
  if "$BIN/coverage" combine -q && "$BIN/coverage" xml -q -o "$ROOT/coverage.xml"; then
    "$BIN/coverage" report --skip-covered --sort=-miss > "$ROOT/.coverage-data/report.txt"
    echo "most missed lines (whole report: .coverage-data/report.txt, coverage.xml):"
    head -n 22 "$ROOT/.coverage-data/report.txt"
    echo "total coverage of src/omnify (line + branch), gate ${min} %:"
    "$BIN/coverage" report --format=total --fail-under="$min" || {
      echo "coverage is under ${min} %" >&2
      status=1
    }
  else
    echo "no coverage data to combine" >&2
    status=1
  fi
fi
exit $status
