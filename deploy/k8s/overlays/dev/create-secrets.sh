#!/usr/bin/env bash
# Dev overlay only: create the Secrets the manifests expect, with random values, in the dev
# namespace. Nothing secret is committed; re-running keeps the database password (the database
# was initialised with it) and the token secret.
#
#   deploy/k8s/overlays/dev/create-secrets.sh [NAMESPACE]      (default: carebridge-dev)
#
# Development tokens: the gateway accepts HS256 tokens signed with GATEWAY_JWT_HS256_SECRET:
#   SECRET=$(kubectl -n carebridge-dev get secret carebridge-gateway \
#       -o jsonpath='{.data.GATEWAY_JWT_HS256_SECRET}' | base64 -d)
#   carebridge token --secret "$SECRET" --scope "system/*.cruds"
set -euo pipefail

namespace="${1:-carebridge-dev}"
kube() { kubectl --namespace "$namespace" "$@"; }

random_hex() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }

# A value already stored in a Secret, or a new random one.
kept_or_new() {
    local value
    value="$(kube get secret "$1" -o "jsonpath={.data.$2}" 2>/dev/null | base64 -d || true)"
    if [ -n "$value" ]; then printf '%s' "$value"; else random_hex; fi
}

# create-or-update: `kubectl create --dry-run` renders the Secret, `kubectl apply` stores it.
put_secret() {
    local name="$1"
    shift
    kube create secret generic "$name" "$@" --dry-run=client -o yaml | kube apply -f -
}

kubectl get namespace "$namespace" >/dev/null 2>&1 || kubectl create namespace "$namespace"

password="$(kept_or_new postgres POSTGRES_PASSWORD)"
token_secret="$(kept_or_new carebridge-gateway GATEWAY_JWT_HS256_SECRET)"
database_url() { printf 'postgresql+asyncpg://carebridge:%s@postgres:5432/%s' "$password" "$1"; }

put_secret postgres --from-literal=POSTGRES_PASSWORD="$password"
put_secret carebridge-intake --from-literal=INTAKE_DATABASE_URL="$(database_url intake)"
put_secret carebridge-careplan --from-literal=CAREPLAN_DATABASE_URL="$(database_url careplan)"
put_secret carebridge-referral --from-literal=REFERRAL_DATABASE_URL="$(database_url referral)"
# No JWKS and no audience in dev: development HS256 tokens (`carebridge token`) carry neither.
put_secret carebridge-gateway \
    --from-literal=GATEWAY_DATABASE_URL="$(database_url gateway)" \
    --from-literal=GATEWAY_JWT_HS256_SECRET="$token_secret" \
    --from-literal=GATEWAY_JWT_JWKS_URL=""

echo "Secrets ready in namespace $namespace."
