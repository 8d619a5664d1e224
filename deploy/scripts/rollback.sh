#!/usr/bin/env bash
# Roll the api, worker and beat Deployments of one environment back.
#
#   deploy/scripts/rollback.sh ENVIRONMENT            # to the previous ReplicaSet (rollout undo)
#   deploy/scripts/rollback.sh ENVIRONMENT IMAGE      # to a given image (digest or tag)
#
# The database schema is NOT downgraded: migrations are expand/contract, so the previous release
# runs on the new schema. Downgrading the schema is a separate, deliberate step
# (`omnify migrate down`, see docs/deployment.md#rollback).
set -euo pipefail

ENVIRONMENT=${1:?environment (staging|production)}
IMAGE=${2:-}
NAMESPACE="omnify-$ENVIRONMENT"
TIMEOUT=${ROLLOUT_TIMEOUT:-10m}
declare -A CONTAINER=([omnify-api]=api [omnify-worker]=worker [omnify-beat]=beat)

for deployment in omnify-api omnify-worker omnify-beat; do
  if [[ -n "$IMAGE" ]]; then
    kubectl -n "$NAMESPACE" set image "deployment/$deployment" "${CONTAINER[$deployment]}=$IMAGE"
  else
    kubectl -n "$NAMESPACE" rollout undo "deployment/$deployment"
  fi
done
for deployment in omnify-api omnify-worker omnify-beat; do
  kubectl -n "$NAMESPACE" rollout status "deployment/$deployment" --timeout="$TIMEOUT"
done
kubectl -n "$NAMESPACE" get deployments -o wide
echo "rolled back $NAMESPACE${IMAGE:+ to $IMAGE}"
