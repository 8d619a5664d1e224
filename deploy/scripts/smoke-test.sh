#!/usr/bin/env bash
# Post-deploy smoke test: the public endpoint must be healthy, ready and fast, repeatedly.
#
#   deploy/scripts/smoke-test.sh https://staging.omnify.example
#
# Several rounds rather than one request, so a pod that crashes a few seconds after becoming
# ready, or a load balancer still sending traffic to old pods, still fails the deploy. TLS is
# verified (an expired or wrong certificate fails). Exit non-zero on the first failure.
set -euo pipefail

BASE_URL=${1:?base URL, e.g. https://staging.omnify.example}
ROUNDS=${SMOKE_ROUNDS:-6}
PAUSE=${SMOKE_PAUSE_SECONDS:-5}
MAX_SECONDS=${SMOKE_MAX_SECONDS:-1.0}

probe() {
  # probe PATH EXPECTED_STATUS [EXPECTED_CONTENT_TYPE]
  local path=$1 want=$2 want_type=${3:-} out status elapsed ctype
  out="$(curl --silent --show-error --max-time 10 --output /dev/null \
    --write-out '%{http_code} %{time_total} %{content_type}' "$BASE_URL$path")" || {
    echo "FAIL $path: request error"
    return 1
  }
  read -r status elapsed ctype <<<"$out"
  if [[ "$status" != "$want" ]]; then
    echo "FAIL $path: HTTP $status (want $want)"
    return 1
  fi
  if [[ -n "$want_type" && "$ctype" != "$want_type"* ]]; then
    echo "FAIL $path: content type '$ctype' (want $want_type)"
    return 1
  fi
  if awk -v e="$elapsed" -v m="$MAX_SECONDS" 'BEGIN { exit !(e > m) }'; then
    echo "FAIL $path: ${elapsed}s (limit ${MAX_SECONDS}s)"
    return 1
  fi
  echo "ok   $path: HTTP $status in ${elapsed}s"
}

for round in $(seq 1 "$ROUNDS"); do
  echo "round $round/$ROUNDS"
  probe /healthz 200
  probe /readyz 200
  # An unknown API path must answer 404 problem+json from the application itself, not an
  # ingress default backend.
  probe /api/v1/__smoke_test_does_not_exist__ 404 application/problem+json
  [[ "$round" -lt "$ROUNDS" ]] && sleep "$PAUSE"
done
echo "smoke test passed against $BASE_URL"
