#!/usr/bin/env bash
# Start the Ray head node for a soulsai_ray cluster, with token authentication on.
#
#   scripts/start_head.sh [--node-ip IP] [--port 6379] [--dashboard-host 127.0.0.1] [--num-cpus N]
#
# The head runs the driver, learner, replay and weight store. It offers no `soulsgym` resource, so
# SoulsGym rollout actors land only on game PCs. It prints the exact commands game PCs use to join.
set -euo pipefail

PORT=6379
NODE_IP=""
DASHBOARD_HOST=127.0.0.1
NUM_CPUS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --node-ip) NODE_IP="$2"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    --dashboard-host) DASHBOARD_HOST="$2"; shift 2 ;;
    --num-cpus) NUM_CPUS="$2"; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

RAY="${RAY:-ray}"
command -v "$RAY" >/dev/null 2>&1 || RAY="$(dirname "$0")/../.venv/bin/ray"
[ -x "$(command -v "$RAY")" ] || { echo "ray not found: run 'make install' first or put ray on PATH" >&2; exit 1; }
PYTHON="$(dirname "$(command -v "$RAY")")/python"

if [ -z "$NODE_IP" ]; then
  NODE_IP="$(hostname -I 2>/dev/null | awk '{print $1}')"
  [ -n "$NODE_IP" ] || { echo "could not detect this machine's IP; pass --node-ip" >&2; exit 1; }
fi

export RAY_AUTH_MODE=token
TOKEN_PATH="${RAY_AUTH_TOKEN_PATH:-$HOME/.ray/auth_token}"
if [ -z "${RAY_AUTH_TOKEN:-}" ] && [ ! -s "$TOKEN_PATH" ]; then
  "$RAY" get-auth-token --generate >/dev/null
  echo "generated a new cluster token in $TOKEN_PATH"
fi

args=(--head --port="$PORT" --node-ip-address="$NODE_IP" --dashboard-host="$DASHBOARD_HOST" --disable-usage-stats
      --object-manager-port=8076 --node-manager-port=8077 --min-worker-port=10002 --max-worker-port=10999)
[ -n "$NUM_CPUS" ] && args+=(--num-cpus="$NUM_CPUS")
"$RAY" start "${args[@]}"

VERSIONS="$("$PYTHON" -c 'import platform, ray; print(f"Python {platform.python_version()}, Ray {ray.__version__}")')"
cat <<MSG

Head node is up at $NODE_IP:$PORT with token authentication ($VERSIONS).
Every node needs the same Python and Ray versions, and the token in $TOKEN_PATH.
Copy that file to each game PC (it is the cluster's password: keep it secret).

Join from a Windows game PC (PowerShell, in the soulsai_ray checkout):
    .\\scripts\\join_cluster.ps1 -HeadAddress $NODE_IP:$PORT -TokenFile C:\\path\\to\\auth_token

Join from a Linux machine:
    scripts/join_cluster.sh $NODE_IP:$PORT --token-file /path/to/auth_token

Then train on the head:
    .venv/bin/python scripts/train.py algo=dqn env=iudex cluster=remote

Open these ports between the head and the game PCs only (never to the internet):
$PORT (GCS), 8076-8077 (object and node manager), 10002-10999 (workers), 52365 (dashboard agent).
The dashboard listens on $DASHBOARD_HOST:8265.
MSG
