#!/usr/bin/env bash
# Container entry point.
#   head [train.py overrides...]  start the Ray head, then train (output in /app/outputs)
#   rollout                        join the head as a rollout node offering one `rollout` slot
# Needs RAY_AUTH_TOKEN (the shared cluster secret, from docker/.env) in the environment.
# Every port is pinned to its value in scripts/ports.env (copied into the image's /app/scripts),
# as scripts/start_head.sh and scripts/join_cluster.sh pin them.
set -euo pipefail
: "${RAY_AUTH_TOKEN:?set RAY_AUTH_TOKEN (e.g. in docker/.env) to the cluster secret}"
source scripts/ports.env  # the working directory is /app
PORTS=(--object-manager-port="$OBJECT_MANAGER_PORT" --node-manager-port="$NODE_MANAGER_PORT"
       --dashboard-agent-grpc-port="$DASHBOARD_AGENT_GRPC_PORT"
       --runtime-env-agent-port="$RUNTIME_ENV_AGENT_PORT" --metrics-export-port="$METRICS_EXPORT_PORT"
       --dashboard-agent-listen-port="$DASHBOARD_AGENT_LISTEN_PORT"
       --min-worker-port="$MIN_WORKER_PORT" --max-worker-port="$MAX_WORKER_PORT")
# The head's autoscaler and dashboard metrics endpoints take their ports from the environment.
export AUTOSCALER_METRIC_PORT DASHBOARD_METRIC_PORT
role="${1:-head}"; shift || true
case "$role" in
  head)
    # 0.0.0.0 inside the container; docker-compose.yml publishes the dashboard on 127.0.0.1 only
    ray start --head --port="$GCS_PORT" --ray-client-server-port="$RAY_CLIENT_SERVER_PORT" \
      --dashboard-port="$DASHBOARD_PORT" \
      --dashboard-host=0.0.0.0 --num-cpus=0 --disable-usage-stats "${PORTS[@]}"
    exec python scripts/train.py cluster=remote "$@"
    ;;
  rollout)
    exec ray start --address="${HEAD_ADDRESS:-head:$GCS_PORT}" --resources='{"rollout": 1}' \
      --disable-usage-stats "${PORTS[@]}" --block
    ;;
  *)
    exec "$role" "$@"
    ;;
esac
