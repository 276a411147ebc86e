#!/usr/bin/env bash
# Container entry point.
#   head [train.py overrides...]  start the Ray head, then train (output in /app/outputs)
#   rollout                        join the head as a rollout node offering one `rollout` slot
# Needs RAY_AUTH_TOKEN (the shared cluster secret) in the environment.
set -euo pipefail
: "${RAY_AUTH_TOKEN:?set RAY_AUTH_TOKEN (e.g. in docker/.env) to the cluster secret}"
PORTS=(--object-manager-port=8076 --node-manager-port=8077 --min-worker-port=10002 --max-worker-port=10999)
role="${1:-head}"; shift || true
case "$role" in
  head)
    ray start --head --port=6379 --dashboard-host=0.0.0.0 --num-cpus=0 --disable-usage-stats \
      --metrics-export-port=8080 "${PORTS[@]}"
    exec python scripts/train.py cluster=remote "$@"
    ;;
  rollout)
    exec ray start --address="${HEAD_ADDRESS:-head:6379}" --resources='{"rollout": 1}' \
      --disable-usage-stats --metrics-export-port=8080 "${PORTS[@]}" --block
    ;;
  *)
    exec "$role" "$@"
    ;;
esac
