#!/usr/bin/env bash
# `make e2e-kind`: create (or reuse) a kind cluster, install ingress-nginx and KEDA, deploy the product
# with `skaffold run -p kind` (images built locally and loaded into kind, no registry), then run the
# e2e scenarios through the ingress plus a KEDA scale-up/scale-down check (tests/e2e/kind/test_kind.py).
#
# Needs docker, kind, kubectl, helm and skaffold on PATH (the CI workflow
# .github/workflows/e2e-kind.yaml installs them) and host ports 80/443 free.
# KEEP_CLUSTER=1 leaves the cluster up afterwards (default: delete it when this script created it).
set -euo pipefail
cd "$(dirname "$0")/../../.."

CLUSTER="${KIND_CLUSTER:-jobs-e2e}"
INGRESS_NGINX_VERSION="${INGRESS_NGINX_VERSION:-controller-v1.12.1}"
KEDA_VERSION="${KEDA_VERSION:-2.16.1}"
NAMESPACE="${E2E_NAMESPACE:-jobs}"
log() { echo "e2e-kind: $*" >&2; }

missing=()
for tool in docker kind kubectl helm skaffold; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "missing tools: ${missing[*]} (see .github/workflows/e2e-kind.yaml for how CI installs them)"
  exit 2
fi
docker info >/dev/null 2>&1 || { log "docker engine not reachable"; exit 2; }

created=0
if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  log "creating kind cluster $CLUSTER"
  kind create cluster --name "$CLUSTER" --config tests/e2e/kind/cluster.yaml --wait 180s
  created=1
fi
cleanup() {
  if [ "$created" = 1 ] && [ "${KEEP_CLUSTER:-0}" != 1 ]; then
    log "deleting kind cluster $CLUSTER (KEEP_CLUSTER=1 keeps it)"
    kind delete cluster --name "$CLUSTER" || true
  fi
}
trap cleanup EXIT
kubectl config use-context "kind-$CLUSTER" >/dev/null

log "installing ingress-nginx $INGRESS_NGINX_VERSION"
kubectl apply -f "https://raw.githubusercontent.com/kubernetes/ingress-nginx/$INGRESS_NGINX_VERSION/deploy/static/provider/kind/deploy.yaml"
kubectl -n ingress-nginx rollout status deployment/ingress-nginx-controller --timeout=300s
# the controller's validating webhook needs the certificate its admission jobs create and patch in:
# an Ingress created before they complete is refused ("failed calling webhook")
kubectl -n ingress-nginx wait --for=condition=complete job --selector=app.kubernetes.io/component=admission-webhook --timeout=300s

log "installing KEDA $KEDA_VERSION"
kubectl apply --server-side -f "https://github.com/kedacore/keda/releases/download/v$KEDA_VERSION/keda-$KEDA_VERSION.yaml"
kubectl -n keda rollout status deployment/keda-operator --timeout=300s
kubectl -n keda rollout status deployment/keda-operator-metrics-apiserver --timeout=300s
# its validating webhook must answer before the chart's ScaledObject is created
kubectl -n keda rollout status deployment/keda-admission-webhooks --timeout=300s

log "deploying with skaffold -p kind"
skaffold run -p kind --kube-context "kind-$CLUSTER" --status-check=true

log "running the e2e scenarios through the ingress"
E2E_KIND=1 KIND_CLUSTER="$CLUSTER" E2E_NAMESPACE="$NAMESPACE" \
  .venv/bin/pytest tests/e2e/kind -v -p no:cacheprovider --timeout=900 "$@"
