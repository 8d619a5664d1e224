#!/usr/bin/env bash
# Deploy one image to one environment, migrations first.
#
#   deploy/scripts/k8s-deploy.sh ENVIRONMENT IMAGE [BACKUP_IMAGE]
#     ENVIRONMENT   staging | production (an overlay under deploy/k8s/overlays)
#     IMAGE         ghcr.io/omnify/omnify@sha256:...  (a digest; a :tag is accepted for manual use)
#     BACKUP_IMAGE  ghcr.io/omnify/omnify-backup@sha256:... for the backup CronJobs (optional)
#
# Order matters: (1) configuration objects (ConfigMap, ExternalSecret, policies...), (2) the
# migration Job, waited for, (3) the api/worker/beat Deployments, waited for. Migrations are
# expand/contract, so the old pods keep working between (2) and (3) and after a rollback.
# Writes previous_image=... to $GITHUB_OUTPUT (when set) so a failed rollout can be rolled back.
# RENDER_ONLY=1 prints the pinned manifests and exits without touching a cluster.
set -euo pipefail

ENVIRONMENT=${1:?environment (staging|production)}
IMAGE=${2:?image reference}
BACKUP_IMAGE=${3:-}
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OVERLAY="$ROOT/deploy/k8s/overlays/$ENVIRONMENT"
NAMESPACE="omnify-$ENVIRONMENT"
ROLLOUT_TIMEOUT=${ROLLOUT_TIMEOUT:-10m}
MIGRATE_TIMEOUT=${MIGRATE_TIMEOUT:-15m}

[[ -d "$OVERLAY" ]] || { echo "no overlay $OVERLAY" >&2; exit 2; }

# A throw-away overlay on top of the environment's one pins the image; the committed overlay is
# never edited by CI.
PIN="$(mktemp -d "$ROOT/deploy/k8s/.pin-XXXXXX")"
trap 'rm -rf "$PIN"' EXIT
image_entry() {
  # image_entry NAME REF: a kustomize `images:` entry pinning NAME to REF (digest or tag).
  local name=$1 ref=$2
  echo "  - name: $name"
  if [[ "$ref" == *@sha256:* ]]; then
    echo "    newName: ${ref%@*}"
    echo "    digest: ${ref#*@}"
  else
    echo "    newName: ${ref%:*}"
    echo "    newTag: ${ref##*:}"
  fi
}
{
  echo "apiVersion: kustomize.config.k8s.io/v1beta1"
  echo "kind: Kustomization"
  echo "resources:"
  echo "  - ../overlays/$ENVIRONMENT"
  echo "images:"
  image_entry ghcr.io/omnify/omnify "$IMAGE"
  if [[ -n "$BACKUP_IMAGE" ]]; then
    image_entry ghcr.io/omnify/omnify-backup "$BACKUP_IMAGE"
  fi
} >"$PIN/kustomization.yaml"
RENDERED="$PIN/rendered.yaml"
if command -v kustomize >/dev/null 2>&1; then
  kustomize build "$PIN" >"$RENDERED"
else
  kubectl kustomize "$PIN" >"$RENDERED"
fi

if [[ "${RENDER_ONLY:-0}" == 1 ]]; then
  cat "$RENDERED"
  exit 0
fi

previous="$(kubectl -n "$NAMESPACE" get deployment omnify-api \
  -o jsonpath='{.spec.template.spec.containers[0].image}' 2>/dev/null || true)"
echo "previous image: ${previous:-<none>}"
if [[ -n "${GITHUB_OUTPUT:-}" ]]; then
  echo "previous_image=$previous" >>"$GITHUB_OUTPUT"
fi

echo "== 1/3 configuration"
kubectl apply -f "$RENDERED" -l 'app.kubernetes.io/component notin (api,worker,beat,migrate)'

echo "== 2/3 migrations"
kubectl -n "$NAMESPACE" delete job omnify-migrate --ignore-not-found --wait=true
kubectl apply -f "$RENDERED" -l 'app.kubernetes.io/component=migrate'
if ! kubectl -n "$NAMESPACE" wait --for=condition=complete job/omnify-migrate --timeout="$MIGRATE_TIMEOUT"; then
  echo "migration job did not complete; its logs:" >&2
  kubectl -n "$NAMESPACE" logs job/omnify-migrate --tail=200 >&2 || true
  exit 1
fi

echo "== 3/3 workloads"
kubectl apply -f "$RENDERED" -l 'app.kubernetes.io/component in (api,worker,beat)'
for deployment in omnify-api omnify-worker omnify-beat; do
  kubectl -n "$NAMESPACE" rollout status "deployment/$deployment" --timeout="$ROLLOUT_TIMEOUT"
done
echo "deployed $IMAGE to $NAMESPACE"
