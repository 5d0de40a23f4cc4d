#!/bin/sh
# One-shot (temporalio/admin-tools): wait for the frontend, then create the service's
# namespace with its retention (closed sessions' histories; the audit trail in PostgreSQL
# is kept for years independently). Idempotent: an existing namespace is left alone.
set -eu
: "${TEMPORAL_ADDRESS:?TEMPORAL_ADDRESS is required}"
: "${NAMESPACE:?NAMESPACE is required}"
RETENTION="${NAMESPACE_RETENTION:-30d}"

attempt=1
until temporal operator cluster health --address "$TEMPORAL_ADDRESS"; do
  if [ "$attempt" -ge 60 ]; then
    echo "Temporal at $TEMPORAL_ADDRESS did not become healthy" >&2
    exit 1
  fi
  attempt=$((attempt + 1))
  sleep 5
done

if temporal operator namespace describe -n "$NAMESPACE" --address "$TEMPORAL_ADDRESS" >/dev/null 2>&1; then
  echo "namespace $NAMESPACE exists"
else
  temporal operator namespace create -n "$NAMESPACE" --retention "$RETENTION" \
    --address "$TEMPORAL_ADDRESS"
  echo "namespace $NAMESPACE created (retention $RETENTION)"
fi
