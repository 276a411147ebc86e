#!/usr/bin/env bash
# Container entry point.
#   head [train.py overrides...]  start the Ray head, then train (output in /app/outputs)
#   rollout                        join the head as a rollout node offering one `rollout` slot
# Needs RAY_AUTH_TOKEN (the shared cluster secret, from docker/.env) in the environment.
# Every port is pinned to the same value as in scripts/start_head.sh and scripts/join_cluster.sh.
set -euo pipefail
: "${RAY_AUTH_TOKEN:?set RAY_AUTH_TOKEN (e.g. in docker/.env) to the cluster secret}"
PORTS=(--object-manager-port=8076 --node-manager-port=8077 --dashboard-agent-grpc-port=8078
       --runtime-env-agent-port=8079 --metrics-export-port=8080 --dashboard-agent-listen-port=52365
       --min-worker-port=10002 --max-worker-port=10999)
# The head's autoscaler and dashboard metrics endpoints take their ports from the environment.
export AUTOSCALER_METRIC_PORT=44217 DASHBOARD_METRIC_PORT=44227
role="${1:-head}"; shift || true
case "$role" in
  head)
    # 0.0.0.0 inside the container; docker-compose.yml publishes the dashboard on 127.0.0.1 only
    ray start --head --port=6379 --ray-client-server-port=10001 --dashboard-port=8265 \
      --dashboard-host=0.0.0.0 --num-cpus=0 --disable-usage-stats "${PORTS[@]}"
    exec python scripts/train.py cluster=remote "$@"
    ;;
  rollout)
    exec ray start --address="${HEAD_ADDRESS:-head:6379}" --resources='{"rollout": 1}' \
      --disable-usage-stats "${PORTS[@]}" --block
    ;;
  *)
    exec "$role" "$@"
    ;;
esac
